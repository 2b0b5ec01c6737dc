"""Selectors declare their own needs and hooks (issue 22 point 3): the run loop and the pipeline
(run/pipeline.py, run/arms.py, run/stages.py) name no method, no artifact a method needs and no
method's own setting; everything method-specific reaches them through the ``Selector`` protocol,
which every registered selector (named methods and grid pairs) satisfies."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from instruct_select.config import LPSettings, RunConfig
from instruct_select.method_names import GRID_SELECTORS, REPRESENTATIONS
from instruct_select.run.pipeline import arms
from instruct_select.run.producers import PRODUCERS
from instruct_select.select.base import BaseSelector, Selector
from instruct_select.select.grid import grid_methods
from instruct_select.select.registry import available_selectors, grid_selectors

RUN = Path(__file__).resolve().parents[1] / "instruct_select" / "run"
GENERAL = ("pipeline.py", "arms.py", "stages.py")  # the loop and the pipeline: they serve every method alike
# Settings a method owns (its models, its selection model's label and options): read by its selector's hooks.
METHOD_SETTINGS = {"ifd_model", "learning_percentage", "selection_model", "embedding_model", "embed_encoder"}


def _selectors() -> dict[str, Selector]:
    return {**available_selectors(), **grid_selectors()}


def _every_setting_set() -> RunConfig:
    """A config giving every method's own model settings, so that the hooks return their keys."""
    return RunConfig(model="base", pool="pool.jsonl", ifd_model="small", embed_encoder="encoder",
                     learning_percentage=LPSettings(selection_model="small", embedding_model="minilm", label="small"))


def _forbidden() -> tuple[set[str], set[str]]:
    """(strings no general module may spell, identifiers no general module may use as an attribute
    or a keyword): the methods' names, their needs, their settings and their options."""
    config = _every_setting_set()
    selectors = _selectors()
    settings = set(METHOD_SETTINGS)
    for selector in selectors.values():
        for key in [*selector.models(config), *selector.encoders(config)]:
            settings.update(key.split("."))
        settings.update(selector.options(config))
    needs = {need for selector in selectors.values() for need in selector.needs} | set(PRODUCERS)
    names = set(selectors) | set(GRID_SELECTORS) | set(REPRESENTATIONS) | set(grid_methods())
    return names | needs | settings, needs | settings


def _spelled(source: str) -> tuple[set[str], set[str]]:
    """(the string constants, the attribute and keyword names) of a module's code."""
    strings, identifiers = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.add(node.value)
        elif isinstance(node, ast.Attribute):
            identifiers.add(node.attr)
        elif isinstance(node, ast.keyword) and node.arg:
            identifiers.add(node.arg)
    return strings, identifiers


def _offences(source: str) -> list[str]:
    strings, identifiers = _spelled(source)
    bad_strings, bad_identifiers = _forbidden()
    return sorted(f"'{s}'" for s in strings & bad_strings) + sorted(f".{i}" for i in identifiers & bad_identifiers)


@pytest.mark.parametrize("module", GENERAL)
def test_the_loop_and_the_pipeline_name_no_method(module):
    assert _offences((RUN / module).read_text(encoding="utf-8")) == []


def test_the_name_check_catches_a_method_named_in_the_loop():
    probe = ('lp = "loss_trajectories" in needs\nlabel = config.learning_percentage.label\n'
             'if method == "bids": pass\ncheck(ifd_model=config.ifd_model)\n')
    assert _offences(probe) == ["'bids'", "'loss_trajectories'", ".ifd_model", ".learning_percentage"]
    assert _offences('needs = selector.needs\noptions = selector.options(config)\n') == []


def _protocol_members() -> tuple[set[str], set[str]]:
    """(the protocol's attributes, its methods), read from the protocol itself."""
    attributes = set(Selector.__annotations__)
    methods = {name for name, value in vars(Selector).items()
               if callable(value) and not name.startswith("_")}
    return attributes, methods


def _probed_hooks(source: str) -> list[str]:
    """``getattr``/``hasattr`` calls on a name of the protocol: a hook read as if it might be missing."""
    attributes, methods = _protocol_members()
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in attributes | methods):
            found.append(f"{node.func.id}(..., {node.args[1].value!r})")
    return found


@pytest.mark.parametrize("module", GENERAL)
def test_the_loop_reads_the_declared_hooks_directly(module):
    assert _probed_hooks((RUN / module).read_text(encoding="utf-8")) == []


def test_the_hook_check_catches_a_probed_hook():
    assert _probed_hooks('a = getattr(s, "ignores_budget", False)\nb = hasattr(s, "check_validation")\n'
                         'c = getattr(s, "other", 1)\n') == [
        "getattr(..., 'ignores_budget')", "hasattr(..., 'check_validation')"]


def test_the_protocol_declares_every_hook_the_run_calls():
    attributes, methods = _protocol_members()
    assert {"name", "needs", "description", "ignores_budget", "scores_against_validation"} <= attributes
    assert {"rank", "check_validation", "options", "models", "encoders", "selected_by"} <= methods
    for name in methods:
        assert inspect.getdoc(getattr(Selector, name)), f"Selector.{name} has no docstring"


@pytest.mark.parametrize("name", sorted(_selectors()))
def test_every_registered_selector_satisfies_the_protocol(name):
    selector = _selectors()[name]
    attributes, methods = _protocol_members()
    assert isinstance(selector, BaseSelector)
    for attribute in attributes:
        assert hasattr(selector, attribute), f"{name} lacks {attribute}"
    for method in methods:
        assert callable(getattr(selector, method)), f"{name}.{method} is not callable"
    assert selector.name == name and selector.description
    assert isinstance(selector.needs, tuple) and all(n in PRODUCERS for n in selector.needs)
    assert isinstance(selector.ignores_budget, bool) and isinstance(selector.scores_against_validation, bool)
    for config in (RunConfig(model="base", pool="pool.jsonl"), _every_setting_set()):
        options, models, encoders = selector.options(config), selector.models(config), selector.encoders(config)
        assert isinstance(options, dict) and isinstance(selector.selected_by(config), str)
        for found in (models, encoders):
            assert isinstance(found, dict) and all(isinstance(k, str) and v and isinstance(v, str)
                                                   for k, v in found.items())
    selector.check_validation(["a", "a", "b", "b"], {})  # equal sizes per task: nobody refuses


def test_simple_selectors_declare_nothing_beyond_their_rule():
    random = available_selectors()["random"]
    config = _every_setting_set()
    assert (random.options(config), random.models(config), random.encoders(config), random.selected_by(config)) == (
        {}, {}, {}, "")
    assert not random.ignores_budget and not random.scores_against_validation
    assert available_selectors()["full"].ignores_budget


def test_method_settings_come_from_their_selectors():
    config = _every_setting_set()
    selectors = available_selectors()
    assert selectors["ifd"].models(config) == {"ifd_model": "small"}
    lp = selectors["lp-hard"]
    assert lp.models(config) == {"learning_percentage.selection_model": "small"}
    assert lp.encoders(config) == {"learning_percentage.embedding_model": "minilm"}
    assert lp.options(config) == config.learning_percentage.options() and lp.selected_by(config) == "small"
    assert selectors["bids"].scores_against_validation and grid_selectors()["uot:embed"].encoders(config) == {"embed_encoder": "encoder"}


def test_arm_folders_carry_the_label_of_the_selection_model_that_chose():
    config = RunConfig(model="base", pool="pool.jsonl", methods=["random", "lp-hard", "full"], budgets=["5%", "10"],
                       learning_percentage=LPSettings(label="small"))
    assert [arm.folder_name for arm in arms(config)] == [
        "random-5pct-seed0", "lp-hard-5pct-seed0-by-small", "full-seed0", "random-10-seed0",
        "lp-hard-10-seed0-by-small"]
