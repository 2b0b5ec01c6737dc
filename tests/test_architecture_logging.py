"""How the package reports and how it imports (issue 22 points 4 and 5): no public function takes more
than 6 parameters, none takes ``log`` or ``progress`` (the ``logging`` module and ``logs.progress_bar``
do that), only the command line prints, imports sit at the top of their files (lazy ones only where
listed below, each with its reason), and ``--help`` imports no torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "instruct_select"
MAX_PARAMETERS = 6

# Imports left inside a function, by (file, top-level module imported), each for its reason. The command
# line (cli.py, commands/) and the package faces (__init__.py) import lazily so that --help stays fast,
# and are not listed.
LAZY_IMPORTS = {
    ("models/loading.py", "peft"): "peft takes ~2.5 s beyond transformers; only LoRA training and adapters need it",
    ("data/readers.py", "datasets"): "~0.6 s to import; only a save_to_disk folder needs it",
    ("data/writing.py", "datasets"): "~0.6 s to import; only a save_to_disk folder needs it",
    ("evaluate/ifeval.py", "langdetect"): "an optional extra ([real]); refused by name when absent",
    ("evaluate/lm_eval_adapter.py", "lm_eval"): "an optional extra ([lmeval]); refused by name when absent",
    ("select/uot.py", "ot"): "an optional extra ([ot], POT); refused by name when absent",
}
# Where print() is the point: the command line, and an experiment's main(args), which is its command
# and prints its final table.
PRINTING = ("cli.py", "commands/")


def _files() -> dict[str, ast.Module]:
    return {str(path.relative_to(PACKAGE)): ast.parse(path.read_text(encoding="utf-8"))
            for path in sorted(PACKAGE.rglob("*.py"))}


def _functions(tree: ast.Module):
    """(name, node, is_public) of every function: module-level, and methods of classes (nested
    functions are never public)."""
    def visit(node, nested: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield child, not nested and not child.name.startswith("_")
                yield from visit(child, True)
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, nested or child.name.startswith("_"))
            else:
                yield from visit(child, nested)
    yield from visit(tree, False)


def _parameters(node) -> list[str]:
    a = node.args
    every = [*a.posonlyargs, *a.args, *a.kwonlyargs, *([a.vararg] if a.vararg else []), *([a.kwarg] if a.kwarg else [])]
    return [p.arg for p in every if p.arg not in ("self", "cls")]


def test_no_public_function_takes_more_than_six_parameters():
    wide = [f"{name}:{node.lineno} {node.name} ({len(_parameters(node))})" for name, tree in _files().items()
            for node, public in _functions(tree) if public and len(_parameters(node)) > MAX_PARAMETERS]
    assert wide == [], "group them into a settings dataclass: " + ", ".join(wide)


def test_no_function_takes_log_or_progress():
    found = [f"{name}:{node.lineno} {node.name}({p}=...)" for name, tree in _files().items()
             for node, _ in _functions(tree) for p in _parameters(node) if p in ("log", "progress")]
    assert found == [], "log through logging.getLogger(__name__) and wrap loops in logs.progress_bar: " + ", ".join(found)


def test_only_the_command_line_prints():
    found = []
    for name, tree in _files().items():
        if name.startswith(PRINTING):
            continue
        allowed = set()
        if name.startswith("experiments/"):
            allowed = {id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "main"
                       for n in ast.walk(f)}
        found += [f"{name}:{n.lineno}" for n in ast.walk(tree) if isinstance(n, ast.Call)
                  and isinstance(n.func, ast.Name) and n.func.id == "print" and id(n) not in allowed]
    assert found == [], "library code logs (logging) instead of printing: " + ", ".join(found)


def _lazy(name: str, tree: ast.Module) -> list[tuple[int, str]]:
    """(line, top-level module) of every import inside a function body."""
    out = []
    for node, _ in _functions(tree):
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                out += [(inner.lineno, alias.name.split(".")[0]) for alias in inner.names]
            elif isinstance(inner, ast.ImportFrom):
                out.append((inner.lineno, "." * inner.level + (inner.module or "").split(".")[0]))
    return sorted(set(out))


def test_imports_sit_at_the_top_of_library_files():
    found = []
    for name, tree in _files().items():
        if name == "cli.py" or name.startswith("commands/") or name.endswith("__init__.py"):
            continue
        found += [f"{name}:{line} {module}" for line, module in _lazy(name, tree) if (name, module) not in LAZY_IMPORTS]
    assert found == [], "move these imports to the top of their files (or list one in LAZY_IMPORTS, saying why): " \
                        + ", ".join(found)


def test_every_listed_lazy_import_is_still_there():
    files = _files()
    stale = [key for key in LAZY_IMPORTS if key[1] not in {m for _, m in _lazy(key[0], files[key[0]])}]
    assert stale == []


def test_help_imports_no_torch():
    code = ("import sys; from instruct_select import cli; cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_command_lines_experiment_defaults_are_the_experiments():
    from instruct_select.commands import experiments as arguments
    from instruct_select.experiments import mixture, real_mixed

    assert arguments.REAL_MIXED_METHODS == ",".join(real_mixed.METHODS)
    assert arguments.MIXTURE_SELECTED == ",".join(mixture.SELECTED)
