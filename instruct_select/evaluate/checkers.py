"""Answer checkers: does a model's response count as a correct answer to a reference?

Each checker is a plain function ``(response, reference) -> bool`` registered by name in
``CHECKERS``; a test example picks one with ``record["checker"]`` and otherwise the evaluation's
default applies. ``get_checker`` turns a name into the function and refuses unknown names with the
list of known ones, so a typo in a data file fails before any generation is spent.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from instruct_select.errors import ConfigError

Checker = Callable[[str, str], bool]

# Commas count only as thousands separators (groups of exactly three digits), so "1,234" is one
# number but a list such as "1,2,3" starts with 1 rather than fusing into 123.
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Case-fold, collapse runs of whitespace to one space and trim the ends."""
    return _SPACE.sub(" ", text).strip().casefold()


def parse_numbers(text: str) -> list[Decimal]:
    """Every number in ``text``, in order, as exact decimals (thousands commas removed)."""
    numbers = []
    for match in _NUMBER.finditer(text):
        try:
            numbers.append(Decimal(match.group().replace(",", "")))
        except InvalidOperation:  # the pattern admits only valid literals; kept as a guard
            continue
    return numbers


def exact(response: str, reference: str) -> bool:
    """Equal after trimming whitespace at both ends; case and inner spacing matter."""
    return response.strip() == reference.strip()


def exact_ci(response: str, reference: str) -> bool:
    """Equal after case-folding and collapsing whitespace."""
    return normalise(response) == normalise(reference)


_MARKERS = (re.compile(r"####"), re.compile(r"the (?:final )?answer is", re.IGNORECASE))
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def final_answer(text: str) -> Decimal | None:
    """The number a worked answer ends on: after the last ``####``, else after the last "The
    answer is", else inside the last ``\\boxed{...}``, else the text's last number; None if none.

    Chain-of-thought answers mention many numbers before the result, so neither the first nor an
    arbitrary one will do; GSM8K's references mark theirs with ``####``.
    """
    for marker in _MARKERS:
        matches = list(marker.finditer(text))
        if matches:
            after = parse_numbers(text[matches[-1].end():])
            if after:
                return after[0]
    boxed = _BOXED.findall(text)
    if boxed and parse_numbers(boxed[-1]):
        return parse_numbers(boxed[-1])[0]
    numbers = parse_numbers(text)
    return numbers[-1] if numbers else None


def number(response: str, reference: str) -> bool:
    """The response's final answer equals the reference's, numerically (``final_answer`` on both).

    Decimals compare exactly, so "72.0" matches "72". No number on either side counts as wrong.
    """
    got, want = final_answer(response), final_answer(reference)
    return got is not None and want is not None and got == want


def contains(response: str, reference: str) -> bool:
    """The normalised reference occurs in the normalised response.

    An empty reference matches nothing: "" occurs in every string, and a vacuous pass would hide
    a broken test set.
    """
    want = normalise(reference)
    return bool(want) and want in normalise(response)


CHECKERS: dict[str, Checker] = {
    "exact": exact,
    "exact_ci": exact_ci,
    "number": number,
    "contains": contains,
}


def get_checker(name: str) -> Checker:
    """The checker registered under ``name``; ConfigError naming the known ones otherwise."""
    try:
        return CHECKERS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(CHECKERS))
        raise ConfigError(f"unknown answer checker {name!r}; known checkers: {known}") from None
