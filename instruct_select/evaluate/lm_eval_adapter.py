"""Score a fine-tuned model on lm-evaluation-harness tasks, summarised per capability.

    instruct-select lm-eval --model runs/demo/bids-15pct-seed0/train/model \
        --tasks gsm8k,mmlu,humaneval --capabilities gsm8k=math,mmlu=knowledge,humaneval=code

A folder with ``adapter_config.json`` (what ``train`` writes for LoRA) is evaluated as its base
model plus the adapter, which is lm-eval's ``hf`` model with ``peft=``; the tokenizer is the one
saved beside the adapter, so the chat template training used is the one the prompts get
(``apply_chat_template=True``). Each task's headline metric becomes a score in [0, 1], tasks are
grouped into capabilities by the mapping (mean of a capability's tasks), and the result is the
project's own summary: macro-average, worst capability and spread (``capabilities.summarise``).

lm-eval is an optional dependency, imported only here: ``pip install 'instruct_select[lmeval]'``.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..artifacts import atomic_write_json, atomic_write_text
from ..errors import ConfigError, InputError
from ..models.loading import adapter_base, check_model_path, check_tokenizer_path, resolve_device
from .capabilities import summarise

INSTALL_HINT = "pip install 'instruct_select[lmeval]'  (or: pip install 'lm-eval>=0.4')"
# The headline metric of a task when none is named: the first of these it reports. lm-eval reports
# "metric,filter" keys (e.g. "exact_match,strict-match"); the first filter listed wins.
N_SAMPLES = 3
METRIC_PREFERENCE = ("exact_match", "acc", "acc_norm", "pass@1", "prompt_level_strict_acc", "f1", "em", "mc2")


@dataclass
class LmEvalSettings:
    tasks: list[str]
    capabilities: dict[str, str] = field(default_factory=dict)  # task -> capability; default: itself
    metrics: dict[str, str] = field(default_factory=dict)  # task -> "metric" or "metric,filter"
    include_path: str | None = None  # a folder of task YAMLs of your own
    include_defaults: bool = True  # False: only include_path's tasks (skips indexing lm-eval's ~15k, ~6 s)
    limit: float | None = None  # examples per task (a count, or a fraction below 1): for smoke tests
    num_fewshot: int | None = None
    batch_size: int | str = 8
    device: str = "auto"
    dtype: str = "auto"
    apply_chat_template: bool = True
    seed: int = 0
    confirm_run_unsafe_code: bool = False  # code tasks (humaneval, mbpp) execute generated programs

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("name at least one lm-eval task, e.g. --tasks gsm8k,mmlu")
        for what, mapping in (("capability mapping", self.capabilities), ("--metric", self.metrics)):
            unknown = sorted(set(mapping) - set(self.tasks))
            if unknown:
                raise ConfigError(f"the {what} names tasks not in --tasks: {unknown}; tasks are {self.tasks}")
        if self.include_path and not Path(self.include_path).is_dir():
            raise ConfigError(f"--include-path {self.include_path} is not a folder of task YAML files")
        if not self.include_defaults and not self.include_path:
            raise ConfigError("only-include-path needs --include-path: without it there are no tasks")


def require_lm_eval():
    try:
        import lm_eval
    except ImportError:
        raise ConfigError(f"lm-evaluation-harness is not installed: {INSTALL_HINT}") from None
    return lm_eval


def parse_mapping(text: str | None, what: str = "capabilities") -> dict[str, str]:
    """``task=capability,task=capability`` or a JSON/YAML file mapping task to capability."""
    if not text:
        return {}
    path = Path(text)
    if path.is_file():
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ConfigError(f"{path}: the {what} file must map each task to a name, e.g. 'gsm8k: math'")
        return {str(k): v for k, v in data.items()}
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        task, sep, value = item.partition("=")
        if not sep or not task.strip() or not value.strip():
            raise ConfigError(f"--{what} item {item!r} must look like task=name (e.g. gsm8k=math), "
                              "or give a YAML/JSON file")
        mapping[task.strip()] = value.strip()
    return mapping


def parse_metrics(items: list[str]) -> dict[str, str]:
    """``["gsm8k=exact_match,flexible-extract", "mmlu=acc"]`` -> {task: "metric[,filter]"}."""
    metrics = {}
    for item in items:
        task, sep, metric = item.partition("=")
        if not sep or not task.strip() or not metric.strip():
            raise ConfigError(f"--metric {item!r} must look like task=metric or task=metric,filter "
                              "(e.g. gsm8k=exact_match,flexible-extract)")
        metrics[task.strip()] = metric.strip()
    return metrics


def model_arguments(model_dir: str | Path, base: str | Path | None, settings: LmEvalSettings) -> dict[str, Any]:
    """lm-eval ``hf`` model_args: the base with ``peft=`` for an adapter folder, else the model itself.

    The folders are checked as every other command checks them (``models.loading``), so a wrong
    path is one line here rather than a traceback from inside lm-eval."""
    check_model_path(model_dir)
    model_dir = Path(model_dir)
    args: dict[str, Any] = {"pretrained": str(model_dir), "dtype": settings.dtype,
                            "device": str(resolve_device(settings.device))}
    if (model_dir / "adapter_config.json").is_file():
        args["pretrained"] = str(base or adapter_base(model_dir) or "")
        if not args["pretrained"]:
            raise InputError(f"{model_dir} is a LoRA adapter that does not record its base model: pass --base")
        check_model_path(args["pretrained"], "base model")
        args["peft"] = str(model_dir)
    if (model_dir / "tokenizer_config.json").is_file():
        args["tokenizer"] = str(model_dir)  # the tokenizer (and chat template) training used
    else:
        check_tokenizer_path(args["pretrained"])  # lm-eval takes the tokenizer from the model's folder
    return args


def task_score(results: dict[str, Any], task: str, metric: str | None = None) -> tuple[str, float]:
    """(metric key, score) of ``task`` in lm-eval's results (task or group entries)."""
    entry = results.get("results", {}).get(task) or results.get("groups", {}).get(task)
    if entry is None:
        raise InputError(f"lm-eval returned no result for task {task!r}; it returned "
                         f"{sorted(results.get('results', {}))}")
    numbers = {k: v for k, v in entry.items()
               if isinstance(v, (int, float)) and "_stderr" not in k and k not in ("sample_len", "samples")}
    wanted = [metric] if metric else list(METRIC_PREFERENCE)
    for name in wanted:
        for key in numbers:
            if key == name or key.split(",")[0] == name:
                return key, float(numbers[key])
    raise InputError(f"task {task!r} reports {sorted(numbers)}, none of {wanted}: name one with "
                     f"--metric {task}=METRIC")


def capability_summary(task_scores: dict[str, float], mapping: dict[str, str]) -> dict[str, Any]:
    """{"scores": {capability: mean of its tasks}, "summary": summarise(scores)}."""
    grouped: dict[str, list[float]] = {}
    for task, score in task_scores.items():
        grouped.setdefault(mapping.get(task, task), []).append(score)
    scores = {cap: statistics.mean(values) for cap, values in sorted(grouped.items())}
    return {"scores": scores, "summary": summarise(scores)}


def evaluate_with_lm_eval(model_dir: str | Path, settings: LmEvalSettings, *, base: str | Path | None = None,
                          out_dir: str | Path | None = None, quiet: bool = False) -> dict[str, Any]:
    """Run lm-eval on ``settings.tasks``; returns (and writes to ``out_dir/summary.json``, with
    lm-eval's own results in ``out_dir/lm_eval_results.json``) the per-capability summary."""
    lm_eval = require_lm_eval()
    from lm_eval.tasks import TaskManager

    args = model_arguments(model_dir, base, settings)
    manager = TaskManager(include_path=settings.include_path, include_defaults=settings.include_defaults)
    known = set(manager.all_tasks)
    unknown = [t for t in settings.tasks if t not in known]
    if unknown:
        where = f" or in {settings.include_path}" if settings.include_path else " (add your own with --include-path)"
        raise ConfigError(f"lm-eval has no task(s) {unknown}{where}; `lm-eval ls tasks` lists them")
    results = lm_eval.simple_evaluate(
        model="hf", model_args=args, tasks=list(settings.tasks), num_fewshot=settings.num_fewshot,
        batch_size=settings.batch_size, limit=settings.limit, apply_chat_template=settings.apply_chat_template,
        task_manager=manager, log_samples=True, random_seed=settings.seed, numpy_random_seed=settings.seed,
        torch_random_seed=settings.seed, fewshot_random_seed=settings.seed,
        confirm_run_unsafe_code=settings.confirm_run_unsafe_code, verbosity="ERROR" if quiet else None)
    if results is None:  # lm-eval returns None on the non-zero ranks of a distributed run
        return {}
    tasks = {}
    for task in settings.tasks:
        key, score = task_score(results, task, settings.metrics.get(task))
        tasks[task] = {"metric": key, "score": score, "capability": settings.capabilities.get(task, task)}
    summary = {**capability_summary({t: v["score"] for t, v in tasks.items()}, settings.capabilities),
               "tasks": tasks, "model": str(model_dir), "model_args": args,
               "settings": {"limit": settings.limit, "num_fewshot": settings.num_fewshot,
                            "apply_chat_template": settings.apply_chat_template, "seed": settings.seed},
               "lm_eval_version": getattr(lm_eval, "__version__", "unknown")}
    if out_dir is not None:
        _write(Path(out_dir), summary, results)
    return summary


def _write(out: Path, summary: dict[str, Any], results: dict[str, Any]) -> None:
    atomic_write_json(out / "summary.json", summary)
    raw = {k: results[k] for k in ("results", "groups", "configs", "versions", "n-shot", "higher_is_better")
           if k in results}
    atomic_write_text(out / "lm_eval_results.json", json.dumps(raw, indent=2, default=str) + "\n")
    atomic_write_text(out / "samples.json", json.dumps(first_samples(results), indent=2, default=str) + "\n")


def first_samples(results: dict[str, Any], n: int = N_SAMPLES) -> dict[str, list[dict]]:
    """The first prompts of each task as the model saw them (chat template applied), with the
    target and the response: the quickest check that the prompts look as intended."""
    out = {}
    for task, samples in (results.get("samples") or {}).items():
        out[task] = [{"doc_id": s.get("doc_id"), "prompt": _prompt(s.get("arguments")), "target": s.get("target"),
                      "response": s.get("filtered_resps")} for s in samples[:n]]
    return out


def _prompt(arguments: Any) -> Any:
    """The context string of a request: lm-eval stores (context, continuation or generation args)."""
    try:
        return arguments[0][0]
    except (TypeError, IndexError, KeyError):
        return arguments
