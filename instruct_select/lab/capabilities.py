"""The lab's capabilities: code, math, logic, knowledge and format, each a set of task templates.

A ``Capability`` names the checker the evaluator applies (``exact``, ``exact_ci`` or ``number``)
and holds two or more ``Subtask`` templates. A subtask draws the content of one question (its
fields, answer, a content ``key`` and plausible wrong answers) and renders it with one of several
prompt phrasings. The key identifies what is asked regardless of phrasing
("knowledge:colour:Velkar", "math:add:23+45"), so test, validation and pool can be kept disjoint
by content, and knowledge test questions ask about facts the pool never asks about. Knowledge
prompts name only the entity and the attribute: the answer has to come from what the model
learnt in pretraining.

``CAPABILITIES`` is the registry, in a fixed order. Generators take an explicit ``random.Random``:
nothing here touches global random state.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Set
from dataclasses import dataclass, fields

from instruct_select.errors import ConfigError
from instruct_select.lab import world as w
from instruct_select.lab.world import ATTRIBUTES, World

__all__ = ["CAPABILITIES", "Capability", "Context", "Difficulty", "Draft", "Item", "Subtask"]

# Draws allowed for one item before its question space counts as exhausted, and redraws of a
# repeated pool prompt before the repeat is accepted.
_HARD_LIMIT = 5000
_SOFT_RETRIES = 4


@dataclass(frozen=True)
class Difficulty:
    """The knobs that set how hard the questions are; each item draws a level up to these."""

    # Defaults sized for a ~1M-parameter model pretrained for about a minute on two CPU cores:
    # small operands whose sums the corpus states often enough to be memorised, short programs,
    # short chains. Raise them for a larger model.
    max_operand: int = 10    # math: operands up to this (a level-1 item uses a third of it)
    math_terms: int = 3      # math multi_step: at most this many operands (at least 3)
    program_steps: int = 2   # code: at most this many assignments / loop repeats - 1
    code_max_const: int = 5  # code: constants up to this
    chain_length: int = 3    # logic: at most this many people in a comparison chain (at least 3)
    bool_ops: int = 2        # logic: at most this many and/or operators
    list_length: int = 3     # format: at most this many words in a list (at least 2)
    max_repeat: int = 3      # format: repeat a word at most this many times (at least 2)

    def __post_init__(self) -> None:
        least = {"max_operand": 3, "math_terms": 3, "program_steps": 1, "code_max_const": 2,
                 "chain_length": 3, "bool_ops": 1, "list_length": 2, "max_repeat": 2}
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < least[f.name]:
                raise ConfigError(f"difficulty {f.name}={value!r} must be an integer >= "
                                  f"{least[f.name]}")
        if self.chain_length > 12:
            raise ConfigError(f"difficulty chain_length={self.chain_length} must be <= 12")


@dataclass(frozen=True)
class Context:
    """What a builder draws from: the world and the difficulty knobs."""

    world: World
    difficulty: Difficulty


@dataclass(frozen=True)
class Draft:
    """The content of one question before phrasing."""

    fields: dict[str, str]
    answer: str
    key: str
    level: int
    distractors: tuple[str, ...]


@dataclass(frozen=True)
class Subtask:
    """One task template: a content builder and the phrasings its prompt may take."""

    name: str
    phrasings: tuple[str, ...]
    build: Callable[[random.Random, Context], Draft | None]


@dataclass(frozen=True)
class Item:
    """One generated question with its reference answer."""

    capability: str
    subtask: str
    prompt: str
    answer: str
    key: str
    level: int
    distractors: tuple[str, ...]
    fields: tuple[tuple[str, str], ...]
    phrasing: int


@dataclass(frozen=True)
class Capability:
    """A capability: its checker and its subtasks (templates)."""

    name: str
    checker: str
    description: str
    subtasks: tuple[Subtask, ...]

    @property
    def subtask_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.subtasks)

    def subtask(self, name: str) -> Subtask:
        for s in self.subtasks:
            if s.name == name:
                return s
        raise KeyError(f"{self.name} has no subtask {name!r}; known: {self.subtask_names}")

    def generate(self, rng: random.Random, n: int, ctx: Context,
                 exclude: Set[str] = frozenset(), unique: bool = True) -> list[Item]:
        """``n`` items, subtasks in turn (so each gets an equal share, give or take one).

        exclude: content keys never to produce (the test and validation keys, for the pool).
        unique:  distinct keys (test, validation); otherwise exact repeats of a prompt are only
                 avoided while the question space allows it (the pool).
        """
        items: list[Item] = []
        seen: set[str] = set()
        # Redraws of a repeated pool prompt are rationed to n in all, so a saturated question
        # space (a 100K pool over a few hundred facts) costs at most twice the draws.
        budget = [n]
        for i in range(n):
            sub = self.subtasks[i % len(self.subtasks)]
            items.append(self._draw(rng, sub, ctx, exclude, seen, unique, budget))
        return items

    def _draw(self, rng: random.Random, sub: Subtask, ctx: Context, exclude: Set[str],
              seen: set[str], unique: bool, budget: list[int]) -> Item:
        repeats = 0
        for _ in range(_HARD_LIMIT):
            draft = sub.build(rng, ctx)
            if draft is None or draft.key in exclude:
                continue
            item = self.render(sub, draft, rng.randrange(len(sub.phrasings)))
            mark = item.key if unique else item.prompt
            if mark in seen and (unique or (budget[0] > 0 and repeats < _SOFT_RETRIES)):
                budget[0] -= 1
                repeats += 1
                continue
            seen.add(mark)
            return item
        raise ConfigError(
            f"capability {self.name!r}, subtask {sub.name!r}: ran out of distinct questions; "
            "ask for fewer test/validation examples, more entities or larger difficulty knobs")

    def render(self, sub: Subtask, draft: Draft, phrasing: int) -> Item:
        """The item for ``draft`` phrased with template number ``phrasing``."""
        fields = tuple(sorted(draft.fields.items()))
        prompt = sub.phrasings[phrasing].format(**draft.fields)
        distractors = tuple(d for d in draft.distractors if d != draft.answer)
        return Item(self.name, sub.name, prompt, draft.answer, draft.key, draft.level,
                    distractors, fields, phrasing)

    def rephrase(self, item: Item, rng: random.Random) -> Item:
        """The same question in a different phrasing (a near duplicate)."""
        sub = self.subtask(item.subtask)
        others = [i for i in range(len(sub.phrasings)) if i != item.phrasing]
        draft = Draft(dict(item.fields), item.answer, item.key, item.level, item.distractors)
        return self.render(sub, draft, rng.choice(others) if others else item.phrasing)

    def wrong_answer(self, item: Item, rng: random.Random) -> str:
        """A plausible wrong answer: one of the item's distractors."""
        if not item.distractors:
            raise ValueError(f"item {item.key} has no distractors")
        return rng.choice(item.distractors)


def _strs(values) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _add(rng: random.Random, ctx: Context) -> Draft:
    level = rng.randint(1, 3)
    bound = max(3, ctx.difficulty.max_operand * level // 3)
    a, b = rng.randint(0, bound), rng.randint(0, bound)
    return Draft({"a": str(a), "b": str(b)}, str(a + b), f"math:add:{a}+{b}", level,
                 _strs(w.near_values(a + b, a, b)))


def _sub(rng: random.Random, ctx: Context) -> Draft:
    level = rng.randint(1, 3)
    bound = max(3, ctx.difficulty.max_operand * level // 3)
    b, a = sorted((rng.randint(0, bound), rng.randint(0, bound)))
    return Draft({"a": str(a), "b": str(b)}, str(a - b), f"math:sub:{a}-{b}", level,
                 _strs(w.near_values(a - b, a + b, b)))


def _multi_step(rng: random.Random, ctx: Context) -> Draft:
    terms = rng.randint(3, ctx.difficulty.math_terms)
    s = w.make_sum(rng, terms, max(3, ctx.difficulty.max_operand // 2))
    return Draft({"expr": s.text}, str(s.value), f"math:multi:{s.text}", terms - 1, _strs(s.near))


_STORIES = {
    "+": ("{name} has {a} {things} and gets {b} more.",
          "{name} had {a} {things}. Then {name} found {b} more."),
    "-": ("{name} has {a} {things} and gives {b} away.",
          "{name} had {a} {things} and lost {b} of them."),
}


def _word_problem(rng: random.Random, ctx: Context) -> Draft:
    name, things = rng.choice(ctx.world.names), rng.choice(w.THINGS)
    op = rng.choice(("+", "-"))
    bound = max(3, ctx.difficulty.max_operand // 2)
    a, b = rng.randint(1, bound), rng.randint(1, bound)
    if op == "-":
        a, b = max(a, b), min(a, b)
    value = a + b if op == "+" else a - b
    story = rng.choice(_STORIES[op]).format(name=name, a=a, b=b, things=things)
    return Draft({"story": story, "name": name, "things": things}, str(value),
                 f"math:word:{name}:{things}:{a}{op}{b}", 1 if op == "+" else 2,
                 _strs(w.near_values(value, a, a + b)))


def _trace(rng: random.Random, ctx: Context) -> Draft:
    steps = rng.randint(1, ctx.difficulty.program_steps)
    s = w.make_trace(rng, steps, ctx.difficulty.code_max_const)
    return Draft({"program": s.text}, str(s.value), f"code:trace:{s.text}", steps, _strs(s.near))


def _call(rng: random.Random, ctx: Context) -> Draft | None:
    ops = rng.randint(1, min(2, ctx.difficulty.program_steps))
    definition, call, s = w.make_call(rng, ops, ctx.difficulty.code_max_const)
    if s.value < 0:  # negative answers would add a sign the tiny model rarely sees
        return None
    return Draft({"definition": definition, "call": call}, str(s.value),
                 f"code:call:{definition}:{call}", ops, _strs(s.near))


def _loop(rng: random.Random, ctx: Context) -> Draft:
    repeats = rng.randint(2, ctx.difficulty.program_steps + 1)
    s = w.make_loop(rng, repeats, ctx.difficulty.code_max_const)
    return Draft({"program": s.text}, str(s.value), f"code:loop:{s.text}", repeats - 1,
                 _strs(s.near))


def _chain(rng: random.Random, ctx: Context) -> Draft:
    length = rng.randint(3, ctx.difficulty.chain_length)
    relation, order, statements = w.make_chain(rng, ctx.world.names, length)
    most = rng.random() < 0.5
    facts = " ".join(statements)
    sup = relation[2] if most else relation[3]
    answer = order[0] if most else order[-1]
    return Draft({"facts": facts, "sup": sup}, answer, f"logic:chain:{facts}:{sup}",
                 length - 2, tuple(order))


def _compare(rng: random.Random, ctx: Context) -> Draft:
    length = rng.randint(3, ctx.difficulty.chain_length)
    relation, order, statements = w.make_chain(rng, ctx.world.names, length)
    x, y = rng.sample(order, 2)
    comparative = rng.random() < 0.5
    rel = relation[0] if comparative else relation[1]
    before = order.index(x) < order.index(y)
    answer = "yes" if before == comparative else "no"
    facts = " ".join(statements)
    return Draft({"facts": facts, "x": x, "y": y, "rel": rel}, answer,
                 f"logic:compare:{facts}:{x}:{rel}:{y}", length - 2, ("yes", "no"))


def _boolean(rng: random.Random, ctx: Context) -> Draft:
    ops = rng.randint(1, ctx.difficulty.bool_ops)
    expr, value = w.make_bool(rng, ops)
    return Draft({"expr": expr}, "true" if value else "false", f"logic:boolean:{expr}", ops,
                 ("true", "false"))


def _fact(attribute: str) -> Callable[[random.Random, Context], Draft]:
    """The builder of questions about ``attribute``; level is the entity's fame tier."""
    def build(rng: random.Random, ctx: Context) -> Draft:
        entity = rng.choice(ctx.world.entities)
        value = entity.get(attribute)
        values = ctx.world.values(attribute)
        # Three distinct wrong values (never the answer), so every question has distractors.
        others = tuple(rng.sample([v for v in values if v != value], 3))
        return Draft({"name": entity.name}, value, f"knowledge:{attribute}:{entity.name}",
                     entity.fame, others)
    return build


def _word_level(word: str) -> int:
    return 1 if len(word) <= 4 else 2 if len(word) <= 6 else 3


def _upper(rng: random.Random, ctx: Context) -> Draft:
    word = rng.choice(w.WORDS)
    return Draft({"word": word}, word.upper(), f"format:upper:{word}", _word_level(word),
                 (word, word.capitalize(), word.upper() + word.upper()[-1]))


def _reverse(rng: random.Random, ctx: Context) -> Draft:
    words = rng.sample(w.WORDS, rng.randint(2, ctx.difficulty.list_length))
    text = " ".join(words)
    return Draft({"words": text}, " ".join(reversed(words)), f"format:reverse:{text}",
                 len(words) - 1, (text, " ".join(words[1:] + words[:1])))


def _repeat(rng: random.Random, ctx: Context) -> Draft:
    word, n = rng.choice(w.WORDS), rng.randint(2, ctx.difficulty.max_repeat)
    return Draft({"word": word, "n": str(n)}, " ".join([word] * n), f"format:repeat:{word}*{n}",
                 n - 1, (" ".join([word] * (n - 1)), " ".join([word] * (n + 1))))


def _join(rng: random.Random, ctx: Context) -> Draft:
    words = rng.sample(w.WORDS, rng.randint(2, ctx.difficulty.list_length))
    text = " ".join(words)
    return Draft({"words": text}, ", ".join(words), f"format:join:{text}", len(words) - 1,
                 (text, ",".join(words), ", ".join(reversed(words))))


def _knowledge_subtasks() -> tuple[Subtask, ...]:
    phrasings = {
        "city": ("Where does {name} live?", "In which city does {name} live?",
                 "What is the home city of {name}?", "Name the city that {name} lives in.",
                 "{name} lives in which city?"),
        "colour": ("What colour does {name} like?", "What is the favourite colour of {name}?",
                   "Which colour is {name}'s favourite?", "Name the colour {name} likes best.",
                   "{name} likes which colour?"),
        "food": ("What food does {name} like?", "What is the favourite food of {name}?",
                 "Which food does {name} enjoy most?", "Name the food {name} likes best.",
                 "{name} likes to eat what?"),
        "job": ("What does {name} do for a living?", "What is the job of {name}?",
                "What is {name}'s profession?", "Name the work that {name} does.",
                "{name} works as what?"),
        "age": ("How old is {name}?", "What is the age of {name}?",
                "How many years old is {name}?", "Give the age of {name}.",
                "{name} is how old?"),
        "species": ("What kind of creature is {name}?", "What species is {name}?",
                    "Which kind of being is {name}?", "Name the species of {name}.",
                    "{name} is what kind of creature?"),
    }
    return tuple(Subtask(a, phrasings[a], _fact(a)) for a in ATTRIBUTES)


CAPABILITIES: dict[str, Capability] = {
    "code": Capability("code", "exact", "trace tiny programs and evaluate function calls", (
        Subtask("trace", ("What does this program print?\n{program}",
                          "Trace this program and give the printed value: {program}",
                          "Run the code below in your head. What is the output?\n{program}",
                          "{program}\nWhat is printed?"), _trace),
        Subtask("call", ("{definition}\nWhat does {call} return?",
                         "Given {definition} , what is {call}?",
                         "Evaluate {call} where {definition}",
                         "What is the value of {call}?\n{definition}"), _call),
        Subtask("loop", ("What does this program print?\n{program}",
                         "Trace this loop and give the printed value: {program}",
                         "{program}\nWhat is the output?"), _loop),
    )),
    "math": Capability("math", "number", "arithmetic on small numbers and word problems", (
        Subtask("add", ("What is {a} + {b}?", "Compute {a} plus {b}.", "Add {a} and {b}.",
                        "{a} + {b} = ?", "What is the sum of {a} and {b}?"), _add),
        Subtask("sub", ("What is {a} - {b}?", "Compute {a} minus {b}.",
                        "Subtract {b} from {a}.", "{a} - {b} = ?"), _sub),
        Subtask("multi_step", ("What is {expr}?", "Compute {expr}.", "Work out {expr}.",
                               "{expr} = ?"), _multi_step),
        Subtask("word", ("{story} How many {things} does {name} have now?",
                         "{story} How many {things} are there now?",
                         "{story} Give the number of {things} that {name} has now."),
                _word_problem),
    )),
    "logic": Capability("logic", "exact_ci", "comparison chains and boolean expressions", (
        Subtask("chain", ("{facts} Who is the {sup}?", "{facts} Which of them is the {sup}?",
                          "Read the facts and answer. {facts} Who is the {sup}?"),
                _chain),
        Subtask("compare", ("{facts} Is {x} {rel} than {y}?",
                            "{facts} Answer yes or no: is {x} {rel} than {y}?",
                            "Based on these facts: {facts} Is it true that {x} is {rel} than {y}?"),
                _compare),
        Subtask("boolean", ("What is the value of {expr}?", "Evaluate the expression: {expr}",
                            "Is {expr} true or false?", "{expr} evaluates to what?"),
                _boolean),
    )),
    "knowledge": Capability("knowledge", "exact_ci",
                            "facts about the world's entities, learnt in pretraining",
                            _knowledge_subtasks()),
    "format": Capability("format", "exact", "follow formatting instructions exactly", (
        Subtask("upper", ("Write the word {word} in capital letters.",
                          "Convert {word} to uppercase.", "Give the word {word} in all caps."),
                _upper),
        Subtask("reverse", ("Reverse the order of these words: {words}",
                            "Write these words with the last one first: {words}",
                            "Put these words in reverse order: {words}"), _reverse),
        Subtask("repeat", ("Repeat the word {word} {n} times, separated by spaces.",
                           "Write {word} {n} times.",
                           "Say {word} {n} times with a space between each."), _repeat),
        Subtask("join", ("Join these words with commas: {words}",
                         "Separate these words with a comma and a space: {words}",
                         "List these words joined by commas: {words}"), _join),
    )),
}
