"""The stages as Python functions: select, train, evaluate. The CLI and the demo call these.

Each function runs one stage into its own folder through ``artifacts.run_stage``: a finished folder
with the same settings and inputs is reused, one made with other settings is refused by name.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .artifacts import (
    atomic_write_json, finished_manifest, fingerprint_model, read_json, require_finished, run_stage,
)
from .config import EvalSettings, InfluenceSettings, LPSettings, RunConfig, TrainSettings, to_dict
from .data.example import Example
from .distributed import Shard, is_main, local_device
from .errors import ConfigError, InputError
from .select.base import get_selector
from .select.budget import Budget
from .select.selection import read_selected_ids, run_selector, write_selection


def load_pool(path: str | Path, **options: Any):
    """Load a pool of training examples (any supported format); tasks from the data."""
    from .data.loading import load_examples

    return load_examples(path, **options)


def load_test_sets(path: str | Path) -> dict[str, list[Example]]:
    """Test or validation sets grouped by capability: the task field, else the file's stem."""
    from .data.loading import load_examples

    sets: dict[str, list[Example]] = {}
    for example in load_examples(path).examples:
        sets.setdefault(example.task or Path(path).stem, []).append(example)
    return sets


# --------------------------------------------------------------------------------------------


def select_stage(pool_path: str | Path, method: str, budget: str, out_dir: str | Path, *,
                 seed: int = 0, artifacts: dict[str, Any] | None = None,
                 artifact_fingerprints: dict[str, str] | None = None,
                 options: dict[str, Any] | None = None, tokenizer: str | Path | None = None,
                 max_length: int = 2048, data_format: str = "auto", loaded=None, log=print):
    """Select from the pool at ``pool_path`` into ``out_dir``; returns the StageResult.

    A token budget counts each example's rendered tokens with ``tokenizer`` (required then).
    ``loaded``: the pool already loaded from ``pool_path``, so that a command holds one copy.
    """
    loaded = load_pool(pool_path, format=data_format) if loaded is None else loaded
    parsed = Budget.parse(budget)
    ignores_budget = getattr(get_selector(method), "ignores_budget", False)
    settings = {"method": method, "budget": "all" if ignores_budget else str(parsed), "options": options or {}}
    inputs = {"pool": loaded.fingerprint, **(artifact_fingerprints or {})}
    if parsed.kind == "tokens":
        settings.update(tokenizer=str(tokenizer), max_length=max_length)

    def build(folder: Path) -> dict:
        selection = run_selector(method, loaded.examples, parsed, seed=seed, artifacts=artifacts,
                                 options=options,
                                 token_length=_token_lengths(loaded, tokenizer, max_length) if parsed.kind == "tokens" else None)
        log(f"[select] {method} @ {parsed}: {len(selection)} of {len(loaded.examples)} examples")
        if not is_main():  # every process selects the same; one writes
            return {}
        return write_selection(selection, loaded, folder)

    return run_stage(out_dir, "select", settings, inputs, build, seed=seed, log=log)


def _token_lengths(loaded, tokenizer: str | Path | None, max_length: int) -> dict[str, int]:
    """Rendered, truncated token count of every pool example: what training will see."""
    from .data.chat import tokenize_example
    from .models.loading import load_tokenizer

    if tokenizer is None:
        raise ConfigError("a token budget needs a tokenizer to count tokens: pass --tokenizer "
                          "(the model you will train)")
    tok = load_tokenizer(tokenizer)
    return {e.id: len(tokenize_example(tok, e, max_length)) for e in loaded.examples}


def train_stage(model: str | Path, data_path: str | Path, out_dir: str | Path,
                settings: TrainSettings, *, selection_dir: str | Path | None = None,
                chat_template: str | None = None, dtype: str = "float32", device: str | None = None,
                data_format: str = "auto", loaded=None, progress: bool = True, log=print):
    """Fine-tune ``model`` on the pool at ``data_path`` (restricted to a selection if given).

    ``loaded``: the pool already loaded from ``data_path``, so that a command holds one copy.
    """
    from .models.loading import load_base_model, load_tokenizer
    from .train.loop import save_trained, train_model

    loaded = load_pool(data_path, format=data_format) if loaded is None else loaded
    examples = loaded.examples
    inputs = {"model": fingerprint_model(model), "data": loaded.fingerprint}
    if selection_dir is not None:
        require_finished(selection_dir, "selection")
        wanted = read_selected_ids(selection_dir)
        by_id = loaded.by_id()
        unknown = [i for i in wanted if i not in by_id]
        if unknown:
            raise InputError(f"selection {selection_dir} names {len(unknown)} ids absent from "
                             f"{data_path} (e.g. {unknown[0]}): it was made from another pool")
        examples = [by_id[i] for i in wanted]
        inputs["selection"] = fingerprint_model(selection_dir)
    stage_settings = {"train": to_dict(settings), "chat_template": chat_template, "dtype": dtype}

    def build(folder: Path) -> dict:
        tokenizer = load_tokenizer(model, chat_template)
        base = load_base_model(model, dtype, device)
        result = train_model(base, tokenizer, examples, settings, folder, progress=progress, log=log)
        save_trained(result.model, tokenizer, folder / "model")
        return {"examples": result.examples, "excluded_no_response": result.render_report.no_response,
                "truncated": result.render_report.truncated, "steps": result.steps,
                "tokens": result.tokens, "epoch_losses": result.epoch_losses,
                "base_model": str(model)}

    return run_stage(out_dir, "train", stage_settings, inputs, build, seed=settings.seed, log=log)


def evaluate_stage(model_dir: str | Path, tests: str | Path, out_dir: str | Path,
                   settings: EvalSettings | None = None, *, base: str | Path | None = None,
                   dtype: str = "float32", device: str | None = None, progress: bool = True, log=print):
    """Evaluate a trained model (or a base model) on every capability; writes metrics.json."""
    from .evaluate import evaluate_capabilities
    from .models.loading import load_tokenizer, load_trained

    settings = settings or EvalSettings()
    test_sets = load_test_sets(tests)
    inputs = {"model": fingerprint_model(model_dir), "tests": _sets_fingerprint(test_sets)}

    def build(folder: Path) -> dict:
        model = load_trained(model_dir, base=base, dtype=dtype, device=device)
        tokenizer = load_tokenizer(model_dir)
        metrics = evaluate_capabilities(model, tokenizer, test_sets, max_new_tokens=settings.max_new_tokens,
                                        batch_size=settings.batch_size, default_checker=settings.default_checker,
                                        progress=progress)
        atomic_write_json(folder / "metrics.json", metrics)
        return {"summary": metrics["summary"],
                "scores": {c: v["score"] for c, v in metrics["capabilities"].items()}}

    return run_stage(out_dir, "evaluate", to_dict(settings), inputs, build, log=log)


def _sets_fingerprint(test_sets: dict[str, list[Example]]) -> str:
    from .artifacts import fingerprint_json

    return fingerprint_json({k: [[e.id, e.messages] for e in v] for k, v in sorted(test_sets.items())})


def prepare_artifacts(needs: set[str], pool_path: str | Path, validation_path: str | Path, model: str | Path,
                      run_dir: str | Path, settings: InfluenceSettings, *, lp: LPSettings | None = None,
                      device: str | None = None,
                      dtype: str = "float32", chat_template: str | None = None, shard: Shard | None = None,
                      stop_after: str | None = None, progress: bool = True,
                      log=print) -> tuple[dict[str, Any], dict[str, str]]:
    """Compute what the selectors need into ``run_dir``: "attribution" and "hidden_states" (from
    the influence warmup), "loss_trajectories" and "embeddings" (learning percentage, ``lp``).

    Returns the artifacts and their fingerprints (recorded in each selection's manifest).
    ``shard`` (an independent job's i/N) computes only that shard's features and stops, as does
    ``stop_after="warmup"`` after the warmup; both return no artifacts.
    """
    from .influence.attribution import AttributionMatrix
    from .influence.stages import features_stage, scores_stage

    unknown = needs - {"attribution", "hidden_states", "loss_trajectories", "embeddings"}
    if unknown:
        raise ConfigError(f"no stage computes {sorted(unknown)}")
    artifacts: dict[str, Any] = {}
    fingerprints: dict[str, str] = {}
    if needs & {"loss_trajectories", "embeddings"} and stop_after is None and (shard is None or shard.count == 1):
        from .learning_percentage_run import selection_artifacts

        lp = lp or LPSettings()
        artifacts, fingerprints = selection_artifacts(lp.selection_model or model, pool_path,
                                                      Path(run_dir) / "learning_percentage", lp, device=device,
                                                      dtype=dtype, chat_template=chat_template,
                                                      progress=progress, log=log)
    needs = needs & {"attribution", "hidden_states"}
    if not needs:
        return artifacts, fingerprints
    run_dir = Path(run_dir)
    pool = load_pool(pool_path)
    validation = load_pool(validation_path)
    warmup_dir = run_dir / "warmup"
    selection_dir = None
    if settings.warmup_fraction < 1:
        selection_dir = select_stage(pool_path, "random", str(settings.warmup_fraction), run_dir / "warmup-data",
                                     seed=settings.warmup.seed, loaded=pool, log=log).path
    if not str(validation_path):
        raise ConfigError("influence-based methods need validation data: set validation to a folder with one file per task")
    if shard is not None and shard.count > 1 and finished_manifest(warmup_dir) is None:
        raise ConfigError(f"shard jobs need a finished warmup in {warmup_dir}: run the same command once with "
                          "--stop-after warmup (no --shard) first")
    train_stage(model, pool_path, warmup_dir, settings.warmup, selection_dir=selection_dir, device=device,
                dtype=dtype, chat_template=chat_template, loaded=pool, progress=progress, log=log)
    if stop_after == "warmup":
        return artifacts, fingerprints
    if "attribution" in needs:
        features = run_dir / "features"
        pool_folders = features_stage(warmup_dir, pool.examples, pool.fingerprint, "pool", "adam",
                                      settings.features, features, device=device, shard=shard,
                                      progress=progress, log=log)
        val_folders = features_stage(warmup_dir, validation.examples, validation.fingerprint, "validation", "sgd",
                                     settings.features, features, device=device, shard=shard,
                                     progress=progress, log=log)
        if shard is not None and shard.count > 1:
            log(f"[features] {shard.name} done; when every shard is done: instruct-select merge {features}")
            return artifacts, fingerprints
        if stop_after == "features":
            return artifacts, fingerprints
        scores = scores_stage(warmup_dir, pool_folders, val_folders, validation.examples, run_dir / "scores",
                              progress=progress, log=log)
        artifacts["attribution"] = AttributionMatrix.load(scores.path)
        fingerprints["attribution"] = fingerprint_model(scores.path)
    if "hidden_states" in needs:
        artifacts["hidden_states"], fingerprints["hidden_states"] = _hidden_states(
            warmup_dir, pool, validation, settings, device, progress)
    return artifacts, fingerprints


def _hidden_states(warmup_dir: Path, pool, validation, settings: InfluenceSettings, device, progress):
    """Last-token states of pool and validation under the final warmup checkpoint (cheap: not cached)."""
    from .artifacts import fingerprint_json
    from .features.hidden import last_token_states
    from .influence.stages import warmup_model
    from .train.checkpoint import list_checkpoints

    model, tokenizer = warmup_model(warmup_dir, list_checkpoints(warmup_dir)[-1], device)
    length = settings.features.max_length
    states = {"pool": last_token_states(model, tokenizer, pool.examples, max_length=length, progress=progress),
              "validation": last_token_states(model, tokenizer, validation.examples, max_length=length,
                                              progress=progress)}
    return states, fingerprint_json([fingerprint_model(warmup_dir), pool.fingerprint, validation.fingerprint])


def run_config(config: RunConfig, *, shard: Shard | None = None, stop_after: str | None = None,
               progress: bool = True, log=print) -> dict[str, dict]:
    """Everything a RunConfig asks for: artifacts, each method x budget selection, fine-tuning, evaluation.

    Returns {"method @ budget": {"selection": path, "model": path or None, "summary": {...} or None}};
    empty when ``shard`` or ``stop_after`` ends the run early.
    """
    run_dir = Path(config.run_dir)
    chat_template = config.chat_template or None
    needs = {need for method in config.methods for need in get_selector(method).needs}
    device = local_device() or config.device
    artifacts, fingerprints = prepare_artifacts(needs, config.pool, config.validation, config.model,
                                                run_dir / "influence", config.influence,
                                                lp=config.learning_percentage, device=device,
                                                dtype=config.dtype, chat_template=chat_template, shard=shard,
                                                stop_after=stop_after, progress=progress, log=log)
    if (shard is not None and shard.count > 1) or stop_after:
        return {}
    results: dict[str, dict] = {}
    pool = load_pool(config.pool)  # once for every selection and fine-tuning below
    for budget in config.budgets:
        for method in config.methods:
            needed = get_selector(method).needs
            folder = run_dir / f"{method}-{str(Budget.parse(budget)).replace('%', 'pct')}-seed{config.seed}"
            options = config.learning_percentage.options() if "loss_trajectories" in needed else None
            selection = select_stage(config.pool, method, budget, folder / "select", seed=config.seed, log=log,
                                     artifacts={k: artifacts[k] for k in needed}, loaded=pool,
                                     artifact_fingerprints={k: fingerprints[k] for k in needed}, options=options)
            entry: dict[str, Any] = {"selection": str(selection.path), "model": None, "summary": None}
            if config.finetune:
                trained = train_stage(config.model, config.pool, folder / "train", config.train,
                                      selection_dir=selection.path, chat_template=chat_template, dtype=config.dtype,
                                      device=device, loaded=pool, progress=progress, log=log)
                entry["model"] = str(trained.path / "model")
                if config.tests:
                    result = evaluate_stage(trained.path / "model", config.tests, folder / "evaluation", config.eval,
                                            dtype=config.dtype, device=device, progress=progress, log=log)
                    entry["summary"] = result.manifest["outputs"]
            results[f"{method} @ {Budget.parse(budget)}"] = entry
    atomic_write_json(run_dir / "results.json", results)
    return results


def read_metrics(eval_dir: str | Path) -> dict:
    require_finished(eval_dir, "evaluation")
    return read_json(Path(eval_dir) / "metrics.json")


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
