"""IFEval's verifiable instructions, checked on a response (strict accuracy).

IFEval (Zhou et al., 2023; google-research ``instruction_following_eval``) asks a prompt with one or
more verifiable instructions ("answer in fewer than 50 words", "wrap the whole response in double
quotes") and checks each on the response as written ("strict"; the paper's "loose" variant, which
also tries the response without its first/last line and asterisks, is not computed). Each check
below is written from the paper's definitions and the reference implementation's rules, for the 25
instruction types in the benchmark's 541 prompts:

- prompt-level strict accuracy: the share of prompts whose every instruction is followed;
- instruction-level strict accuracy: the share of all instructions followed.

Two differences from the reference code, both because nothing may be downloaded at run time: the
reference counts sentences with NLTK's punkt model and words for ``capital_word_frequency`` with
NLTK's ``word_tokenize`` (both need data files fetched from the network); here sentences are split
by the reference's own regular-expression splitter rules (end punctuation followed by space and a
capital, abbreviations kept) and words by a ``\\w+``-style pattern that keeps hyphenated words whole.
Language identification uses ``langdetect`` as the reference does (a pure-Python package whose
profiles ship in the wheel); as in the reference, text it cannot classify counts as followed.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from instruct_select.errors import ConfigError, InputError

Check = Callable[[str, dict], bool]
RELATIONS = ("less than", "at least")


def _compare(count: int, relation: str, threshold: int) -> bool:
    if relation == "less than":
        return count < threshold
    if relation == "at least":
        return count >= threshold
    raise InputError(f"IFEval relation {relation!r} is not one of {RELATIONS}")


def count_words(text: str) -> int:
    """Words as the reference counts them (NLTK's RegexpTokenizer(r"\\w+"))."""
    return len(re.findall(r"\w+", text))


_ABBREVIATIONS = re.compile(r"\b(Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|vs|etc|e\.g|i\.e|Inc|Ltd|Co)\.$", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """Sentences: split after . ! ? (and closing quotes) followed by whitespace, not after a common
    abbreviation or a single capital initial; newlines between paragraphs also end a sentence."""
    pieces = []
    for block in re.split(r"\n\s*\n", text):
        current = ""
        for part in re.split(r"(?<=[.!?])(?:[\"')\]]*)\s+", block):
            current = f"{current} {part}".strip() if current else part.strip()
            if current and not (_ABBREVIATIONS.search(current) or re.search(r"\b[A-Z]\.$", current)):
                pieces.append(current)
                current = ""
        if current:
            pieces.append(current)
    return [p for p in pieces if p.strip()]


def _detect_language(text: str) -> str | None:
    """The langdetect code of ``text``, or None when it cannot tell (no letters, too short)."""
    try:
        import langdetect
        from langdetect import DetectorFactory
    except ImportError:
        raise ConfigError("IFEval's language checks need langdetect: pip install langdetect") from None
    DetectorFactory.seed = 0  # langdetect samples; a fixed seed makes the answer reproducible
    try:
        return langdetect.detect(text)
    except langdetect.LangDetectException:
        return None


def _language(response: str, kw: dict) -> bool:
    found = _detect_language(response)
    return found is None or found == kw["language"]


def _english_capital(response: str, kw: dict) -> bool:
    found = _detect_language(response)
    return response.isupper() and (found is None or found == "en")


def _english_lowercase(response: str, kw: dict) -> bool:
    found = _detect_language(response)
    return response.islower() and (found is None or found == "en")


def _capital_word_frequency(response: str, kw: dict) -> bool:
    words = re.findall(r"\w+(?:[-']\w+)*", response)
    return _compare(sum(w.isupper() for w in words), kw["capital_relation"], kw["capital_frequency"])


def _repeat_prompt(response: str, kw: dict) -> bool:
    return response.strip().lower().startswith(kw["prompt_to_repeat"].strip().lower())


def _two_responses(response: str, kw: dict) -> bool:
    parts = response.split("******")
    kept = []
    for index, part in enumerate(parts):
        if not part.strip():
            if 0 < index < len(parts) - 1:
                return False
        else:
            kept.append(part.strip())
    return len(kept) == 2 and kept[0] != kept[1]


def _placeholders(response: str, kw: dict) -> bool:
    return len(re.findall(r"\[.*?\]", response)) >= kw["num_placeholders"]


def _postscript(response: str, kw: dict) -> bool:
    marker = kw["postscript_marker"].strip()
    pattern = {"P.P.S": r"\s*p\.\s?p\.\s?s.*$", "P.S.": r"\s*p\.\s?s\..*$"}.get(
        marker, r"\s*" + re.escape(marker.lower()) + r".*$")
    return bool(re.findall(pattern, response.lower(), flags=re.MULTILINE))


def _constrained_response(response: str, kw: dict) -> bool:
    return any(option in response.strip() for option in ("My answer is yes.", "My answer is no.",
                                                         "My answer is maybe."))


def _json_format(response: str, kw: dict) -> bool:
    text = response.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    text = text.removesuffix("```").strip()
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _multiple_sections(response: str, kw: dict) -> bool:
    splitter = kw["section_spliter"].strip()
    sections = re.split(r"\s?" + re.escape(splitter) + r"\s?\d+\s?", response)
    return len(sections) - 1 >= kw["num_sections"]


def _bullet_lists(response: str, kw: dict) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == kw["num_bullets"]


def _highlighted_sections(response: str, kw: dict) -> bool:
    single = [h for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", response) if h[2:-2].strip()]
    return len(single) + len(double) >= kw["num_highlights"]


def _title(response: str, kw: dict) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))


def _keywords_exist(response: str, kw: dict) -> bool:
    return all(re.search(re.escape(k), response, flags=re.IGNORECASE) for k in kw["keywords"])


def _forbidden_words(response: str, kw: dict) -> bool:
    return not any(re.search(r"\b" + re.escape(w) + r"\b", response, flags=re.IGNORECASE)
                   for w in kw["forbidden_words"])


def _keyword_frequency(response: str, kw: dict) -> bool:
    count = len(re.findall(re.escape(kw["keyword"].strip()), response, flags=re.IGNORECASE))
    return _compare(count, kw["relation"], kw["frequency"])


def _letter_frequency(response: str, kw: dict) -> bool:
    count = Counter(response.lower())[kw["letter"].strip().lower()]
    return _compare(count, kw["let_relation"], kw["let_frequency"])


def _nth_paragraph_first_word(response: str, kw: dict) -> bool:
    paragraphs = re.split(r"\n\n", response)
    count = sum(1 for p in paragraphs if p.strip())
    nth = kw["nth_paragraph"]
    if nth > count:
        return False
    paragraph = paragraphs[nth - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first = ""
    for letter in word:
        if letter in {".", ",", "?", "!", "'", '"'}:
            break
        first += letter.lower()
    return count == kw["num_paragraphs"] and first == kw["first_word"].lower()


def _number_paragraphs(response: str, kw: dict) -> bool:
    paragraphs = re.split(r"\s?\*\*\*\s?", response)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index in (0, len(paragraphs) - 1):
                count -= 1
            else:
                return False
    return count == kw["num_paragraphs"]


def _number_sentences(response: str, kw: dict) -> bool:
    return _compare(len(split_sentences(response)), kw["relation"], kw["num_sentences"])


def _number_words(response: str, kw: dict) -> bool:
    return _compare(count_words(response), kw["relation"], kw["num_words"])


def _no_comma(response: str, kw: dict) -> bool:
    return "," not in response


def _end_checker(response: str, kw: dict) -> bool:
    return response.strip().strip('"').lower().endswith(kw["end_phrase"].strip().lower())


def _quotation(response: str, kw: dict) -> bool:
    text = response.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


CHECKS: dict[str, Check] = {
    "change_case:capital_word_frequency": _capital_word_frequency,
    "change_case:english_capital": _english_capital,
    "change_case:english_lowercase": _english_lowercase,
    "combination:repeat_prompt": _repeat_prompt,
    "combination:two_responses": _two_responses,
    "detectable_content:number_placeholders": _placeholders,
    "detectable_content:postscript": _postscript,
    "detectable_format:constrained_response": _constrained_response,
    "detectable_format:json_format": _json_format,
    "detectable_format:multiple_sections": _multiple_sections,
    "detectable_format:number_bullet_lists": _bullet_lists,
    "detectable_format:number_highlighted_sections": _highlighted_sections,
    "detectable_format:title": _title,
    "keywords:existence": _keywords_exist,
    "keywords:forbidden_words": _forbidden_words,
    "keywords:frequency": _keyword_frequency,
    "keywords:letter_frequency": _letter_frequency,
    "language:response_language": _language,
    "length_constraints:nth_paragraph_first_word": _nth_paragraph_first_word,
    "length_constraints:number_paragraphs": _number_paragraphs,
    "length_constraints:number_sentences": _number_sentences,
    "length_constraints:number_words": _number_words,
    "punctuation:no_comma": _no_comma,
    "startend:end_checker": _end_checker,
    "startend:quotation": _quotation,
}


def check_instructions(response: str, instruction_ids: list[str], kwargs: list[dict[str, Any]],
                       where: str = "IFEval prompt") -> list[bool]:
    """Whether ``response`` follows each instruction (strict), in order."""
    if len(instruction_ids) != len(kwargs):
        raise InputError(f"{where}: {len(instruction_ids)} instruction ids but {len(kwargs)} kwargs")
    results = []
    for instruction, kw in zip(instruction_ids, kwargs):
        check = CHECKS.get(instruction)
        if check is None:
            raise InputError(f"{where}: unknown IFEval instruction {instruction!r}; known: {sorted(CHECKS)}")
        clean = {k: v for k, v in (kw or {}).items() if v is not None}
        try:
            results.append(bool(check(response, clean)))
        except KeyError as missing:
            raise InputError(f"{where}: instruction {instruction!r} lacks its argument {missing}") from None
    return results


def check_ifeval_arguments(instruction_ids: list[str], kwargs: list[dict], where: str) -> None:
    """Refuse, before any generation, a record whose instructions a response could not be checked
    against (unknown id, missing argument): checking an empty response exercises every rule."""
    check_instructions("", instruction_ids, kwargs, where)


def ifeval_accuracy(followed: list[list[bool]]) -> dict[str, float | int]:
    """Prompt-level and instruction-level strict accuracy of per-prompt results."""
    if not followed:
        raise InputError("no IFEval prompts were scored")
    flat = [ok for prompt in followed for ok in prompt]
    return {"prompt_level_strict": sum(all(p) for p in followed) / len(followed),
            "instruction_level_strict": sum(flat) / len(flat), "n_prompts": len(followed),
            "n_instructions": len(flat)}
