"""Per-capability scores of a model, and the summaries that judge balance (METHODS.md §5).

Each capability has a held-out test set of Examples. An example's prompt is its messages up to
(not including) its last assistant turn, and the reference answer is that turn's content. The
model answers every prompt greedily (all capabilities in one generation pass, so batches stay
full), a checker compares answer and reference, and the accuracy per capability is summarised by
its macro-average, worst capability and spread: balance is a result in its own right.

Beside accuracy, each capability gets the held-out loss of its reference answers
(``heldout_loss.py``), summarised the same way except that the worst capability is the one with the
highest loss. An example whose reference answer has no token left within the loss pass's
``max_length`` has no loss: it is listed in the metrics, and a capability left with no example to
score stops the evaluation (before any generation) naming the setting to raise, because a loss
macro-average over fewer capabilities would not mean the same as the others.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from instruct_select.data.batching import Batching
from instruct_select.data.example import Example
from instruct_select.errors import InputError
from instruct_select.evaluate.checkers import Checker, get_checker
from instruct_select.evaluate.generation import Messages, generate_greedy
from instruct_select.evaluate.heldout_loss import heldout_losses

N_SAMPLES = 5
NO_SUBTASK = "(none)"
# The loss pass's defaults (``EvalSettings`` passes its own): room for few-shot prompts.
LOSS_BATCHING = Batching(max_length=2048, token_budget=8192, max_batch_size=64)


def split_example(example: Example, capability: str) -> tuple[Messages, str]:
    """(prompt, reference): the messages before the last assistant turn, and that turn's text."""
    roles = [m.get("role") for m in example.messages]
    if "assistant" not in roles:
        raise InputError(
            f"test example {example.id!r} in capability {capability!r} has no assistant turn "
            "to use as the reference answer"
        )
    last = len(roles) - 1 - roles[::-1].index("assistant")
    prompt = [dict(m) for m in example.messages[:last]]
    if not prompt or prompt[-1].get("role") != "user":
        raise InputError(
            f"test example {example.id!r} in capability {capability!r}: the turn before the last "
            "assistant answer must be a user turn (the question the model is asked)"
        )
    return prompt, example.messages[last]["content"]


def checker_for(example: Example, default: str) -> Checker:
    """The example's own checker (``record["checker"]``) if it names one, else the default."""
    record = example.record if isinstance(example.record, dict) else {}
    return get_checker(record.get("checker") or default)


def _accuracy(correct: list[bool]) -> dict[str, Any]:
    return {"score": sum(correct) / len(correct), "n": len(correct), "correct": sum(correct)}


def _mean_loss(losses: list[float]) -> dict[str, Any]:
    return {"mean": sum(losses) / len(losses), "n": len(losses)}


def _by_subtask(examples: list[Example], values: list, aggregate: Callable[[list], dict] = _accuracy
                ) -> dict[str, dict[str, Any]]:
    """``aggregate`` (accuracy, mean loss) per subtask; empty when the set has no subtasks. Examples
    without one, in a set that has them, are counted under "(none)" so the subtask counts add up
    to the total."""
    if all(e.subtask is None for e in examples):
        return {}
    groups: dict[str, list] = {}
    for example, value in zip(examples, values):
        groups.setdefault(example.subtask or NO_SUBTASK, []).append(value)
    return {name: aggregate(group) for name, group in sorted(groups.items())}


def summarise(scores: dict[str, float], higher_is_better: bool = True) -> dict[str, Any]:
    """Macro-average, worst capability and spread of per-capability scores.

    ``spread`` is the population standard deviation (ddof=0): the capabilities evaluated are the
    whole population being described, not a sample of some larger set. The worst capability is the
    lowest score, or the highest when lower is better (a loss). Ties for the worst go to the
    capability named first in alphabetical order, so the summary is deterministic.
    """
    if not scores:
        raise InputError("cannot summarise an empty set of capability scores")
    values = list(scores.values())
    macro = sum(values) / len(values)
    # min and max both return the first of equal values: the alphabetically first name.
    worst_name = (min if higher_is_better else max)(sorted(scores), key=lambda name: scores[name])
    variance = sum((v - macro) ** 2 for v in values) / len(values)
    return {
        "macro": macro,
        "worst": scores[worst_name],
        "worst_capability": worst_name,
        "spread": math.sqrt(variance),
        "n_capabilities": len(values),
    }


def _prepare(
    test_sets: dict[str, list[Example]], default_checker: str
) -> list[tuple[str, Example, Messages, str, Checker]]:
    """Check every test set and resolve every checker before any generation is spent."""
    if not test_sets:
        raise InputError("no test sets given: evaluation needs at least one capability")
    get_checker(default_checker)
    items = []
    for capability, examples in test_sets.items():
        if not examples:
            raise InputError(
                f"the test set for capability {capability!r} is empty; give it examples "
                "or leave the capability out"
            )
        for example in examples:
            prompt, reference = split_example(example, capability)
            check = checker_for(example, default_checker)
            items.append((capability, example, prompt, reference, check))
    return items


def _heldout_loss(model, tokenizer, items: list[tuple[str, Example, Messages, str, Checker]],
                  batching: Batching, progress: bool) -> dict[str, Any]:
    """The "heldout_loss" part of the metrics: per capability, its summary, the settings used."""
    losses, truncated = heldout_losses(model, tokenizer, [item[1] for item in items], batching, progress)
    per: dict[str, list[tuple[Example, float | None, bool]]] = {}
    for (capability, example, *_), loss, cut in zip(items, losses, truncated):
        per.setdefault(capability, []).append((example, loss, cut))
    capabilities = {}
    for capability, rows in per.items():
        scored = [(example, loss) for example, loss, _ in rows if loss is not None]
        excluded = [example.id for example, loss, _ in rows if loss is None]
        if not scored:
            raise InputError(
                f"capability {capability!r}: none of its {len(rows)} test examples keeps a token of its "
                f"reference answer within eval.max_length={batching.max_length} tokens, so it has no "
                "held-out loss; raise eval.max_length"
            )
        examples, values = [p[0] for p in scored], [p[1] for p in scored]
        capabilities[capability] = {
            **_mean_loss(values), "truncated": sum(cut for *_, cut in rows),
            "excluded_no_answer_token": excluded, "by_subtask": _by_subtask(examples, values, _mean_loss),
        }
    return {
        "capabilities": capabilities,
        "summary": summarise({cap: result["mean"] for cap, result in capabilities.items()}, higher_is_better=False),
        "settings": {"max_length": batching.max_length, "token_budget": batching.token_budget,
                     "max_batch_size": batching.max_batch_size,
                     "loss": "token-mean cross-entropy (nats) over the last assistant turn's tokens"},
    }


def evaluate_capabilities(
    model,
    tokenizer,
    test_sets: dict[str, list[Example]],
    max_new_tokens: int = 32,
    batch_size: int = 64,
    default_checker: str = "exact",
    progress: bool = True,
    loss_batching: Batching = LOSS_BATCHING,
) -> dict[str, Any]:
    """Score a model on each capability's test set: accuracy, and the held-out loss.

    Returns {"capabilities": {cap: {"score", "n", "correct", "by_subtask"}}, "summary":
    summarise(scores), "heldout_loss": {"capabilities": {cap: {"mean", "n", "truncated",
    "excluded_no_answer_token", "by_subtask"}}, "summary": (worst = highest loss), "settings"},
    "samples": {cap: the first 5 (id, prompt, reference, response, correct)}, "settings": the
    generation and checker settings used}. Scores are accuracies in [0, 1]; losses are nats.
    """
    items = _prepare(test_sets, default_checker)
    # The loss pass first: one forward pass, and a capability it cannot score stops the
    # evaluation before any generation is spent.
    heldout = _heldout_loss(model, tokenizer, items, loss_batching, progress)
    responses = generate_greedy(
        model, tokenizer, [item[2] for item in items],
        max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
    )
    outcomes: dict[str, list[tuple[Example, bool]]] = {cap: [] for cap in test_sets}
    samples: dict[str, list[dict[str, Any]]] = {cap: [] for cap in test_sets}
    for (capability, example, prompt, reference, check), response in zip(items, responses):
        ok = bool(check(response, reference))
        outcomes[capability].append((example, ok))
        if len(samples[capability]) < N_SAMPLES:
            samples[capability].append({
                "id": example.id, "prompt": prompt, "reference": reference,
                "response": response, "correct": ok,
            })
    capabilities = {}
    for capability, pairs in outcomes.items():
        examples, correct = [p[0] for p in pairs], [p[1] for p in pairs]
        by_subtask = _by_subtask(examples, correct)
        capabilities[capability] = {**_accuracy(correct), "by_subtask": by_subtask}
    return {
        "capabilities": capabilities,
        "summary": summarise({cap: result["score"] for cap, result in capabilities.items()}),
        "heldout_loss": heldout,
        "samples": samples,
        "settings": {
            "max_new_tokens": max_new_tokens,
            "default_checker": default_checker,
            "decoding": "greedy",
        },
    }


def write_metrics(metrics: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``metrics`` as JSON to ``path`` atomically: a reader never sees half a file.

    A directory ``path`` gets ``metrics.json`` inside it. The JSON goes to a temporary file in the
    same directory (so the rename stays on one filesystem) and is then moved into place.
    """
    target = Path(path)
    if target.is_dir():
        target = target / "metrics.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(metrics, handle, indent=2, ensure_ascii=False, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
