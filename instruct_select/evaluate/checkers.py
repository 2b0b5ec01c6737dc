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
from fractions import Fraction

from instruct_select.errors import ConfigError

Checker = Callable[[str, str], bool]

# Commas count only as thousands separators (groups of exactly three digits), so "1,234" is one
# number but a list such as "1,2,3" starts with 1 rather than fusing into 123.
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_SPACE = re.compile(r"\s+")
_MINUS_SIGNS = str.maketrans({"\u2212": "-"})  # U+2212 MINUS SIGN, as typeset maths writes it


def normalise(text: str) -> str:
    """Case-fold, collapse runs of whitespace to one space and trim the ends."""
    return _SPACE.sub(" ", text).strip().casefold()


def parse_numbers(text: str) -> list[Decimal]:
    """Every number in ``text``, in order, as exact decimals (thousands commas removed; a Unicode
    minus read as a minus)."""
    numbers = []
    for match in _NUMBER.finditer(text.translate(_MINUS_SIGNS)):
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


# A final-answer marker: GSM8K's "####", "The (final) answer is", or LaTeX's \boxed{...}.
_MARKER = re.compile(r"####|the (?:final )?answer is|\\boxed\s*(?=\{)", re.IGNORECASE)
# The answer must follow its marker closely: within this many characters and before the sentence
# ends, so that "the answer is not obvious ..." does not pick a number from later reasoning.
_MARKER_REACH = 40
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n\s*\n")
_FRAC = re.compile(r"([-+]?)\\[dt]?frac(?![a-zA-Z])\s*")
_SLASH_DENOMINATOR = re.compile(r"/(\d+)(?![\d.,]|/)")


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The contents of the balanced ``{...}`` opening at ``text[start]`` and the index after it."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1:i], i + 1
    return None


def _frac_argument(text: str, start: int) -> tuple[Fraction, int] | None:
    """A ``\\frac`` argument at ``start``: ``{number}`` or one digit (``\\frac14``); value and end."""
    braced = _braced(text, start)
    if braced is None:
        if start < len(text) and text[start].isdigit():
            return Fraction(int(text[start])), start + 1
        return None
    inner, end = braced
    match = _NUMBER.fullmatch(inner.strip())
    return (Fraction(Decimal(match.group().replace(",", ""))), end) if match else None


def _value_at(text: str, start: int) -> tuple[Fraction, int] | None:
    """The value written at ``text[start]`` (``\\frac{a}{b}`` or a number, a/b read as a
    fraction), with the index after it; None if none starts there."""
    frac = _FRAC.match(text, start)
    if frac:
        numerator = _frac_argument(text, frac.end())
        denominator = numerator and _frac_argument(text, numerator[1])
        if numerator and denominator and denominator[0] != 0:
            value = numerator[0] / denominator[0]
            return (-value if frac.group(1) == "-" else value), denominator[1]
        return None
    match = _NUMBER.match(text, start)
    if not match:
        return None
    value, end = Fraction(Decimal(match.group().replace(",", ""))), match.end()
    slash = _SLASH_DENOMINATOR.match(text, end)
    if slash and value.denominator == 1 and "," not in match.group() and "." not in match.group() \
            and int(slash.group(1)) != 0:
        return value / int(slash.group(1)), slash.end()
    return value, end


_VALUE_START = re.compile(r"[-+]?\\[dt]?frac(?![a-zA-Z])|" + _NUMBER.pattern)


def answer_values(text: str) -> list[Fraction]:
    """Every value in ``text``, in order, as exact fractions: numbers (thousands commas, a Unicode
    minus), a/b fractions of whole numbers and ``\\frac{a}{b}`` (``\\dfrac``, ``\\tfrac``)."""
    text = text.translate(_MINUS_SIGNS)
    values, pos = [], 0
    while (match := _VALUE_START.search(text, pos)) is not None:
        found = _value_at(text, match.start())
        if found is None:  # a \frac of non-numbers: read on inside it
            pos = match.end()
            continue
        values.append(found[0])
        pos = found[1]
    return values


def _marked_answer(text: str, marker: re.Match) -> Fraction | None:
    """The value a marker states: inside ``\\boxed{...}``, or right after ``####`` / "answer is"."""
    if marker.group().lower().startswith("\\boxed"):
        braced = _braced(text, marker.end())
        inside = answer_values(braced[0]) if braced else []
        return inside[0] if inside else None
    sentence_end = _SENTENCE_END.search(text, marker.end())
    limit = min(marker.end() + _MARKER_REACH, sentence_end.start() if sentence_end else len(text))
    found = _VALUE_START.search(text, marker.end())
    while found is not None and found.start() < limit:
        value = _value_at(text, found.start())
        if value is not None:
            return value[0]
        found = _VALUE_START.search(text, found.end())
    return None


def final_answer(text: str) -> Fraction | None:
    """The first stated final answer, else the text's last value; None if it has none.

    The rule: scan the markers ``####``, "The answer is" / "The final answer is" (any case) and
    ``\\boxed{...}`` in order and take the FIRST one that states a value (right after the marker,
    within 40 characters and the same sentence; inside the box for ``\\boxed``). With no such
    marker, the text's last value: chain-of-thought answers mention many numbers before the
    result, so neither the first nor an arbitrary one will do.

    Why the first marker: the reasoning comes before the answer and carries no marker, and a
    model that does not stop at the end of its turn runs on past its answer, inventing the next
    question and answering that too ("The answer is 18. ... The answer is 3."): its own answer is
    the first one stated. Values are exact fractions, so "0.25", "1/4" and ``\\boxed{\\frac{1}{4}}``
    are equal, and a Unicode minus (U+2212) is a minus.
    """
    text = text.translate(_MINUS_SIGNS)
    for marker in _MARKER.finditer(text):
        value = _marked_answer(text, marker)
        if value is not None:
            return value
    values = answer_values(text)
    return values[-1] if values else None


def number(response: str, reference: str) -> bool:
    """The response's final answer equals the reference's, numerically (``final_answer`` on both).

    Values compare exactly, so "72.0" matches "72" and "0.25" matches ``\boxed{\frac{1}{4}}``. No
    number on either side counts as wrong.
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
