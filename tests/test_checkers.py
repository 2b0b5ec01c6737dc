"""The `number` checker's edge cases (issue 20): nested LaTeX, a Unicode minus, run-on answers.

The golden cases of every checker are in test_evaluate.py; these pin the final-answer rule of
``final_answer``: the first marker (####, "The answer is", \\boxed) that states a value, else the
text's last value, with values compared as exact fractions.
"""
from __future__ import annotations

from fractions import Fraction

import pytest

from instruct_select.evaluate.checkers import answer_values, final_answer, number, parse_numbers


@pytest.mark.parametrize("text, value", [
    ("\\boxed{\\frac{1}{4}}", Fraction(1, 4)),
    ("so $x = \\boxed{\\frac{1}{4}}$, which took 3 steps", Fraction(1, 4)),  # not the last bare number
    ("The final answer is $\\boxed{-\\dfrac{3}{4}}$.", Fraction(-3, 4)),
    ("\\boxed{\\tfrac{10}{4}}", Fraction(5, 2)),
    ("\\boxed{\\frac14}", Fraction(1, 4)),  # LaTeX's one-digit arguments
    ("\\boxed{\\frac{1,000}{8}}", Fraction(125)),
    ("\\boxed{{7}}", Fraction(7)),
])
def test_nested_boxed_fractions_are_read_whole(text, value):
    assert final_answer(text) == value


def test_boxed_fraction_matches_its_decimal_and_slash_forms():
    assert number("The answer is 0.25.", "\\boxed{\\frac{1}{4}}")
    assert number("1/4", "\\boxed{\\frac{1}{4}}")
    assert not number("The answer is 4.", "\\boxed{\\frac{1}{4}}")  # the old last-bare-number reading
    assert not number("The answer is 1.", "\\boxed{\\frac{1}{4}}")


@pytest.mark.parametrize("text, value", [
    ("It is \u22125 degrees", -5),
    ("#### \u221212", -12),
    ("The answer is \u22123.5.", Fraction(-7, 2)),
    ("x = \u2212\\frac{1}{2}", Fraction(-1, 2)),
])
def test_unicode_minus_is_a_minus(text, value):
    assert final_answer(text) == value


def test_unicode_minus_in_checker_and_parse_numbers():
    assert number("It is \u22125 degrees", "#### -5")
    assert not number("It is \u22125 degrees", "#### 5")
    assert parse_numbers("from \u22122 to 3") == [-2, 3]


@pytest.mark.parametrize("text, value", [
    # a run-on answer: the model answers, then invents the next question and answers it too
    ("18 - 3 = 15 eggs a day... 15 * 2 = 30. The answer is 18.\nQuestion: How many? The answer is 3.", 18),
    ("24 + 48 = 72\n#### 72\n\nQuestion: Tom has 3 apples ... #### 5", 72),
    ("The answer is 18. Next: The answer is 3. The answer is 4.", 18),
    # the earliest marker of any kind
    ("#### 18\nUser: and now? The answer is 3.", 18),
    ("The answer is \\boxed{18}. The answer is 3.", 18),
    ("We get \\boxed{6}. Then for the next problem \\boxed{2}.", 6),
])
def test_run_on_answer_counts_its_first_stated_final_answer(text, value):
    assert final_answer(text) == value


def test_run_on_checker_verdicts():
    run_on = "Janet has 16 - 3 - 4 = 9 eggs, 9 * 2 = 18. The answer is 18.\nUser: Next question.\nThe answer is 3."
    assert number(run_on, "#### 18")
    assert not number(run_on, "#### 3")


@pytest.mark.parametrize("text, value", [
    # a marker states its value right after it, within the sentence; otherwise the next one counts
    ("The answer is not obvious. We have 5 apples and 7 pears, so 12", 12),
    ("the answer is not what you think. The answer is 7.", 7),
    ("The answer is: x = 5.", 5),
    # existing behaviour kept
    ("first 3, then 72", 72),
    ("72, since 3 + 69", 69),
    ("The answer is 72. I checked 3 ways.", 72),
    ("so x = \\boxed{18}, after 2 steps", 18),
    ("The answer is 1,234.", 1234),
    ("$0.50", Fraction(1, 2)),
    ("#### .5", Fraction(1, 2)),
    ("1,2,3", 3),
    ("48 / 2 = 24 and 24 + 48 = 72 #### 72", 72),
    ("no number here", None),
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", 2),  # not a number: read inside, as before
])
def test_marker_reach_and_existing_behaviour(text, value):
    assert final_answer(text) == value


def test_answer_values_reads_fractions_but_not_decimals_or_thousands_over_a_slash():
    assert answer_values("3/4 and 1.5/2 and 1,000/4 and 5/0") == [
        Fraction(3, 4), Fraction(3, 2), Fraction(2), Fraction(1000), Fraction(4), Fraction(5), Fraction(0)]
