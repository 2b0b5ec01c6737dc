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


def number(response: str, reference: str) -> bool:
    """The first number in the response equals the last number in the reference, numerically.

    The reference's last number is its final answer ("… #### 72" in GSM8K); the response's first
    number is what a short greedy answer commits to. Decimals compare exactly, so "72.0" matches
    "72". No number on either side counts as wrong.
    """
    got, want = parse_numbers(response), parse_numbers(reference)
    return bool(got) and bool(want) and got[0] == want[-1]


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
