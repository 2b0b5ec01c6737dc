"""IFEval's instruction checks on responses built to pass and to fail, one pair per instruction
type in the benchmark, plus the two accuracies and the refusal of bad records."""
from __future__ import annotations

import json

import pytest

from instruct_select.errors import InputError
from instruct_select.evaluate.ifeval import (CHECKS, check_ifeval_arguments, check_instructions, count_words,
                                             ifeval_accuracy, split_sentences)
from tests.conftest import SHARED

LONG_EN = "This answer is written in plain English so that the language detector has enough text to judge."
LONG_DE = "Dies ist eine Antwort auf Deutsch, damit die Spracherkennung genug Text hat, um sicher zu urteilen."

# instruction: (kwargs, a response that follows it, one that does not)
CASES = {
    "change_case:capital_word_frequency": ({"capital_frequency": 2, "capital_relation": "at least"},
                                           "THIS is VERY important", "this is very important"),
    "change_case:english_capital": ({}, LONG_EN.upper(), LONG_EN),
    "change_case:english_lowercase": ({}, LONG_EN.lower(), LONG_EN),
    "combination:repeat_prompt": ({"prompt_to_repeat": "Write a poem."}, "Write a poem. Roses are red.",
                                  "Roses are red. Write a poem."),
    "combination:two_responses": ({}, "First answer.\n******\nSecond answer.", "Same.\n******\nSame."),
    "detectable_content:number_placeholders": ({"num_placeholders": 2}, "Dear [name], at [address].",
                                               "Dear [name], hello."),
    "detectable_content:postscript": ({"postscript_marker": "P.S."}, "Hi.\nP.S. See you.", "Hi. See you."),
    "detectable_format:constrained_response": ({}, "My answer is yes.", "Yes, certainly."),
    "detectable_format:json_format": ({}, '```json\n{"a": 1}\n```', "a: 1"),
    "detectable_format:multiple_sections": ({"section_spliter": "Section", "num_sections": 2},
                                            "Section 1\nfoo\nSection 2\nbar", "Section 1\nfoo"),
    "detectable_format:number_bullet_lists": ({"num_bullets": 2}, "* one\n* two", "* one\n* two\n- three"),
    "detectable_format:number_highlighted_sections": ({"num_highlights": 2}, "*one* and *two*", "*one* only"),
    "detectable_format:title": ({}, "<<My Title>>\ntext", "My Title\ntext"),
    "keywords:existence": ({"keywords": ["apple", "pear"]}, "An Apple and a pear.", "An apple alone."),
    "keywords:forbidden_words": ({"forbidden_words": ["cat"]}, "A catalogue of dogs.", "The Cat sat."),
    "keywords:frequency": ({"keyword": "go", "frequency": 3, "relation": "at least"}, "go go go", "go go"),
    "keywords:letter_frequency": ({"letter": "z", "let_frequency": 2, "let_relation": "less than"},
                                  "a z here", "zz top"),
    "language:response_language": ({"language": "de"}, LONG_DE, LONG_EN),
    "length_constraints:nth_paragraph_first_word": (
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"}, "First.\n\nThen, second.",
        "First.\n\nAnd second."),
    "length_constraints:number_paragraphs": ({"num_paragraphs": 2}, "One.\n***\nTwo.", "One.\n***\n\n***\nTwo."),
    "length_constraints:number_sentences": ({"num_sentences": 3, "relation": "less than"},
                                            "One here. Two here.", "One. Two. Three. Four."),
    "length_constraints:number_words": ({"num_words": 5, "relation": "at least"}, "one two three four five",
                                        "one two"),
    "punctuation:no_comma": ({}, "No commas here.", "Yes, one."),
    "startend:end_checker": ({"end_phrase": "Any other questions?"}, "Done. Any other questions?\"",
                             "Any other questions? Done."),
    "startend:quotation": ({}, '"All quoted."', '"Half quoted.'),
}


def test_every_instruction_type_is_covered():
    assert set(CASES) == set(CHECKS)


@pytest.mark.parametrize("instruction", sorted(CASES))
def test_check_passes_and_fails(instruction):
    if instruction.startswith(("language:", "change_case:english")):
        pytest.importorskip("langdetect")
    kwargs, good, bad = CASES[instruction]
    assert check_instructions(good, [instruction], [kwargs]) == [True]
    assert check_instructions(bad, [instruction], [kwargs]) == [False]


def test_prompt_and_instruction_level_accuracy():
    ids = ["punctuation:no_comma", "startend:quotation"]
    followed = [check_instructions('"No comma"', ids, [{}, {}]), check_instructions('"a, b"', ids, [{}, {}])]
    assert followed == [[True, True], [False, True]]
    assert ifeval_accuracy(followed) == {"prompt_level_strict": 0.5, "instruction_level_strict": 0.75,
                                         "n_prompts": 2, "n_instructions": 4}


def test_counting_helpers():
    assert count_words("Hello, world! It's 3 o'clock.") == 7
    assert split_sentences("Dr. Smith came. He left! Did he?\n\nYes") == ["Dr. Smith came.", "He left!",
                                                                        "Did he?", "Yes"]


def test_bad_records_are_refused():
    with pytest.raises(InputError, match="unknown IFEval instruction"):
        check_instructions("x", ["no:such"], [{}])
    with pytest.raises(InputError, match="lacks its argument"):
        check_instructions("x", ["keywords:existence"], [{}])
    with pytest.raises(InputError, match="2 instruction ids but 1"):
        check_instructions("x", ["punctuation:no_comma", "startend:quotation"], [{}])


def test_every_benchmark_record_is_checkable():
    path = SHARED / "data" / "real" / "ifeval_input_data.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    pytest.importorskip("langdetect")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(records) == 541
    for record in records:
        check_ifeval_arguments(record["instruction_id_list"], record["kwargs"], str(record["key"]))
