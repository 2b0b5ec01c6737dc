"""The three stages every method ends in: select, train, evaluate.

Each runs into its own folder through ``artifacts.run_stage``: a finished folder with the same
settings and inputs is reused, one made with other settings is refused by name. The command's
``RunContext`` supplies the device, dtype, chat template, progress, log and the loaded pool.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..artifacts import Artifact, atomic_write_json, fingerprint_json, fingerprint_model, require_finished, run_stage
from ..config import EvalSettings, TrainSettings, to_dict
from .context import RunContext
from ..data.example import Example
from ..data.loading import LoadedData, load_test_sets
from ..distributed import is_main
from ..errors import ConfigError, InputError
from ..layout import TrainFolders
from ..budget import Budget
from ..select.registry import get_selector
from ..select.selection import read_selected_ids, run_selector, write_selection


@dataclass(frozen=True)
class TokenCounting:
    """How a token budget counts: each example rendered with ``tokenizer``, truncated to ``max_length``."""

    tokenizer: str | Path
    max_length: int = 2048


def select_stage(context: RunContext, method: str, budget: str, out_dir: str | Path, *, seed: int = 0,
                 artifacts: dict[str, Artifact] | None = None, options: dict | None = None,
                 tokens: TokenCounting | None = None):
    """Select from the context's pool into ``out_dir``; returns the StageResult.

    ``artifacts``: what the method needs (its value and fingerprint, recorded in the manifest).
    A token budget counts each example's rendered tokens as ``tokens`` says (required then).
    """
    loaded = context.require_pool()
    parsed = Budget.parse(budget)
    artifacts = artifacts or {}
    ignores_budget = getattr(get_selector(method), "ignores_budget", False)
    settings = {"method": method, "budget": "all" if ignores_budget else str(parsed), "options": options or {}}
    inputs = {"pool": loaded.fingerprint, **{name: a.fingerprint for name, a in artifacts.items()}}
    if parsed.kind == "tokens":
        if tokens is None:
            raise ConfigError("a token budget needs a tokenizer to count tokens: pass --tokenizer "
                              "(the model you will train)")
        settings.update(tokenizer=str(tokens.tokenizer), max_length=tokens.max_length)
    if not ignores_budget:
        parsed.check_fits(len(loaded.examples))  # before the stage starts: a refusal leaves nothing behind

    def build(folder: Path) -> dict:
        lengths = _token_lengths(loaded, tokens) if parsed.kind == "tokens" else None
        selection = run_selector(method, loaded.examples, parsed, seed=seed, options=options, token_length=lengths,
                                 artifacts={name: a.value for name, a in artifacts.items()})
        context.log(f"[select] {method} @ {parsed}: {len(selection)} of {len(loaded.examples)} examples")
        if not is_main():  # every process selects the same; one writes
            return {}
        return write_selection(selection, loaded, folder)

    return run_stage(out_dir, "select", settings, inputs, build, seed=seed, log=context.log)


def _token_lengths(loaded: LoadedData, tokens: TokenCounting) -> dict[str, int]:
    """Rendered, truncated token count of every pool example: what training will see."""
    from ..data.chat import tokenize_example
    from ..models.loading import load_tokenizer

    tok = load_tokenizer(tokens.tokenizer)
    return {e.id: len(tokenize_example(tok, e, tokens.max_length)) for e in loaded.examples}


def train_stage(context: RunContext, model: str | Path, out_dir: str | Path, settings: TrainSettings, *,
                selection_dir: str | Path | None = None, data: LoadedData | None = None):
    """Fine-tune ``model`` on the context's pool (or ``data``), restricted to a selection if given."""
    from ..models.loading import load_base_model, load_tokenizer
    from ..train.loop import save_trained, train_model

    loaded = data if data is not None else context.require_pool()
    examples = loaded.examples
    inputs = {"model": fingerprint_model(model), "data": loaded.fingerprint}
    if selection_dir is not None:
        require_finished(selection_dir, "selection")
        wanted = read_selected_ids(selection_dir)
        by_id = loaded.by_id()
        unknown = [i for i in wanted if i not in by_id]
        if unknown:
            raise InputError(f"selection {selection_dir} names {len(unknown)} ids absent from "
                             f"{loaded.source} (e.g. {unknown[0]}): it was made from another pool")
        examples = [by_id[i] for i in wanted]
        inputs["selection"] = fingerprint_model(selection_dir)
    stage_settings = {"train": to_dict(settings), "chat_template": context.chat_template, "dtype": context.dtype}

    def build(folder: Path) -> dict:
        base = load_base_model(model, context.dtype, context.device)  # first: "not a causal LM" before tokenizer errors
        tokenizer = load_tokenizer(model, context.chat_template)
        result = train_model(base, tokenizer, examples, settings, folder, progress=context.progress, log=context.log)
        save_trained(result.model, tokenizer, TrainFolders(folder).model)
        return {"examples": result.examples, "excluded_no_response": result.render_report.no_response,
                "truncated": result.render_report.truncated, "steps": result.steps,
                "tokens": result.tokens, "epoch_losses": result.epoch_losses,
                "base_model": str(model)}

    return run_stage(out_dir, "train", stage_settings, inputs, build, seed=settings.seed, log=context.log)


def evaluate_stage(context: RunContext, model_dir: str | Path, tests: str | Path, out_dir: str | Path,
                   settings: EvalSettings | None = None, *, base: str | Path | None = None):
    """Evaluate a trained model (or a base model) on every capability; writes metrics.json."""
    from ..data.batching import Batching
    from ..evaluate import evaluate_capabilities
    from ..models.loading import load_tokenizer, load_trained

    settings = settings or EvalSettings()
    test_sets = load_test_sets(tests)
    check_checkers(test_sets, settings.default_checker)
    inputs = {"model": fingerprint_model(model_dir), "tests": _sets_fingerprint(test_sets)}

    def build(folder: Path) -> dict:
        model = load_trained(model_dir, base=base, dtype=context.dtype, device=context.device)
        tokenizer = load_tokenizer(model_dir)
        loss_batching = Batching(settings.max_length, settings.loss_token_budget, settings.batch_size)
        metrics = evaluate_capabilities(model, tokenizer, test_sets, max_new_tokens=settings.max_new_tokens,
                                        batch_size=settings.batch_size, default_checker=settings.default_checker,
                                        progress=context.progress, loss_batching=loss_batching)
        atomic_write_json(folder / "metrics.json", metrics)
        loss = metrics["heldout_loss"]
        excluded = sum(len(v["excluded_no_answer_token"]) for v in loss["capabilities"].values())
        if excluded:
            context.log(f"[evaluate] {excluded} test examples have no reference-answer token within "
                    f"eval.max_length={settings.max_length} and no loss (listed in metrics.json)")
        return {"summary": metrics["summary"],
                "scores": {c: v["score"] for c, v in metrics["capabilities"].items()},
                "loss": {c: v["mean"] for c, v in loss["capabilities"].items()},
                "loss_summary": loss["summary"]}

    return run_stage(out_dir, "evaluate", to_dict(settings), inputs, build, log=context.log)


def _sets_fingerprint(test_sets: dict[str, list[Example]]) -> str:
    return fingerprint_json({k: [[e.id, e.messages] for e in v] for k, v in sorted(test_sets.items())})


def check_checkers(test_sets: dict[str, list[Example]], default_checker: str) -> None:
    """Every test record can be scored (its checker or record metric exists, its fields fit it), before
    any model is loaded: evaluation's own preparation, run early."""
    from ..evaluate.capabilities import prepare_items

    prepare_items(test_sets, default_checker)
