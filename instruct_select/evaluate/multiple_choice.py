"""Multiple-choice accuracy by log-likelihood: which option does the model find most likely?

Each question is a context (the chat prompt rendered with the tokenizer's template, ready for the
assistant's turn) and a list of options. An option's score is the summed log-probability of its
tokens given the context, as lm-evaluation-harness scores ``multiple_choice`` tasks (MMLU, the
multiple-choice BBH tasks): the context and option are tokenised together and split where the
context's own tokens end (lm-eval's ``_encode_pair``), so a word boundary tokenises as it would in
running text. Two accuracies come out, lm-eval's two:

- ``acc``: the option with the highest summed log-likelihood;
- ``acc_norm``: the highest log-likelihood divided by the option's length in characters (lm-eval's
  ``acc_norm``, the option's text without the whitespace moved into it; lighteval's character
  normalisation), which stops long options from losing just for being long. The mixture benchmark
  reports ``acc_norm`` as its headline.

The fast path (``option_loglikelihoods``) runs the shared context once with the key/value cache
(with any tokens every option starts with) and then all the options of the question as one batch on
top of it, stopping at the option tokens; when every option has one token of its own the shared
pass's last logits answer them all and no second pass runs.
``option_loglikelihoods_naive`` runs one full forward pass per option: the slow, obvious reference
the tests compare against (equal to 1e-5) and the benchmark measures against
(``benchmarks/mc_scoring.py``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from instruct_select.errors import InputError


@dataclass(frozen=True)
class ChoiceQuestion:
    """A tokenised question: the context's ids, each option's ids, each option's length in characters."""

    context_ids: list[int]
    option_ids: list[list[int]]
    option_chars: list[int]


def encode_question(tokenizer, context: str, options: Sequence[str], where: str = "question") -> ChoiceQuestion:
    """Tokenise ``context`` + each option as lm-eval does: trailing spaces of the context move to the
    option, the pair is tokenised whole and split after the context's own tokens."""
    if not context:
        raise InputError(f"{where}: empty context; a multiple-choice question needs a prompt")
    if len(options) < 2:
        raise InputError(f"{where}: {len(options)} option(s); a multiple-choice question needs at least two")
    stripped = context.rstrip()
    moved = context[len(stripped):]
    context_ids = tokenizer(stripped, add_special_tokens=False)["input_ids"]
    option_ids, option_chars = [], []
    for index, option in enumerate(options):
        continuation = moved + option
        whole = tokenizer(stripped + continuation, add_special_tokens=False)["input_ids"]
        ids = whole[len(context_ids):]
        if not ids:
            raise InputError(f"{where}: option {index} ({option!r}) has no tokens of its own")
        option_ids.append(ids)
        option_chars.append(len(option))
    return ChoiceQuestion(context_ids, option_ids, option_chars)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at each position, in float32 (logits may be bfloat16)."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _shared_prefix(options: list[list[int]]) -> int:
    """How many leading tokens every option shares, leaving each at least one of its own."""
    n = 0
    while all(len(ids) > n + 1 for ids in options) and len({ids[n] for ids in options}) == 1:
        n += 1
    return n


def option_loglikelihoods(model, question: ChoiceQuestion) -> list[float]:
    """Each option's summed log-likelihood given the context: the context once (key/value cache),
    then the options as one right-padded batch on top of it. Tokens every option starts with
    (lm-eval moves the context's trailing newline into the options) join the shared pass."""
    device = _device(model)
    shared = _shared_prefix(question.option_ids)
    prefix = question.context_ids + question.option_ids[0][:shared]
    options = [ids[shared:] for ids in question.option_ids]
    context = torch.tensor([prefix], dtype=torch.long, device=device)
    # logits_to_keep: only the shared tokens and the first option token are predicted here.
    out = model(input_ids=context, use_cache=True, logits_to_keep=shared + 1)
    logprobs = torch.log_softmax(out.logits[0].float(), dim=-1)
    common = sum(float(logprobs[i, token]) for i, token in enumerate(prefix[len(question.context_ids):]))
    scores = [common + float(logprobs[-1, ids[0]]) for ids in options]
    longest = max(len(ids) for ids in options)
    if longest == 1:
        return scores
    # The options' tokens but their last (nothing is predicted after it), right-padded; padding
    # sits after every real token, so under the causal mask it changes none of them.
    n, width, start = len(options), longest - 1, len(prefix)
    inputs = torch.zeros((n, width), dtype=torch.long)
    targets = torch.zeros((n, width), dtype=torch.long)
    valid = torch.zeros((n, width), dtype=torch.bool)
    for i, ids in enumerate(options):
        inputs[i, :len(ids) - 1] = torch.tensor(ids[:-1])
        targets[i, :len(ids) - 1] = torch.tensor(ids[1:])
        valid[i, :len(ids) - 1] = True
    cache = out.cache
    cache.batch_repeat_interleave(n)
    mask = torch.cat([torch.ones((n, start), dtype=torch.long), valid.long()], dim=1).to(device)
    positions = torch.arange(start, start + width, device=device).unsqueeze(0).expand(n, -1)
    rest = model(input_ids=inputs.to(device), attention_mask=mask, position_ids=positions,
                 cache=cache, use_cache=True).logits
    logprobs = _token_logprobs(rest, targets.to(device)).masked_fill(~valid.to(device), 0.0)
    return [score + float(value) for score, value in zip(scores, logprobs.sum(dim=1).tolist())]


def option_loglikelihoods_naive(model, question: ChoiceQuestion) -> list[float]:
    """The reference: one full forward pass of context + option for each option."""
    device = _device(model)
    scores = []
    for ids in question.option_ids:
        sequence = torch.tensor([question.context_ids + ids], dtype=torch.long, device=device)
        logits = model(input_ids=sequence).logits[0, len(question.context_ids) - 1:-1]
        scores.append(float(_token_logprobs(logits, sequence[0, len(question.context_ids):]).sum()))
    return scores


def score_questions(model, questions: Sequence[ChoiceQuestion], naive: bool = False) -> list[list[float]]:
    """Every question's option log-likelihoods (eval mode, no gradients; the mode is put back)."""
    score = option_loglikelihoods_naive if naive else option_loglikelihoods
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return [score(model, question) for question in questions]
    finally:
        model.train(was_training)


def _argmax(values: Sequence[float]) -> int:
    """The first index of the largest value (ties go to the earlier option, as numpy's argmax)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def choice_outcomes(loglikelihoods: Sequence[float], option_chars: Sequence[int], answer: int) -> dict:
    """{"acc", "acc_norm"} (each 0 or 1) and the two picks, for one question."""
    normalised = [ll / max(n, 1) for ll, n in zip(loglikelihoods, option_chars)]
    pick, pick_norm = _argmax(loglikelihoods), _argmax(normalised)
    return {"acc": pick == answer, "acc_norm": pick_norm == answer, "pick": pick, "pick_norm": pick_norm}


def standard_error(values: Sequence[float]) -> float:
    """Standard error of a mean (sample standard deviation / sqrt(n)), as lm-eval reports it; 0 for n < 2."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)
