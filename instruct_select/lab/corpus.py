"""The lab's pretraining corpus: plain statements about the world, with no instruction format.

The tiny base model learns its facts and skills here, the way a real LLM does from web text:
every entity fact in several paraphrases and many times over (well-known entities more often
than long-tail ones), arithmetic facts, program traces, comparison and boolean reasoning, and text
formatting described in prose. Instruction tuning later only has to elicit these.

A document is one or more lines of text and never contains a blank line, so a corpus file can
hold documents separated by blank lines (``corpus_text``/``read_corpus``).
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

from instruct_select.lab import world as w
from instruct_select.lab.capabilities import Difficulty
from instruct_select.lab.world import Entity, World

# Share of the corpus characters each section gets; knowledge needs the most repetition.
SHARES = (("knowledge", 0.40), ("math", 0.15), ("code", 0.15), ("logic", 0.10), ("format", 0.20))
# Per-round mention rate by fame tier (1, 2, 3): long-tail facts are seen about a third as often.
FAME_RATES = (1.0, 0.7, 0.45)

_FACT_PHRASES = {
    "city": ("{n} lives in {v}.", "{n} is from {v}.", "The home of {n} is the city of {v}.",
             "{n} has a house in {v}.", "In the city of {v} lives {n}."),
    "colour": ("{n} likes the colour {v}.", "The favourite colour of {n} is {v}.",
               "{n}'s favourite colour is {v}.", "Of all colours, {n} likes {v} best."),
    "food": ("{n} likes to eat {v}.", "The favourite food of {n} is {v}.",
             "{n}'s favourite food is {v}.", "{n} enjoys {v} more than any other food."),
    "job": ("{n} works as {a} {v}.", "{n} is {a} {v} by trade.", "The job of {n} is {v}.",
            "By profession, {n} is {a} {v}."),
    "age": ("{n} is {v} years old.", "The age of {n} is {v}.", "{n} has lived for {v} years."),
    "species": ("{n} is {a} {v}.", "{n} is of the {v} kind.", "The species of {n} is {v}."),
}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def fact_sentence(rng: random.Random, name: str, attribute: str, value: str) -> str:
    """One paraphrase of the fact that ``name``'s ``attribute`` is ``value``."""
    phrase = rng.choice(_FACT_PHRASES[attribute])
    return phrase.format(n=name, v=value, a=_article(value))


def _profile(rng: random.Random, entity: Entity) -> str:
    sentences = [fact_sentence(rng, entity.name, a, v) for a, v in entity.facts]
    rng.shuffle(sentences)
    return " ".join(sentences)


def _mentioned(round_index: int, rate: float) -> bool:
    """Whether an entity with mention ``rate`` appears in this round (every entity in round 0)."""
    return math.ceil((round_index + 1) * rate) > math.ceil(round_index * rate)


def knowledge_documents(rng: random.Random, world: World, chars: int) -> list[str]:
    """Rounds over the entities until ``chars`` is reached; a round ends whole.

    In each round an included entity gets either a profile (all its facts in one paragraph) or
    its facts scattered over per-attribute rosters, so facts appear in varied company.
    """
    docs: list[str] = []
    total, round_index = 0, 0
    while total < chars or round_index == 0:
        rosters: dict[str, list[str]] = {a: [] for a in w.ATTRIBUTES}
        order = list(world.entities)
        rng.shuffle(order)
        for entity in order:
            if not _mentioned(round_index, FAME_RATES[entity.fame - 1]):
                continue
            if rng.random() < 0.5:
                docs.append(_profile(rng, entity))
                total += len(docs[-1])
                continue
            for attribute, value in entity.facts:
                rosters[attribute].append(fact_sentence(rng, entity.name, attribute, value))
        for attribute in w.ATTRIBUTES:
            lines = rosters[attribute]
            for start in range(0, len(lines), 6):
                docs.append(" ".join(lines[start:start + 6]))
                total += len(docs[-1])
        round_index += 1
    return docs


def _math_line(rng: random.Random, world: World, d: Difficulty) -> str:
    kind = rng.randrange(4)
    bound = max(3, d.max_operand * rng.randint(1, 3) // 3)
    a, b = rng.randint(0, bound), rng.randint(0, bound)
    if kind == 0:
        return f"{a} + {b} = {a + b}"
    if kind == 1:
        a, b = max(a, b), min(a, b)
        return f"{a} - {b} = {a - b}"
    if kind == 2:
        s = w.make_sum(rng, rng.randint(3, d.math_terms), max(3, d.max_operand // 2))
        return f"{s.text} = {s.value}"
    name, things = rng.choice(world.names), rng.choice(w.THINGS)
    a, b = max(a, b, 1), min(a, b)
    if rng.random() < 0.5:
        return f"{name} has {a} {things} and gets {b} more, so {name} has {a + b} {things}."
    return f"{name} has {a} {things} and gives {b} away, so {name} has {a - b} {things} left."


def _code_line(rng: random.Random, world: World, d: Difficulty) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        s = w.make_trace(rng, rng.randint(1, d.program_steps), d.code_max_const)
        return f"{s.text} -> {s.value}"
    if kind == 1:
        definition, call, s = w.make_call(rng, rng.randint(1, min(2, d.program_steps)),
                                          d.code_max_const)
        return f"{definition} ; {call} -> {s.value}"
    s = w.make_loop(rng, rng.randint(2, d.program_steps + 1), d.code_max_const)
    return f"{s.text} -> {s.value}"


def _logic_line(rng: random.Random, world: World, d: Difficulty) -> str:
    if rng.random() < 0.35:
        expr, value = w.make_bool(rng, rng.randint(0, d.bool_ops))
        return f"{expr} is {'true' if value else 'false'}."
    relation, order, statements = w.make_chain(rng, world.names, rng.randint(2, d.chain_length))
    x, y = sorted(rng.sample(range(len(order)), 2))
    conclusion = rng.choice((
        f"So {order[0]} is the {relation[2]} and {order[-1]} is the {relation[3]}.",
        f"So {order[x]} is {relation[0]} than {order[y]}.",
        f"So {order[y]} is {relation[1]} than {order[x]}, and {order[x]} is not "
        f"{relation[1]} than {order[y]}.",
    ))
    return " ".join(statements) + " " + conclusion


def _format_line(rng: random.Random, world: World, d: Difficulty) -> str:
    kind = rng.randrange(4)
    words = rng.sample(w.WORDS, rng.randint(2, d.list_length))
    text = " ".join(words)
    if kind == 0:
        return rng.choice(("The word {w} in capital letters is {u}.",
                           "Written in uppercase, {w} becomes {u}.")).format(
            w=words[0], u=words[0].upper())
    if kind == 1:
        return f"The words {text} in reverse order are {' '.join(reversed(words))}."
    if kind == 2:
        n = rng.randint(2, d.max_repeat)
        return f"The word {words[0]} written {n} times is {' '.join([words[0]] * n)}."
    return f"The words {text} joined with commas are {', '.join(words)}."


_LINES: dict[str, Callable[[random.Random, World, Difficulty], str]] = {
    "math": _math_line, "code": _code_line, "logic": _logic_line, "format": _format_line}


def skill_documents(rng: random.Random, section: str, world: World, difficulty: Difficulty,
                    chars: int) -> list[str]:
    """Documents of 4-10 lines from one skill section, until ``chars`` is reached."""
    docs: list[str] = []
    total = 0
    while total < chars:
        lines = [_LINES[section](rng, world, difficulty) for _ in range(rng.randint(4, 10))]
        docs.append("\n".join(lines))
        total += len(docs[-1])
    return docs


def build_corpus(world: World, difficulty: Difficulty, seed: int,
                 chars: int = 800_000) -> list[str]:
    """The pretraining documents (about ``chars`` characters), interleaved in a seeded order."""
    docs: list[str] = []
    for section, share in SHARES:
        rng = random.Random(f"{seed}:corpus:{section}")
        budget = int(chars * share)
        if section == "knowledge":
            docs += knowledge_documents(rng, world, budget)
        else:
            docs += skill_documents(rng, section, world, difficulty, budget)
    random.Random(f"{seed}:corpus:order").shuffle(docs)
    return docs


def corpus_text(documents: list[str]) -> str:
    """The corpus file's text: documents separated by one blank line, ending with a newline."""
    for i, doc in enumerate(documents):
        if not doc or "\n\n" in doc:
            raise ValueError(f"corpus document {i} is empty or holds a blank line")
    return "\n\n".join(documents) + "\n"


def read_corpus(path: Path) -> list[str]:
    """The documents of a corpus file (the inverse of ``corpus_text``)."""
    text = path.read_text(encoding="utf-8")
    return [doc for doc in text.rstrip("\n").split("\n\n") if doc]
