"""The package's shape: no import cycles (between modules or between subpackages), no public
function with more than 8 parameters, every selector's needs made by a registered producer."""
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


def test_no_public_function_takes_more_than_eight_parameters():
    wide = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args]
                count = len(names) + len(args.kwonlyargs) + bool(args.vararg) + bool(args.kwarg)
                count -= bool(names) and names[0] in ("self", "cls")
                if count > 8:
                    wide.append(f"{name}.{node.name}: {count}")
    assert wide == []


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
