"""The lab's seeded world: fictional entities and their facts, plus the raw material of the skills.

Everything the corpus states and the capabilities ask about comes from here. ``build_world(seed)``
is a pure function of its arguments: names are drawn from syllables with a seeded generator, so
two seeds give two different worlds and one seed always gives the same one. The word lists are
fixed tuples (never sets), so no iteration order depends on the interpreter's hash seed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from instruct_select.errors import ConfigError

# Attribute name -> the values an entity may take. Ages are numbers, drawn separately.
# The order of this mapping fixes the order of subtasks and facts everywhere; it is a literal.
COLOURS = ("red", "blue", "green", "teal", "amber", "violet", "grey", "pink",
           "gold", "olive", "navy", "white")
FOODS = ("plums", "bread", "cheese", "rice", "soup", "honey", "apples", "beans",
         "fish", "pears", "nuts", "cake")
JOBS = ("baker", "smith", "farmer", "sailor", "miner", "weaver", "healer", "painter",
        "guard", "scribe", "potter", "hunter")
SPECIES = ("human", "elf", "dwarf", "troll", "giant", "sprite", "goblin", "dragon")
ATTRIBUTES = ("city", "colour", "food", "job", "age", "species")
MIN_AGE, MAX_AGE = 18, 89
AGES = tuple(str(a) for a in range(MIN_AGE, MAX_AGE + 1))

# Plain English words for the formatting tasks: short, lower case, one BPE-friendly shape each.
WORDS = (
    "apple", "river", "stone", "cloud", "bread", "chair", "table", "horse", "light", "green",
    "house", "water", "grass", "music", "paper", "glass", "night", "sugar", "tiger", "lemon",
    "cat", "dog", "sun", "moon", "star", "tree", "book", "lamp", "door", "road", "ship", "bird",
    "fish", "rain", "snow", "wind", "fire", "leaf", "rock", "hill", "boat", "cup", "hat", "pen",
    "box", "key", "map", "ring", "bell", "coin", "rose", "salt", "milk", "corn", "wolf", "bear",
    "frog", "duck", "goat", "lion", "owl", "fox", "ant", "bee", "cake", "soup", "rice", "egg",
    "jam", "tea", "clock", "brush", "candle", "garden", "window", "pencil", "basket", "bottle",
    "button", "carpet", "castle", "forest", "island", "ladder", "market", "mirror", "pocket",
    "rabbit", "silver", "spoon", "thread", "wagon", "violin", "anchor", "bridge", "cotton",
    "dragon", "feather", "jacket", "kettle", "letter", "magnet", "needle", "orange", "parrot",
    "planet", "puzzle", "rocket", "saddle", "shadow", "teapot", "tunnel", "valley", "wizard",
)

# Things counted in word problems (plural, singular is never needed).
THINGS = ("apples", "coins", "stones", "books", "shells", "pears", "cards", "eggs", "beads",
          "keys", "cups", "nails")

# Comparison relations for the logic chains: (comparative, inverse, superlative, inverse
# superlative). Ages are world facts, so "older" is left out: a chain must never contradict them.
RELATIONS = (
    ("taller", "shorter", "tallest", "shortest"),
    ("faster", "slower", "fastest", "slowest"),
    ("heavier", "lighter", "heaviest", "lightest"),
    ("stronger", "weaker", "strongest", "weakest"),
)

# Chatter for off-topic pool defects: each a (user, assistant) pair with a slot for a word.
CHATTER = (
    ("Hello there! How is your day going?", "Pretty good, thanks. I just had some {word} tea."),
    ("Do you like the {word}?", "I do. It reminds me of long summer afternoons."),
    ("I am bored. Say something.", "Did you know that a {word} can be a lovely thing to draw?"),
    ("What a week it has been.", "I hear you. Maybe a walk by the {word} would help."),
    ("Tell me a secret.", "I once counted every {word} in the garden and lost count."),
    ("Good morning!", "Good morning to you too! The {word} looks bright today."),
    ("Can you recommend a hobby?", "Collecting pictures of every {word} you see is fun."),
    ("lol that was funny", "Glad you enjoyed it. The {word} joke always works."),
    ("Any plans for the weekend?", "Mostly resting, and perhaps fixing the old {word}."),
    ("I think I lost my {word}.", "Oh no. Have you looked under the bed?"),
)

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "kr", "st", "th", "sh", "gr", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ei", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "k", "m", "th")


@dataclass(frozen=True)
class Entity:
    """One inhabitant of the world and its facts; ``facts`` follows ``ATTRIBUTES`` order.

    fame: 1, 2 or 3. The corpus mentions a fame-1 entity most often and a fame-3 one least, so
    knowledge questions range from well-known to long-tail facts (their difficulty level).
    """

    name: str
    facts: tuple[tuple[str, str], ...]
    fame: int

    def get(self, attribute: str) -> str:
        """The value of ``attribute`` for this entity."""
        for name, value in self.facts:
            if name == attribute:
                return value
        raise KeyError(attribute)


@dataclass(frozen=True)
class World:
    """A seeded world: entities with facts, the cities they live in, and shared word lists."""

    seed: int
    entities: tuple[Entity, ...]
    cities: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entities)

    def values(self, attribute: str) -> tuple[str, ...]:
        """Every value ``attribute`` can take in this world (the distractors of a question)."""
        if attribute == "city":
            return self.cities
        return {"colour": COLOURS, "food": FOODS, "job": JOBS, "age": AGES,
                "species": SPECIES}[attribute]

    def facts(self) -> list[tuple[str, str, str]]:
        """Every (entity name, attribute, value) triple, in a fixed order."""
        return [(e.name, a, v) for e in self.entities for a, v in e.facts]

    def entity(self, name: str) -> Entity:
        for e in self.entities:
            if e.name == name:
                return e
        raise KeyError(name)


def make_name(rng: random.Random, syllables: int) -> str:
    """A pronounceable invented name: onset+vowel syllables, with a closing consonant."""
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def _unique_names(rng: random.Random, count: int, syllables: tuple[int, int],
                  taken: set[str]) -> list[str]:
    """``count`` distinct names, none equal to an English word the lab uses elsewhere."""
    reserved = {w.capitalize() for w in WORDS + COLOURS + FOODS + JOBS + SPECIES + THINGS}
    names: list[str] = []
    for _ in range(count * 200):
        if len(names) == count:
            return names
        name = make_name(rng, rng.randint(*syllables))
        if 3 <= len(name) <= 9 and name not in taken and name not in reserved:
            taken.add(name)
            names.append(name)
    raise ConfigError(f"could not invent {count} distinct names; ask for fewer entities")


def build_world(seed: int, num_entities: int = 40, num_cities: int = 8) -> World:
    """The world for ``seed``: ``num_entities`` entities, each with every attribute set."""
    if not 4 <= num_entities <= 1000:
        raise ConfigError(f"num_entities={num_entities} must be between 4 and 1000")
    if not 2 <= num_cities <= 100:
        raise ConfigError(f"num_cities={num_cities} must be between 2 and 100")
    rng = random.Random(f"{seed}:world")
    taken: set[str] = set()
    cities = tuple(_unique_names(rng, num_cities, (2, 2), taken))
    names = _unique_names(rng, num_entities, (2, 3), taken)
    pools = {"city": cities, "colour": COLOURS, "food": FOODS, "job": JOBS, "species": SPECIES}
    entities = []
    for index, name in enumerate(names):
        facts = []
        for attribute in ATTRIBUTES:
            if attribute == "age":
                facts.append((attribute, str(rng.randint(MIN_AGE, MAX_AGE))))
            else:
                facts.append((attribute, rng.choice(pools[attribute])))
        entities.append(Entity(name, tuple(facts), fame=1 + index % 3))
    return World(seed=seed, entities=tuple(entities), cities=cities)


# --- Raw material of the skills: each generator returns content and its true value. -----------
# Shared by the corpus (stated as plain prose) and the capabilities (asked as questions).

_VARS = ("x", "y", "z")


@dataclass(frozen=True)
class Snippet:
    """A piece of generated content, its value, and plausible wrong values."""

    text: str
    value: int
    near: tuple[int, ...]


def near_values(value: int, *others: int) -> tuple[int, ...]:
    """Off-by-one/ten neighbours plus any related values, never negative, never the value."""
    out: list[int] = []
    for v in (value + 1, value - 1, value + 10, value - 10, *others):
        if v >= 0 and v != value and v not in out:
            out.append(v)
    return tuple(out)


def make_trace(rng: random.Random, steps: int, max_const: int) -> Snippet:
    """A straight-line program of ``steps`` assignments over x, y, z, then a print."""
    env: dict[str, int] = {}
    first = rng.choice(_VARS)
    env[first] = rng.randint(0, max_const)
    lines = [f"{first} = {env[first]}"]
    for _ in range(steps - 1):
        target, src = rng.choice(_VARS), rng.choice(sorted(env))
        other = rng.choice(sorted(env)) if rng.random() < 0.4 else None
        operand = env[other] if other else rng.randint(1, max_const)
        op = "-" if env[src] >= operand and rng.random() < 0.4 else "+"
        env[target] = env[src] + operand if op == "+" else env[src] - operand
        lines.append(f"{target} = {src} {op} {other or operand}")
    shown = rng.choice(sorted(env))
    lines.append(f"print {shown}")
    return Snippet(" ; ".join(lines), env[shown], near_values(env[shown], *env.values()))


def evaluate(tokens: list[int | str]) -> int:
    """Value of [n, op, n, op, ...] with + - * and the usual precedence (* binds tighter)."""
    total, sign, term = 0, 1, int(tokens[0])
    for op, n in zip(tokens[1::2], tokens[2::2]):
        if op == "*":
            term *= int(n)
        else:
            total, sign, term = total + sign * term, (1 if op == "+" else -1), int(n)
    return total + sign * term


def make_call(rng: random.Random, ops: int, max_const: int) -> tuple[str, str, Snippet]:
    """A one-line function of one or two parameters and a call; (definition, call, value)."""
    params = ("a",) if rng.random() < 0.5 else ("a", "b")
    args = {p: rng.randint(0, max_const) for p in params}
    body: list[str] = [rng.choice(params)]
    for _ in range(ops):
        op = rng.choice(("+", "-", "*"))
        if rng.random() < 0.4:
            operand = rng.choice(params)
        else:
            operand = str(rng.randint(2, 3) if op == "*" else rng.randint(1, max_const))
        body += [op, operand]
    value = evaluate([args[t] if t in args else t for t in body])
    name = rng.choice(("f", "g", "h"))
    definition = f"def {name}({', '.join(params)}): return {' '.join(body)}"
    call = f"{name}({', '.join(str(args[p]) for p in params)})"
    return definition, call, Snippet(call, value, near_values(value, *args.values()))


def make_loop(rng: random.Random, repeats: int, max_const: int) -> Snippet:
    """``v = c ; repeat r { v = v + k } ; print v``, sometimes with a doubling body."""
    var, start = rng.choice(_VARS), rng.randint(0, max_const)
    if repeats <= 3 and start <= 10 and rng.random() < 0.3:
        body, value = f"{var} = {var} * 2", start * 2 ** repeats
    else:
        step = rng.randint(1, max_const)
        body, value = f"{var} = {var} + {step}", start + step * repeats
    text = f"{var} = {start} ; repeat {repeats} {{ {body} }} ; print {var}"
    return Snippet(text, value, near_values(value, start))


def make_sum(rng: random.Random, terms: int, bound: int) -> Snippet:
    """``a + b - c ...`` over ``terms`` operands in 0..bound, never going below zero."""
    tokens: list[int | str] = [rng.randint(0, bound)]
    total = int(tokens[0])
    for _ in range(terms - 1):
        n = rng.randint(0, bound)
        op = "-" if n <= total and rng.random() < 0.5 else "+"
        total = total + n if op == "+" else total - n
        tokens += [op, n]
    return Snippet(" ".join(str(t) for t in tokens), total, near_values(total))


def make_chain(rng: random.Random, names: tuple[str, ...], length: int
               ) -> tuple[tuple[str, str, str, str], list[str], list[str]]:
    """A comparison chain: (relation, names from most to least, shuffled statements)."""
    relation = rng.choice(RELATIONS)
    order = rng.sample(names, length)
    statements = []
    for hi, lo in zip(order, order[1:]):
        if rng.random() < 0.5:
            statements.append(f"{hi} is {relation[0]} than {lo}.")
        else:
            statements.append(f"{lo} is {relation[1]} than {hi}.")
    rng.shuffle(statements)
    return relation, order, statements


def make_bool(rng: random.Random, ops: int) -> tuple[str, bool]:
    """A boolean expression with ``ops`` and/or operators; nested parts are parenthesised."""
    if ops == 0:
        value = rng.random() < 0.5
        negate = rng.random() < 0.3
        text = ("not " if negate else "") + ("true" if value else "false")
        return text, value != negate
    left_ops = rng.randint(0, ops - 1)
    (lt, lv), (rt, rv) = make_bool(rng, left_ops), make_bool(rng, ops - 1 - left_ops)
    lt, rt = (f"({t})" if n else t for t, n in ((lt, left_ops), (rt, ops - 1 - left_ops)))
    op = rng.choice(("and", "or"))
    return f"{lt} {op} {rt}", (lv and rv) if op == "and" else (lv or rv)
