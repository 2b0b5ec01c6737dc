"""The three stages every method ends in: select, train, evaluate.

Each runs into its own folder through ``artifacts.run_stage``: a finished folder with the same
settings and inputs is reused, one made with other settings is refused by name. The command's
``RunContext`` supplies the device, dtype, chat template and the loaded pool.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..artifacts import Artifact, atomic_write_json, fingerprint_json, fingerprint_model, require_finished, run_stage
from ..budget import Budget
from ..config import EvalSettings, TrainSettings, to_dict
from ..data.chat import tokenize_example
from ..data.example import Example
from ..data.loading import LoadedData, load_test_sets
from ..distributed import is_main
from ..errors import ConfigError, InputError
from ..evaluate.capabilities import evaluate_capabilities, prepare_items
from ..layout import TrainFolders
from ..models.loading import load_base_model, load_tokenizer, load_trained
from ..select.base import SelectionContext
from ..select.registry import get_selector
from ..select.selection import read_selected_ids, run_selector, write_selection
from ..train.loop import save_trained, train_model
from .context import RunContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenCounting:
    """How a token budget counts: each example rendered with ``tokenizer``, truncated to ``max_length``."""

    tokenizer: str | Path
    max_length: int = 2048


@dataclass(frozen=True)
class MethodInputs:
    """What a selection method is given besides the pool: ``artifacts``, what it needs (each one's
    value and fingerprint, recorded in the manifest); ``options``, its selection options; ``tokens``,
    how a token budget counts (required for one)."""

    artifacts: dict[str, Artifact] = field(default_factory=dict)
    options: dict | None = None
    tokens: TokenCounting | None = None


def select_stage(context: RunContext, method: str, budget: str, out_dir: str | Path, *, seed: int = 0,
                 given: MethodInputs = MethodInputs()):
    """Select from the context's pool into ``out_dir``.

    ``method``: a selector name (``select.registry``); ``budget``: "N" examples, "P%" of the pool
    or "Nt" tokens (``budget.Budget``); ``seed``: the selection's seed; ``given``: its artifacts,
    options and token counting. Returns the StageResult (the folder holds ``selection.tsv``).
    """
    loaded = context.require_pool()
    parsed = Budget.parse(budget)
    artifacts, options, tokens = given.artifacts or {}, given.options, given.tokens
    ignores_budget = get_selector(method).ignores_budget
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
        read = SelectionContext(loaded.examples, seed=seed, artifacts={name: a.value for name, a in artifacts.items()},
                                options=options or {})
        selection = run_selector(method, read, parsed, token_length=lengths)
        logger.info("[select] %s @ %s: %d of %d examples", method, parsed, len(selection), len(loaded.examples))
        if not is_main():  # every process selects the same; one writes
            return {}
        return write_selection(selection, loaded, folder)

    return run_stage(out_dir, "select", settings, inputs, build, seed=seed)


def _token_lengths(loaded: LoadedData, tokens: TokenCounting) -> dict[str, int]:
    """Rendered, truncated token count of every pool example: what training will see."""
    tok = load_tokenizer(tokens.tokenizer)
    return {e.id: len(tokenize_example(tok, e, tokens.max_length)) for e in loaded.examples}


def train_stage(context: RunContext, model: str | Path, out_dir: str | Path, settings: TrainSettings, *,
                selection_dir: str | Path | None = None, data: LoadedData | None = None):
    """Fine-tune ``model`` (a folder or hub id) on the context's pool (or ``data``), restricted to the
    selection in ``selection_dir`` if given, with ``settings``, into ``out_dir`` (the trained model
    in its ``model/``). Returns the StageResult."""
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
        result = train_model(base, tokenizer, examples, settings, folder)
        save_trained(result.model, tokenizer, TrainFolders(folder).model)
        return {"examples": result.examples, "excluded_no_response": result.render_report.no_response,
                "truncated": result.render_report.truncated, "steps": result.steps,
                "tokens": result.tokens, "epoch_losses": result.epoch_losses,
                "base_model": str(model)}

    return run_stage(out_dir, "train", stage_settings, inputs, build, seed=settings.seed)


def evaluate_stage(context: RunContext, model_dir: str | Path, tests: str | Path, out_dir: str | Path,
                   settings: EvalSettings | None = None, *, base: str | Path | None = None):
    """Evaluate the trained model in ``model_dir`` (or a base model; ``base``: the base of a LoRA
    adapter) on every capability of the test sets in ``tests``, into ``out_dir``, which gets
    ``metrics.json``. Returns the StageResult (``outputs``: the summary, scores and losses)."""
    settings = settings or EvalSettings()
    test_sets = load_test_sets(tests)
    check_checkers(test_sets, settings.default_checker)
    inputs = {"model": fingerprint_model(model_dir), "tests": _sets_fingerprint(test_sets)}

    def build(folder: Path) -> dict:
        model = load_trained(model_dir, base=base, dtype=context.dtype, device=context.device)
        tokenizer = load_tokenizer(model_dir)
        metrics = evaluate_capabilities(model, tokenizer, test_sets, settings)
        atomic_write_json(folder / "metrics.json", metrics)
        loss = metrics["heldout_loss"]
        excluded = sum(len(v["excluded_no_answer_token"]) for v in loss["capabilities"].values())
        if excluded:
            logger.info("[evaluate] %d test examples have no reference-answer token within "
                        "eval.max_length=%d and no loss (listed in metrics.json)", excluded, settings.max_length)
        return {"summary": metrics["summary"],
                "scores": {c: v["score"] for c, v in metrics["capabilities"].items()},
                "loss": {c: v["mean"] for c, v in loss["capabilities"].items()},
                "loss_summary": loss["summary"]}

    return run_stage(out_dir, "evaluate", to_dict(settings), inputs, build)


def _sets_fingerprint(test_sets: dict[str, list[Example]]) -> str:
    return fingerprint_json({k: [[e.id, e.messages] for e in v] for k, v in sorted(test_sets.items())})


def check_checkers(test_sets: dict[str, list[Example]], default_checker: str) -> None:
    """Every test record can be scored (its checker or record metric exists, its fields fit it), before
    any model is loaded: evaluation's own preparation, run early."""
    prepare_items(test_sets, default_checker)
