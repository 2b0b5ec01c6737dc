"""The package's shape: no import cycles (between modules or between subpackages), every
selector's needs made by a registered producer, the top level's floors, run/ and commands/
imported only from above, every cmd_* in commands/ (parameters, logging and imports:
test_architecture_logging.py; selectors' hooks: test_architecture_selectors.py)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "instruct_select"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its body (lazy imports included)."""
    edges = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if candidate in modules else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        edges[name] = {m for m in found if m in modules and m != name}
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    assert _cycles(_imports(_modules())) == []


def test_no_import_cycles_between_subpackages():
    def top(name: str) -> str:
        return ".".join(name.split(".")[:2])

    grouped: dict[str, set[str]] = {}
    for name, targets in _imports(_modules()).items():
        grouped.setdefault(top(name), set()).update(top(t) for t in targets if top(t) != top(name))
    assert _cycles(grouped) == []


def test_settings_do_not_import_the_lab():
    edges = _imports(_modules())
    assert not {m for m in edges["instruct_select.config"] if m.startswith("instruct_select.lab")}


def test_every_selector_need_has_a_producer():
    from instruct_select.run.producers import PRODUCERS
    from instruct_select.select.registry import available_selectors, grid_selectors

    selectors = {**available_selectors(), **grid_selectors()}  # the grid's pairs: embed's need is theirs only
    needs = {need for selector in selectors.values() for need in selector.needs}
    assert needs <= set(PRODUCERS) and needs  # and every producer is needed by some selector
    assert set(PRODUCERS) == needs


def test_no_module_imports_a_private_name_of_another():
    """A name with a leading underscore is its module's own: another module that needs it needs it public."""
    offenders = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("instruct_select")):
                offenders += [f"{name}: {alias.name} from {'.' * node.level}{node.module or ''}"
                              for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not offenders, offenders


# The top level of the package: the methods' floors, the one place runs are made (run/), the command
# line (cli.py and commands/), and small modules every floor shares. Anything new goes inside one of them.
TOP_LEVEL_PACKAGES = {
    "data", "models", "train", "features", "influence", "ideal", "select", "evaluate",  # the methods' computations
    "lab", "report", "experiments",  # the capability lab, reading runs, experiments built on run/
    "run",  # where runs are made: pipeline, arms, stages, producers, IDEAL's rounds, the demo
    "commands",  # every cmd_* handler of the command line
}
TOP_LEVEL_MODULES = {
    "__init__", "__main__", "cli", "config",
    # shared by every floor, importing none of them but each other (and select's nothing):
    "errors", "artifacts", "layout", "budget", "loss", "method_names", "distributed", "logs",
}


def test_top_level_holds_the_floors_and_a_few_shared_modules():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert packages == TOP_LEVEL_PACKAGES
    assert modules == TOP_LEVEL_MODULES


def test_run_is_imported_only_from_above():
    """features/ and every other floor compute; only the command line and the experiments reach into
    run/, and nothing but the command line into commands/."""
    may_import = {"instruct_select.run": ("instruct_select.run", "instruct_select.commands", "instruct_select.experiments",
                                          "instruct_select.cli"),
                  "instruct_select.commands": ("instruct_select.commands", "instruct_select.cli")}
    offenders = [f"{name} -> {target}" for name, targets in _imports(_modules()).items() for target in targets
                 for floor, importers in may_import.items()
                 if (target == floor or target.startswith(floor + ".")) and not name.startswith(importers)]
    assert not offenders, offenders


def test_every_command_handler_lives_in_commands():
    outside = [f"{name}.{node.name}" for name, path in _modules().items() if not name.startswith("instruct_select.commands")
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("cmd_")]
    assert outside == []


def test_ctx_names_nothing():
    """A RunContext is ``context`` and a SelectionContext ``selection`` everywhere; ``ctx`` is left
    only to the lab's own generation Context (lab/), so it never means two things in one floor."""
    found = sorted({name for name, path in _modules().items() if not name.startswith("instruct_select.lab")
                    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                    if (isinstance(node, ast.Name) and node.id == "ctx") or (isinstance(node, ast.arg) and node.arg == "ctx")})
    assert found == []
