"""Running a config: the needs of its methods → their producers → the select → train → evaluate loop.

    from instruct_select import RunConfig, run_config
    results = run_config(RunConfig(model=..., pool=..., validation=..., methods=["random", "bids"]))

Every ``instruct-select run``, the lab demo and the experiments end here. The run folder's layout
is ``layout.RunLayout``'s; the table of every arm goes to ``results.json`` and ``results.md``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..artifacts import atomic_write_json, atomic_write_text, check_output_path
from ..budget import Budget
from ..config import RunConfig, check_paths_exist, to_dict
from ..data.loading import LoadedData, load_examples, load_test_sets
from ..distributed import Shard
from ..errors import ConfigError
from ..layout import Arm, RunLayout
from ..models.loading import check_model_source, resolve_device
from ..report.tables import results_tables
from ..select.registry import get_selector
from .arms import ArmResult, evaluate_base, run_arm
from .context import RunContext
from .producers import produce
from .producers.encoder_embeddings import check_encoder
from .stages import check_checkers

BASE_LABEL = "base (no tuning)"


@dataclass
class RunResults:
    """A run's outcome: ``arms``, each arm's result by its label (``Arm.label``); ``base``, the
    untuned model's evaluation outputs when the run evaluates it (else None)."""

    arms: dict[str, ArmResult] = field(default_factory=dict)
    base: dict | None = None

    def rows(self) -> dict[str, dict]:
        """{label: {"scores", "summary"}} of every evaluated arm, the base model first."""
        rows = {BASE_LABEL: self.base} if self.base else {}
        rows.update({label: r.summary for label, r in self.arms.items() if r.summary})
        return rows


def run_config(config: RunConfig, *, shard: Shard | None = None, stop_after: str | None = None) -> RunResults:
    """Everything ``config`` asks for: artifacts, each method × budget selection, fine-tuning and
    evaluation, checked first (``check_config``). Each stage is logged as it starts and ends
    (``logging``; the command line shows it).

    ``config``: the run (``config.load_config`` reads one from YAML); ``shard``: this job's share of
    the sharded passes (``--shard i/N``), None for the whole; ``stop_after``: "warmup" or "features"
    to end after that stage (scheduler jobs). Returns every arm's result; no arms when ``shard`` or
    ``stop_after`` ends the run early."""
    if not isinstance(config, RunConfig):
        raise TypeError(f"run_config takes a RunConfig, got {type(config).__name__} {config!r}; for a YAML file "
                        "call run_config(load_config(path)) (instruct_select.config.load_config)")
    pool = check_config(config)
    return execute(context_for(config, shard=shard, stop_after=stop_after, pool=pool), config)


def context_for(config: RunConfig, *, shard: Shard | None = None, stop_after: str | None = None,
                pool: LoadedData | None = None) -> RunContext:
    """The command's context for ``config``: its device, dtype and chat template, and its pool read
    once. ``shard`` and ``stop_after`` as in ``run_config``; ``pool``: the pool already loaded
    (e.g. by ``check_config``), or None to load it here as the config says (format, skip_invalid,
    id_field, columns). Returns the context every stage of the run reads."""
    return RunContext.create(device=config.device, pool=pool or load_pool(config), dtype=config.dtype,
                             chat_template=config.chat_template or None, shard=shard, stop_after=stop_after)


def load_pool(config: RunConfig) -> LoadedData:
    """``config.pool`` read with the config's data_format, skip_invalid, id_field and columns."""
    return load_examples(config.pool, format=config.data_format, skip_invalid=config.skip_invalid,
                         id_field=config.id_field or None, columns=config.columns or None)


def check_config(config: RunConfig, pool: LoadedData | None = None) -> LoadedData:
    """Everything that can be checked before any work, without loading a model: the methods exist,
    the budgets parse, the data paths exist and load, the budgets fit the pool (unless every method
    ignores the budget), the methods that score against validation data have it and accept it
    (``Selector.check_validation``: equal sizes per task for BIDS), every model the run loads (its
    own and each method's, ``Selector.models`` and ``Selector.encoders``) looks like one and lies
    apart from the run folder, the device exists, evaluations have tests.

    ``config``: the run; ``pool``: the pool already loaded, or None to load it here. Returns the
    loaded pool, so that the run reads it once."""
    selectors = [get_selector(method) for method in config.methods]
    budgets = [Budget.parse(budget) for budget in config.budgets]
    models = {key: path for selector in selectors for key, path in selector.models(config).items()}
    encoders = {key: folder for selector in selectors for key, folder in selector.encoders(config).items()}
    check_paths_exist({key: getattr(config, key) for key in ("pool", "validation", "tests")})
    check_output_path("run_dir", config.run_dir, {
        **{key: getattr(config, key) for key in ("model", "pool", "validation", "tests")}, **models, **encoders})
    scoring = [s.name for s in selectors if s.scores_against_validation]
    if scoring and not str(config.validation):
        raise ConfigError(f"methods {scoring} score against validation data: set validation to a folder with one "
                          "file per target task")
    if config.tests and (config.finetune or config.evaluate_base):
        check_checkers(load_test_sets(config.tests), config.eval.default_checker)
    for key, path in {"model": config.model, **models}.items():
        check_model_source(path, key)
    for key, folder in encoders.items():  # a local folder only: nothing is downloaded
        check_encoder(folder, key)
    resolve_device(config.device)
    pool = pool or load_pool(config)
    if not all(s.ignores_budget for s in selectors):
        for budget in budgets:
            budget.check_fits(len(pool.examples))
    if scoring:
        tasks = [e.task for e in load_examples(config.validation).examples]
        for selector in selectors:
            selector.check_validation(tasks, config.selection_options)
    return pool


def arms(config: RunConfig) -> list[Arm]:
    """Each method at each budget, in config order, each labelled with the model that selects for
    it (``Selector.selected_by``); a method that ignores the budget (``full``) once, whatever the
    budgets. ``config``: the run. Returns the arms in the order they run."""
    found: dict[str, Arm] = {}
    for budget in config.budgets:
        for method in config.methods:
            arm = Arm(method, budget, config.seed, selected_by=get_selector(method).selected_by(config))
            found.setdefault(arm.folder_name, arm)
    return list(found.values())


def execute(context: RunContext, config: RunConfig) -> RunResults:
    """``run_config`` with a ``context`` the caller built (``context_for``: a pool it loaded once
    for several configs) for ``config``, unchecked (call ``check_config`` first). Returns every
    arm's result by label, and the base model's scores when the run evaluates it."""
    layout = RunLayout(config.run_dir)
    needs = {need for method in config.methods for need in get_selector(method).needs}
    artifacts = produce(needs, context, config, layout)
    if artifacts is None:
        return RunResults()
    # The untuned model's row by default wherever fine-tuned models are tested: every table has its baseline.
    base = evaluate_base(context, config, layout) if config.evaluate_base and config.tests and config.finetune else None
    results = RunResults(base=base)
    for arm in arms(config):
        results.arms[arm.label] = run_arm(context, config, layout, arm, artifacts)
    write_results(layout, config, results)
    return results


def write_results(layout: RunLayout, config: RunConfig, results: RunResults) -> None:
    """Write every arm's result and the settings to ``layout.results_json``, and the table of the
    evaluated arms (the base model first) to ``layout.results_md`` when there is one. ``layout``:
    the run folder; ``config``: the run's settings; ``results``: its arms' results."""
    atomic_write_json(layout.results_json, {
        "settings": to_dict(config), "base": results.base,
        "arms": {label: dataclasses.asdict(result) for label, result in results.arms.items()}})
    rows = results.rows()
    if rows:
        header = (f"Run {config.run_dir}: model {config.model}, seed {config.seed}. Accuracy (%) per capability "
                  "on held-out test sets; macro = mean over capabilities, worst = lowest capability, "
                  "spread = standard deviation across capabilities.")
        atomic_write_text(layout.results_md, f"{header}\n\n{results_tables(rows)}\n")
