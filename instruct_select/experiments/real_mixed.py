"""A real mixed benchmark: SmolLM2-135M-Instruct selecting from a pool of real instruction data.

The pool mixes three public training sources, imbalanced on purpose (each source is a task):
GSM8K train (``math``), GPTeacher Codegen (``code``) and ShareGPT conversations (``chat``).
Validation sets hold the same number of examples per target task: held out from each source, plus
BBH (``reasoning``), a target with no source in the pool. Test sets per capability: GSM8K test,
held-out code and chat examples, and other BBH examples. BBH and GSM8K test are benchmark data:
they serve as targets and tests only, never as training data.

Every method selects at every budget; the warmup, gradient features, hidden states and the
learning-percentage selection model are computed once (seed 0) and shared by every seed, which
varies the selection where the method is random (random, k-means) and the fine-tuning. No smaller
real model is available, so learning percentage's selection model is the model itself. Results
(accuracy, held-out loss, the composition of each selection by source, and the mean influence of
each pool source on each target) go to a results file as they come, cell by cell.
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts import atomic_write_json, atomic_write_text, fingerprint_path, read_json, run_stage
from ..budget import Budget
from ..config import EvalSettings, FeatureSettings, InfluenceSettings, LoraSettings, LPSettings, RunConfig, TrainSettings
from ..data.loading import load_examples
from ..errors import InputError
from ..influence.attribution import AttributionMatrix
from ..layout import RunLayout
from ..models.real import prepare_real_model
from ..run.pipeline import check_config, context_for, execute
from . import Grid, command_line, parse_list

SOURCES = {"math": "gsm8k_train.jsonl", "code": "gpteacher_codegen.json", "chat": "sharegpt_dummy_conversation.json"}
BBH_TASKS = ("boolean_expressions", "date_understanding", "logical_deduction_three_objects", "navigate",
             "sports_understanding", "web_of_lies")
CHECKERS = {"math": "number", "code": "contains", "chat": "contains", "reasoning": "exact_ci"}
METHODS = ["random", "less", "bids", "rds", "rds+", "ifd", "lp-hard", "full"]
DEMO_METHODS = ["random", "less", "bids", "full"]  # `demo --real`: the lab demo's comparison, minus lp-hard's extra training


@dataclass
class RealMixedSizes:
    """How much of each source: pool examples per task (imbalanced on purpose), validation
    examples per target task, test examples per capability, and the longest conversation kept."""

    pool: dict[str, int] = field(default_factory=lambda: {"math": 300, "code": 150, "chat": 50})
    validation: int = 8
    test: int = 30
    max_chars: int = 1000

    @classmethod
    def small(cls) -> "RealMixedSizes":
        """A quick look (`--small`), on two cores: the shared stages (warmup, features, LP's training)
        took 105 min, then each seed about 40 min for three budgets and every method (docs/RESULTS.md)."""
        return cls(pool={"math": 120, "code": 60, "chat": 20}, validation=4, test=12)

    @classmethod
    def demo(cls) -> "RealMixedSizes":
        """`demo --real`: one budget, one seed, four methods in under half an hour on two cores."""
        return cls(pool={"math": 72, "code": 36, "chat": 12}, validation=4, test=8)


def conversation(prompt: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def source_examples(data_dir: Path, task: str) -> list[list[dict]]:
    """Every conversation of a training source, in file order."""
    path = data_dir / SOURCES[task]
    if task == "math":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [conversation(r["question"], r["answer"]) for r in rows]
    if task == "code":
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [conversation(r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else ""), r["response"])
                for r in rows if r.get("response")]
    speaker = {"human": "user", "gpt": "assistant"}
    out = []
    for record in json.loads(path.read_text(encoding="utf-8")):
        turns = [{"role": speaker[t["from"]], "content": t["value"]} for t in record["conversations"]
                 if t.get("from") in speaker and t.get("value", "").strip()]
        if turns and turns[0]["role"] == "user" and turns[-1]["role"] == "assistant":
            out.append(turns)
    return out


def _bbh_examples(data_dir: Path) -> list[list[dict]]:
    out = []
    for name in BBH_TASKS:
        rows = json.loads((data_dir / "bbh" / f"{name}.json").read_text(encoding="utf-8"))["examples"]
        out += [conversation(r["input"] + "\nAnswer with the answer only.", r["target"]) for r in rows]
    return out


def short_conversations(conversations: list[list[dict]], max_chars: int) -> list[list[dict]]:
    return [c for c in conversations if sum(len(m["content"]) for m in c) <= max_chars]


def write_real_mixed(data_dir: str | Path, out: Path, sizes: RealMixedSizes, seed: int = 0) -> dict:
    """Write pool.jsonl, validation/TASK.jsonl and tests/TASK.jsonl into ``out``; returns counts."""
    data_dir, rng = Path(data_dir), random.Random(f"real-mixed:{seed}")
    splits: dict[str, dict[str, list]] = {"pool": {}, "validation": {}, "tests": {}}
    for task in SOURCES:
        pool = short_conversations(source_examples(data_dir, task), sizes.max_chars)
        rng.shuffle(pool)
        n_pool = sizes.pool[task]
        held = sizes.validation + (0 if task == "math" else sizes.test)  # math is tested on GSM8K test
        if len(pool) < n_pool + held:
            raise InputError(f"{data_dir / SOURCES[task]}: {len(pool)} conversations of at most {sizes.max_chars} "
                             f"characters, fewer than the {n_pool + held} asked; ask for a smaller pool")
        splits["pool"][task] = pool[:n_pool]
        splits["validation"][task] = pool[n_pool:n_pool + sizes.validation]
        splits["tests"][task] = pool[n_pool + sizes.validation:n_pool + held]
    gsm8k_test = [json.loads(line) for line in (data_dir / "gsm8k_test.jsonl").read_text().splitlines() if line]
    math_tests = short_conversations([conversation(r["question"], r["answer"]) for r in gsm8k_test], sizes.max_chars)
    splits["tests"]["math"] = math_tests[:sizes.test]
    bbh = _bbh_examples(data_dir)
    rng.shuffle(bbh)
    splits["validation"]["reasoning"] = bbh[:sizes.validation]
    splits["tests"]["reasoning"] = bbh[sizes.validation:sizes.validation + sizes.test]
    lines = [json.dumps({"id": f"{task}-{i}", "task": task, "messages": m}, ensure_ascii=False)
             for task, rows in splits["pool"].items() for i, m in enumerate(rows)]
    atomic_write_text(out / "pool.jsonl", "\n".join(lines) + "\n")
    for split in ("validation", "tests"):
        for task, rows in splits[split].items():
            atomic_write_text(out / split / f"{task}.jsonl", "".join(
                json.dumps({"id": f"{split}-{task}-{i}", "task": task, "checker": CHECKERS[task], "messages": m},
                           ensure_ascii=False) + "\n" for i, m in enumerate(rows)))
    return {split: {task: len(rows) for task, rows in per.items()} for split, per in splits.items()}


def real_mixed_data(data_dir: str | Path, layout: RunLayout, sizes: RealMixedSizes) -> Path:
    """The benchmark's data from the source files in ``data_dir``, written to ``layout.data``
    (``RUN/data``; a cached stage: the same sizes and sources reuse it); returns that folder."""
    inputs = {name: fingerprint_path(Path(data_dir) / name) for name in [*SOURCES.values(), "gsm8k_test.jsonl"]}
    settings = {"pool": sizes.pool, "validation": sizes.validation, "test": sizes.test, "max_chars": sizes.max_chars,
                "bbh_tasks": list(BBH_TASKS)}
    run_stage(layout.data, "real-mixed-data", settings, inputs,
              lambda folder: write_real_mixed(data_dir, folder, sizes))
    return layout.data


def real_mixed_config(model: str | Path, data: Path, run_dir: str | Path, methods: list[str],
                      budgets: list[str]) -> RunConfig:
    """SmolLM2 with LoRA r=8 on q/k/v/o, linear schedule, sized for two CPU cores (the papers' settings are in
    configs/bids_llama3_8b.yaml: r=128, 4 warmup epochs, k=8192)."""
    lora = LoraSettings(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    # The papers' batching (a fixed number of examples per optimizer step, a fresh shuffle every
    # epoch), with the batch scaled to pools of a few hundred: 4 examples per step give a 10-example
    # selection 3 steps per epoch, where the papers' 128 would give one.
    steps = dict(epochs=2, learning_rate=2e-4, warmup_ratio=0.03, batching="examples", batch_size=4,
                 token_budget=4096, max_batch_size=16, max_length=256, lora=lora)
    train = TrainSettings(**steps, save_checkpoints=False)
    influence = InfluenceSettings(
        warmup=TrainSettings(**steps),
        features=FeatureSettings(dim=2048, dtype="float16", token_budget=4096, max_batch_size=16, max_length=256))
    return RunConfig(model=str(model), pool=str(data / "pool.jsonl"), validation=str(data / "validation"),
                     tests=str(data / "tests"), run_dir=str(run_dir), methods=methods, budgets=budgets,
                     dtype="float32", device="auto", influence=influence,
                     learning_percentage=LPSettings(epochs=2, variant="lp1"), train=train,
                     eval=EvalSettings(max_new_tokens=48, batch_size=32, max_length=512), evaluate_base=True)


def source_influence(layout: RunLayout, config: RunConfig) -> str:
    """Mean raw influence of each pool source (rows) on each target task (columns): a target's own
    source should influence it most if the gradient features see the tasks at all."""
    if not (layout.scores / "scores.npy").is_file():
        return "(no attribution matrix in this run)"
    matrix = AttributionMatrix.load(layout.scores)
    task_of = {e.id: e.task for e in load_examples(config.pool).examples}
    scores = np.asarray(matrix.scores, dtype=np.float64)
    sources = sorted({task_of[r] for r in matrix.rows})
    targets = sorted({str(t) for t in matrix.tasks})
    lines = ["| pool source \\ target | " + " | ".join(targets) + " |", "|" + "---|" * (len(targets) + 1)]
    for source in sources:
        rows = [i for i, r in enumerate(matrix.rows) if task_of[r] == source]
        cells = [f"{scores[np.ix_(rows, [j for j, t in enumerate(matrix.tasks) if str(t) == target])].mean():.4f}"
                 for target in targets]
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def composition_table(layout: RunLayout) -> str:
    """Each selection's examples per pool source (one row per method, budget and seed)."""
    rows, sources = [], set()
    for arm in layout.arms():
        diagnostics = read_json(arm.select / "diagnostics.json")
        rows.append((arm.root.name, diagnostics["composition"]))
        sources |= set(diagnostics["composition"])
    sources_sorted = sorted(sources)
    lines = ["| selection | " + " | ".join(sources_sorted) + " |", "|" + "---|" * (len(sources_sorted) + 1)]
    lines += [f"| {name} | " + " | ".join(str(c.get(s, 0)) for s in sources_sorted) + " |" for name, c in rows]
    return "\n".join(lines)


def run_real_mixed(model: str | Path, data_dir: str | Path, run_dir: str | Path, grid: Grid, *,
                   sizes: RealMixedSizes, out: str | Path) -> str:
    """Every method of ``grid.methods`` at every budget and seed of ``grid``, fine-tuning ``model``
    (a folder) on selections from the data built from ``data_dir``'s source files (``sizes``:
    examples per source and split), into ``run_dir``. The Markdown (accuracy in %, mean ± std over
    seeds) is rewritten to ``out`` after each cell, and returned."""
    start = time.time()
    methods = grid.methods
    layout = RunLayout(run_dir)
    data = real_mixed_data(data_dir, layout, sizes)
    config = real_mixed_config(model, data, run_dir, methods, grid.budgets[:1])
    context = context_for(config, pool=check_config(config))  # the pool, read once

    def report(done: str) -> str:
        title = lambda b: f"### Budget {b} (mean ± std over seeds {', '.join(map(str, grid.seeds))})"  # noqa: E731
        return (f"Command: `{command_line()}`; {done}, {(time.time() - start) / 60:.0f} min so far on this machine "
                f"(cached stages count nothing).\n\n{grid.markdown(title)}\n\n"
                f"### Mean influence of each pool source on each target (attribution matrix, raw)\n\n"
                f"{source_influence(layout, config)}\n\n### Composition of each selection by source\n\n"
                f"{composition_table(layout)}\n")

    def one(budget: str, seed: int, first: bool) -> dict[str, dict]:
        cell = dataclasses.replace(config, budgets=[budget], seed=seed, evaluate_base=first)
        rows = execute(context, cell).rows()
        return {label.replace(f" @ {Budget.parse(budget)}", ""): row for label, row in rows.items()}

    grid.run(one, after_each=lambda done, total: atomic_write_text(out, report(f"{done} of {total} cells done")))
    markdown = report("finished")
    atomic_write_text(out, markdown)
    atomic_write_json(layout.experiments_json, {"budgets": grid.budgets, "seeds": grid.seeds, "methods": methods,
                                                "base": grid.base, "runs": grid.rows,
                                                "seconds": round(time.time() - start, 1)})
    return markdown


def main(args) -> None:
    """``instruct-select experiment real`` (arguments in ``commands/experiments.py``): the benchmark,
    its Markdown written to ``args.out`` and printed."""
    model = args.model or prepare_real_model("smollm2-135m")
    sizes = RealMixedSizes.small() if args.small else RealMixedSizes()
    grid = Grid(parse_list(args.budgets), [int(s) for s in parse_list(args.seeds)], methods=parse_list(args.methods))
    markdown = run_real_mixed(model, args.data_dir, args.run_dir, grid, sizes=sizes, out=args.out)
    print(markdown)
