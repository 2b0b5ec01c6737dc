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

A test record may name a metric of its own in ``checker`` (the mixture benchmark's records do):

- ``choice``: multiple choice by log-likelihood (``multiple_choice.py``; the record's ``choices``
  and ``answer`` index); no generation. The score is ``acc_norm`` (log-likelihood per character, as lm-eval), and
  ``acc`` (raw) is reported beside it;
- ``ifeval``: IFEval's verifiable instructions (``ifeval.py``; ``instruction_id_list``, ``kwargs``)
  on the greedy response; the score is prompt-level strict accuracy, instruction-level beside it;
- ``humaneval``: the response's code run against the record's ``test`` in a sandbox
  (``code_execution.py``); the score is pass@1;
- ``loss_only``: the example counts in the held-out loss only;
- any answer checker's name (``checkers.py``).

A record with ``has_reference: false`` (an IFEval prompt: IFEval has no reference answers) is left
out of the held-out loss, and ``max_new_tokens`` in a record overrides the evaluation's for it
(GSM8K's worked answers need more tokens than a multiple-choice letter). Every accuracy and mean
loss comes with its standard error (sample standard deviation / sqrt(n), as lm-eval reports it).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from instruct_select.config import EvalSettings
from instruct_select.data.batching import Batching
from instruct_select.data.example import Example
from instruct_select.errors import InputError
from instruct_select.evaluate.checkers import Checker, get_checker
from instruct_select.evaluate.code_execution import check_problem, passes
from instruct_select.evaluate.generation import Messages, generate_greedy, render_prompts
from instruct_select.evaluate.heldout_loss import heldout_losses
from instruct_select.evaluate.ifeval import check_ifeval_arguments, check_instructions
from instruct_select.evaluate.multiple_choice import choice_outcomes, encode_question, score_questions, standard_error

N_SAMPLES = 5
NO_SUBTASK = "(none)"
# The loss pass's defaults (``EvalSettings`` passes its own): room for few-shot prompts.
# Metrics a record names in ``checker`` that are not answer checkers (see the module docstring).
RECORD_METRICS = ("choice", "ifeval", "humaneval", "loss_only")


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


def _accuracy(correct: list[bool]) -> dict[str, Any]:
    return {"score": sum(correct) / len(correct), "n": len(correct), "correct": sum(correct),
            "stderr": standard_error([float(c) for c in correct])}


def _mean_loss(losses: list[float]) -> dict[str, Any]:
    return {"mean": sum(losses) / len(losses), "n": len(losses), "stderr": standard_error(losses)}


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


@dataclass
class _Item:
    """One test example, checked and resolved before any model work: its prompt, its reference
    answer (None without one) and how it is scored (``kind``: a record metric or "checker")."""

    capability: str
    example: Example
    prompt: Messages
    reference: str | None
    kind: str
    check: Checker | None = None
    max_new_tokens: int | None = None

    @property
    def record(self) -> dict:
        return self.example.record if isinstance(self.example.record, dict) else {}


def _resolve(capability: str, example: Example, default_checker: str) -> _Item:
    prompt, reference = split_example(example, capability)
    record = example.record if isinstance(example.record, dict) else {}
    where = f"test example {example.id!r} in capability {capability!r}"
    kind = record.get("checker") or default_checker
    if record.get("has_reference", True) is False:
        reference = None
    tokens = record.get("max_new_tokens")
    if tokens is not None and (not isinstance(tokens, int) or tokens < 1):
        raise InputError(f"{where}: max_new_tokens must be a positive integer, got {tokens!r}")
    item = _Item(capability, example, prompt, reference, kind if kind in RECORD_METRICS else "checker",
                 max_new_tokens=tokens)
    if kind == "choice":
        choices, answer = record.get("choices"), record.get("answer")
        if not (isinstance(choices, list) and len(choices) >= 2 and all(isinstance(c, str) and c for c in choices)):
            raise InputError(f"{where}: a choice record needs 'choices', a list of two or more non-empty strings")
        if not (isinstance(answer, int) and 0 <= answer < len(choices)):
            raise InputError(f"{where}: 'answer' must be the index of the right choice (0..{len(choices) - 1}), "
                             f"got {answer!r}")
    elif kind == "ifeval":
        check_ifeval_arguments(record.get("instruction_id_list") or [], record.get("kwargs") or [], where)
    elif kind == "humaneval":
        check_problem(record, where)
    elif kind != "loss_only":
        item.check = get_checker(kind)
    return item


def prepare_items(test_sets: dict[str, list[Example]], default_checker: str) -> list[_Item]:
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
        items += [_resolve(capability, example, default_checker) for example in examples]
    return items


def _heldout_loss(model, tokenizer, items: list[_Item], batching: Batching) -> dict[str, Any]:
    """The "heldout_loss" part of the metrics: per capability, its summary, the settings used."""
    items = [item for item in items if item.reference is not None]
    losses, truncated = heldout_losses(model, tokenizer, [item.example for item in items], batching)
    per: dict[str, list[tuple[Example, float | None, bool]]] = {}
    for item, loss, cut in zip(items, losses, truncated):
        per.setdefault(item.capability, []).append((item.example, loss, cut))
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
        "summary": (summarise({cap: result["mean"] for cap, result in capabilities.items()}, higher_is_better=False)
                    if capabilities else None),  # None: no test example has a reference answer
        "settings": {"max_length": batching.max_length, "token_budget": batching.token_budget,
                     "max_batch_size": batching.max_batch_size,
                     "loss": "token-mean cross-entropy (nats) over the last assistant turn's tokens"},
    }


def _choices(model, tokenizer, items: list[_Item]) -> list[dict]:
    """Multiple-choice outcomes by log-likelihood (the shared prompt once, the options batched)."""
    if not items:
        return []
    render_prompts(tokenizer, [item.prompt for item in items])  # refuses a tokenizer without a template
    questions = [encode_question(tokenizer, tokenizer.apply_chat_template(item.prompt, add_generation_prompt=True,
                                                                         tokenize=False),
                                 item.record["choices"], f"test example {item.example.id!r}") for item in items]
    scores = score_questions(model, questions)
    return [{**choice_outcomes(ll, q.option_chars, item.record["answer"]), "loglikelihoods": ll}
            for item, q, ll in zip(items, questions, scores)]


def _generate(model, tokenizer, items: list[_Item], default_tokens: int, batch_size: int) -> list[str]:
    """Greedy responses, one generation pass per distinct max_new_tokens (batches stay full)."""
    responses: list[str] = [""] * len(items)
    groups: dict[int, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item.max_new_tokens or default_tokens, []).append(index)
    for tokens, indices in sorted(groups.items()):
        out = generate_greedy(model, tokenizer, [items[i].prompt for i in indices], max_new_tokens=tokens,
                              batch_size=batch_size)
        for i, response in zip(indices, out):
            responses[i] = response
    return responses


def _judge(item: _Item, response: str) -> dict[str, Any]:
    """{"correct": bool, ...} for a generated response, by the item's metric."""
    if item.kind == "ifeval":
        followed = check_instructions(response, item.record["instruction_id_list"], item.record["kwargs"],
                                      f"test example {item.example.id!r}")
        return {"correct": all(followed), "followed": followed}
    if item.kind == "humaneval":
        result = passes(item.record, response)
        return {"correct": result.passed, "status": result.status}
    return {"correct": bool(item.check(response, item.reference))}


METRIC_NAMES = {"choice": "acc_norm", "ifeval": "prompt_level_strict", "humaneval": "pass@1", "checker": "accuracy"}


def _capability_accuracy(rows: list[tuple[_Item, dict]]) -> dict[str, Any]:
    """Accuracy of one capability's scored items, with the extra numbers its metrics report."""
    examples, correct = [item.example for item, _ in rows], [outcome["correct"] for _, outcome in rows]
    result = {**_accuracy(correct), "by_subtask": _by_subtask(examples, correct),
              "metric": "+".join(sorted({METRIC_NAMES[item.kind] for item, _ in rows}))}
    raw = [float(outcome["acc"]) for item, outcome in rows if item.kind == "choice"]
    if raw:
        result["acc"] = {"score": sum(raw) / len(raw), "stderr": standard_error(raw)}
    followed = [float(ok) for _, outcome in rows for ok in outcome.get("followed", [])]
    if followed:
        result["instruction_level_strict"] = {"score": sum(followed) / len(followed),
                                              "stderr": standard_error(followed), "n": len(followed)}
    return result


def evaluate_capabilities(
    model,
    tokenizer,
    test_sets: dict[str, list[Example]],
    settings: EvalSettings = EvalSettings(),
) -> dict[str, Any]:
    """Score a model on each capability's test set: accuracy, and the held-out loss.

    ``model``, ``tokenizer``: a causal LM and its tokenizer (with a chat template); ``test_sets``:
    each capability's test examples; ``settings``: the greedy tokens per prompt
    (``max_new_tokens``), the prompts per generation batch (``batch_size``), the checker of records
    that name none (``default_checker``), and the loss pass's batching (``max_length`` tokens per
    example, ``loss_token_budget`` padded tokens per batch, at most ``batch_size`` examples).

    Returns {"capabilities": {cap: {"score", "n", "correct", "stderr", "metric", "by_subtask"}},
    "summary": summarise(scores), "heldout_loss": {"capabilities": {cap: {"mean", "n", "stderr",
    "truncated", "excluded_no_answer_token", "by_subtask"}}, "summary": (worst = highest loss),
    "settings"}, "samples": {cap: the first 5 (id, prompt, reference, response, correct)},
    "settings": the generation and checker settings used}. Scores are accuracies in [0, 1]; losses
    are nats. A capability whose examples are all ``loss_only`` has a held-out loss and no score.
    """
    max_new_tokens, batch_size, default_checker = settings.max_new_tokens, settings.batch_size, settings.default_checker
    loss_batching = Batching(settings.max_length, settings.loss_token_budget, settings.batch_size)
    items = prepare_items(test_sets, default_checker)
    # The loss pass first: one forward pass, and a capability it cannot score stops the
    # evaluation before any generation is spent.
    heldout = _heldout_loss(model, tokenizer, items, loss_batching)
    choice_items = [item for item in items if item.kind == "choice"]
    generated = [item for item in items if item.kind not in ("choice", "loss_only")]
    outcomes: dict[int, dict[str, Any]] = {}
    for item, outcome in zip(choice_items, _choices(model, tokenizer, choice_items)):
        outcomes[id(item)] = {**outcome, "correct": outcome["acc_norm"],
                              "response": item.record["choices"][outcome["pick_norm"]]}
    responses = _generate(model, tokenizer, generated, max_new_tokens, batch_size)
    for item, response in zip(generated, responses):
        outcomes[id(item)] = {**_judge(item, response), "response": response}
    per: dict[str, list[tuple[_Item, dict]]] = {}
    samples: dict[str, list[dict[str, Any]]] = {cap: [] for cap in test_sets}
    for item in items:
        outcome = outcomes.get(id(item))
        if outcome is None:
            continue
        per.setdefault(item.capability, []).append((item, outcome))
        if len(samples[item.capability]) < N_SAMPLES:
            samples[item.capability].append({
                "id": item.example.id, "prompt": item.prompt, "reference": item.reference,
                "response": outcome["response"], "correct": bool(outcome["correct"]),
            })
    capabilities = {capability: _capability_accuracy(per[capability]) for capability in test_sets
                    if capability in per}
    return {
        "capabilities": capabilities,
        "summary": summarise({cap: result["score"] for cap, result in capabilities.items()}),
        "heldout_loss": heldout,
        "samples": samples,
        "settings": {
            "max_new_tokens": max_new_tokens,
            "default_checker": default_checker,
            "decoding": "greedy",
            "multiple_choice": "log-likelihood of each option given the chat prompt; score acc_norm "
                               "(per character, as lm-eval), acc beside it",
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
