"""Running a config: the needs of its methods → their producers → the select → train → evaluate loop.

    from instruct_select import RunConfig, run_config
    results = run_config(RunConfig(model=..., pool=..., validation=..., methods=["random", "bids"]))

Every ``instruct-select run``, the lab demo and the experiments end here. The run folder's layout
is ``layout.RunLayout``'s; the table of every arm goes to ``results.json`` and ``results.md``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..artifacts import atomic_write_json, atomic_write_text
from ..config import RunConfig, check_paths_exist, to_dict
from .context import RunContext
from ..distributed import Shard
from ..errors import ConfigError
from ..data.loading import LoadedData, load_examples
from ..layout import Arm, RunLayout
from .arms import ArmResult, evaluate_base, run_arm
from ..models.loading import check_model_source, resolve_device
from .producers import produce
from ..budget import Budget
from ..select.registry import get_selector

BASE_LABEL = "base (no tuning)"
VALIDATION_NEEDS = {"attribution", "hidden_states", "representations", "encoder_embeddings"}  # scored against validation


@dataclass
class RunResults:
    """Each arm's result by label (``Arm.label``), and the untuned model's scores when asked."""

    arms: dict[str, ArmResult] = field(default_factory=dict)
    base: dict | None = None

    def rows(self) -> dict[str, dict]:
        """{label: {"scores", "summary"}} of every evaluated arm, the base model first."""
        rows = {BASE_LABEL: self.base} if self.base else {}
        rows.update({label: r.summary for label, r in self.arms.items() if r.summary})
        return rows


def run_config(config: RunConfig, *, progress: bool = True, log=print, shard: Shard | None = None,
               stop_after: str | None = None) -> RunResults:
    """Everything ``config`` asks for: artifacts, each method × budget selection, fine-tuning and
    evaluation. No arms when ``shard`` or ``stop_after`` ends the run early."""
    if not isinstance(config, RunConfig):
        raise TypeError(f"run_config takes a RunConfig, got {type(config).__name__} {config!r}; for a YAML file "
                        "call run_config(load_config(path)) (instruct_select.config.load_config)")
    pool = check_config(config)
    return execute(context_for(config, progress=progress, log=log, shard=shard, stop_after=stop_after, pool=pool),
                   config)


def context_for(config: RunConfig, *, progress: bool = True, log=print, shard: Shard | None = None,
                stop_after: str | None = None, pool: LoadedData | None = None) -> RunContext:
    """The command's context for ``config``: its device, dtype and chat template, its pool loaded once
    (``pool``: already loaded, e.g. by ``check_config``)."""
    return RunContext.create(device=config.device, pool=pool or config.pool, dtype=config.dtype,
                             chat_template=config.chat_template or None, progress=progress, log=log,
                             shard=shard, stop_after=stop_after, data_format=config.data_format,
                             skip_invalid=config.skip_invalid, id_field=config.id_field or None,
                             columns=config.columns or None)


def check_config(config: RunConfig, pool: LoadedData | None = None) -> LoadedData:
    """Everything that can be checked before any work, without loading a model: the methods exist,
    the budgets parse, the data paths exist and load, the budgets fit the pool, the methods that
    score against validation data have it (equal sizes per task for BIDS), the model folders look
    like models, the device exists, evaluations have tests. Returns the pool (loaded here unless
    given), so that the run reads it once."""
    from ..artifacts import check_output_path
    from .stages import check_checkers

    selectors = [get_selector(method) for method in config.methods]
    budgets = [Budget.parse(budget) for budget in config.budgets]
    check_paths_exist({key: getattr(config, key) for key in ("pool", "validation", "tests")})
    check_output_path("run_dir", config.run_dir, {key: getattr(config, key) for key in (
        "model", "pool", "validation", "tests", "ifd_model")})
    scoring = [s.name for s in selectors if set(s.needs) & VALIDATION_NEEDS]
    if scoring and not str(config.validation):
        raise ConfigError(f"methods {scoring} score against validation data: set validation to a folder with one "
                          "file per target task")
    if config.tests and (config.finetune or config.evaluate_base):
        from ..data.loading import load_test_sets

        check_checkers(load_test_sets(config.tests), config.eval.default_checker)
    _check_models(config)
    resolve_device(config.device)
    pool = pool or load_examples(config.pool, format=config.data_format, skip_invalid=config.skip_invalid,
                                 id_field=config.id_field or None, columns=config.columns or None)
    if not all(getattr(s, "ignores_budget", False) for s in selectors):
        for budget in budgets:
            budget.check_fits(len(pool.examples))
    checks = [s.check_validation for s in selectors if hasattr(s, "check_validation")]
    if checks:
        tasks = [e.task for e in load_examples(config.validation).examples]
        for check in checks:
            check(tasks, config.selection_options)
    return pool


def _check_models(config: RunConfig) -> None:
    """Each model the run loads (its own, IFD's, the learning percentage's selection model) is a
    model folder with its tokenizer, or a hub id."""
    for key, path in (("model", config.model), ("ifd_model", config.ifd_model),
                      ("learning_percentage.selection_model", config.learning_percentage.selection_model)):
        if path:
            check_model_source(path, key)
    if config.learning_percentage.embedding_model:  # a local folder only: nothing is downloaded
        from .producers.encoder_embeddings import check_encoder

        check_encoder(config.learning_percentage.embedding_model, "learning_percentage.embedding_model")


def arms(config: RunConfig) -> list[Arm]:
    """Each method at each budget, in config order; the whole pool once whatever the budgets."""
    label = config.learning_percentage.label
    found: dict[str, Arm] = {}
    for budget in config.budgets:
        for method in config.methods:
            lp = "loss_trajectories" in get_selector(method).needs
            arm = Arm(method, budget, config.seed, selected_by=label if lp else "")
            found.setdefault(arm.folder_name, arm)
    return list(found.values())


def execute(context: RunContext, config: RunConfig) -> RunResults:
    """``run_config`` with a context the caller built (and a pool it loaded)."""
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
    from ..report.tables import results_tables

    atomic_write_json(layout.results_json, {
        "settings": to_dict(config), "base": results.base,
        "arms": {label: dataclasses.asdict(result) for label, result in results.arms.items()}})
    rows = results.rows()
    if rows:
        header = (f"Run {config.run_dir}: model {config.model}, seed {config.seed}. Accuracy (%) per capability "
                  "on held-out test sets; macro = mean over capabilities, worst = lowest capability, "
                  "spread = standard deviation across capabilities.")
        atomic_write_text(layout.results_md, f"{header}\n\n{results_tables(rows)}\n")
