"""The lab's instruction data: an imbalanced, defective pool and clean validation and test sets.

``build_lab_data(config, seed)`` is a pure function of its arguments (every random draw comes from
a ``random.Random`` seeded by a string naming the seed and the stage), and ``write_lab_data``
writes it as:

    corpus.txt                  pretraining documents, separated by one blank line
    pool.jsonl                  the instruction pool, ids "pool-000000" ...
    validation/<capability>.jsonl   exactly validation_per_capability each, clean
    test/<capability>.jsonl         test_per_capability each, clean, held out

Test questions are drawn first, then validation (excluding test content), then the pool
(excluding both), all by content key: the pool never asks a held-out question in any phrasing,
and never asks about a held-out (entity, attribute) fact. The test sets do not depend on the pool
size. Pool records carry their defect ("wrong_answer", "off_topic", "near_duplicate" or null) and
the correct answer ("reference"), so an analysis can see what a selection kept.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instruct_select.artifacts import atomic_write_text
from instruct_select.config import help_field
from instruct_select.data.example import Example
from instruct_select.errors import ConfigError
from instruct_select.lab.capabilities import CAPABILITIES, Context, Difficulty, Item
from instruct_select.lab.corpus import build_corpus, corpus_text
from instruct_select.lab.world import CHATTER, WORDS, World, build_world


def _default_weights() -> dict[str, float]:
    return {"knowledge": 0.38, "math": 0.25, "code": 0.17, "logic": 0.12, "format": 0.08}


# Wrappers that make some pool prompts longer and chattier, as in real instruction pools.
_PREFIXES = ("Hi! I have a quick question for you. ", "I'm practising for a quiz and would "
             "love some help. ", "Here is a small exercise. ", "My friend asked me this and I "
             "was not sure. ", "Could you help me with the following? ")
_SUFFIXES = (" Please answer with just the answer.", " Keep the answer short.",
             " Thanks a lot!", " I would be grateful for a quick reply.")
_SYSTEMS = ("You are a helpful assistant.", "You are a concise assistant. Answer briefly.",
            "Answer the user's question accurately.")
# Small surface edits for near duplicates; they leave the question itself (names too) intact.
_EDITS = (lambda p: "Quick question: " + p, lambda p: "Please answer: " + p,
          lambda p: p + " Thanks.")
DEFECTS = ("wrong_answer", "off_topic", "near_duplicate")


@dataclass
class LabDataConfig:
    """What the lab's data looks like: sizes, imbalance, defects and difficulty."""

    pool_size: int = help_field("instruction pool size", default=4000)
    capability_weights: dict[str, float] = help_field(
        "share of the pool per capability (normalised; missing capabilities get none)",
        default_factory=_default_weights)
    wrong_answer_share: float = help_field("share of pool examples with a wrong answer", default=0.15)
    off_topic_share: float = help_field("share of off-topic chatter under a task label", default=0.05)
    near_duplicate_share: float = help_field("share that rephrase another pool example", default=0.05)
    verbose_share: float = help_field("share of prompts wrapped in chatty preambles", default=0.10)
    two_turn_share: float = help_field("share of two-turn conversations", default=0.04)
    system_share: float = help_field("share with a system message", default=0.05)
    validation_per_capability: int = help_field("validation examples per capability", default=16)
    test_per_capability: int = help_field("test examples per capability", default=100)
    num_entities: int = help_field("entities in the world (6 facts each)", default=40)
    num_cities: int = help_field("cities the entities live in", default=8)
    corpus_chars: int = help_field("approximate pretraining corpus size in characters",
                              default=800_000)
    difficulty: Difficulty = help_field("question difficulty knobs", default_factory=Difficulty)

    def __post_init__(self) -> None:
        if isinstance(self.difficulty, dict):
            self.difficulty = Difficulty(**self.difficulty)
        unknown = sorted(set(self.capability_weights) - set(CAPABILITIES))
        if unknown:
            raise ConfigError(f"capability_weights names unknown capabilities {unknown}; "
                              f"known: {list(CAPABILITIES)}")
        if any(v < 0 for v in self.capability_weights.values()) or \
                sum(self.capability_weights.values()) <= 0:
            raise ConfigError("capability_weights must be >= 0 with a positive sum, got "
                              f"{self.capability_weights}")
        for name in ("pool_size", "validation_per_capability", "test_per_capability",
                     "corpus_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        shares = ("wrong_answer_share", "off_topic_share", "near_duplicate_share",
                  "verbose_share", "two_turn_share", "system_share")
        for name in shares:
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if sum(getattr(self, n) for n in shares[:3]) >= 0.9:
            raise ConfigError("wrong_answer_share + off_topic_share + near_duplicate_share must "
                              "stay below 0.9: the pool needs clean examples to duplicate")

    def pool_counts(self) -> dict[str, int]:
        """Examples per capability: largest-remainder rounding, summing to pool_size."""
        total = sum(self.capability_weights.values())
        exact = {c: self.pool_size * self.capability_weights.get(c, 0.0) / total
                 for c in CAPABILITIES}
        counts = {c: int(v) for c, v in exact.items()}
        by_remainder = sorted(CAPABILITIES, key=lambda c: (-(exact[c] - counts[c]), c))
        for c in by_remainder[: self.pool_size - sum(counts.values())]:
            counts[c] += 1
        return counts


@dataclass(frozen=True)
class LabData:
    """Everything ``build_lab_data`` makes, in memory."""

    world: World
    corpus: list[str]
    pool: list[Example]
    validation: dict[str, list[Example]]
    test: dict[str, list[Example]]


def _eval_example(prefix: str, capability: str, index: int, item: Item) -> Example:
    record = {"id": f"{prefix}-{capability}-{index:04d}", "task": capability,
              "subtask": item.subtask,
              "messages": [{"role": "user", "content": item.prompt},
                           {"role": "assistant", "content": item.answer}],
              "checker": CAPABILITIES[capability].checker, "answer": item.answer,
              "keys": [item.key], "level": item.level}
    return Example(record["id"], capability, record["messages"], item.subtask, record)


def _held_out(ctx: Context, config: LabDataConfig, seed: int
              ) -> tuple[dict[str, list[Item]], dict[str, list[Item]]]:
    """Test first (so it never depends on the pool), then validation disjoint from it."""
    test, validation = {}, {}
    for name, cap in CAPABILITIES.items():
        test[name] = cap.generate(random.Random(f"{seed}:test:{name}"),
                                  config.test_per_capability, ctx)
        taken = {i.key for i in test[name]}
        validation[name] = cap.generate(random.Random(f"{seed}:validation:{name}"),
                                        config.validation_per_capability, ctx, exclude=taken)
    return test, validation


def _messages(prompt: str, answer: str, style: dict[str, Any]) -> list[dict[str, str]]:
    messages = []
    if style.get("system"):
        messages.append({"role": "system", "content": style["system"]})
    if style.get("first"):
        first_q, first_a = style["first"]
        messages += [{"role": "user", "content": first_q},
                     {"role": "assistant", "content": first_a}]
    text = style.get("prefix", "") + prompt + style.get("suffix", "")
    return messages + [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]


def _style(rng: random.Random, config: LabDataConfig, first: Item | None) -> dict[str, Any]:
    style: dict[str, Any] = {}
    if rng.random() < config.system_share:
        style["system"] = rng.choice(_SYSTEMS)
    if rng.random() < config.verbose_share:
        style["prefix"] = rng.choice(_PREFIXES)
        if rng.random() < 0.5:
            style["suffix"] = rng.choice(_SUFFIXES)
    if first is not None:
        style["first"] = (first.prompt, first.answer)
    return style


def _tags(style: dict[str, Any]) -> list[str]:
    return [t for t, k in (("system", "system"), ("two_turn", "first"), ("verbose", "prefix"))
            if k in style]


def _record(name: str, subtask: str, messages: list, keys: list[str], level: int | None,
            defect: str | None, reference: str | None, style: list[str]) -> dict[str, Any]:
    return {"id": None, "task": name, "subtask": subtask, "messages": messages,
            "checker": CAPABILITIES[name].checker, "keys": keys, "level": level,
            "defect": defect, "reference": reference, "style": style, "duplicate_of": None}


def _off_topic(rng: random.Random, name: str) -> dict[str, Any]:
    """Chatter under a task label (and a plausible subtask label): nothing to learn there."""
    user, reply = rng.choice(CHATTER)
    word = rng.choice(WORDS)
    messages = [{"role": "user", "content": user.format(word=word)},
                {"role": "assistant", "content": reply.format(word=word)}]
    return _record(name, rng.choice(CAPABILITIES[name].subtask_names), messages, [], None,
                   "off_topic", None, [])


def _capability_pool(name: str, n: int, ctx: Context, config: LabDataConfig,
                     exclude: set[str], seed: int) -> list[tuple[dict[str, Any], int | None]]:
    """One capability's pool records, each with the local index of the one it duplicates."""
    cap, rng = CAPABILITIES[name], random.Random(f"{seed}:pool:{name}")
    n_dup = round(config.near_duplicate_share * n)
    n_base = n - n_dup
    n_wrong = round(config.wrong_answer_share * n)
    n_off = min(round(config.off_topic_share * n), n_base - n_wrong)
    n_two = round(config.two_turn_share * n_base)
    items = cap.generate(rng, n_base + n_two, ctx, exclude=exclude, unique=False)
    base, firsts = items[:n_base], items[n_base:]
    chosen = rng.sample(range(n_base), n_wrong + n_off)
    wrong, off = set(chosen[:n_wrong]), set(chosen[n_wrong:])
    on_topic = [i for i in range(n_base) if i not in off]
    two_turn = dict(zip(rng.sample(on_topic, min(n_two, len(on_topic))), firsts))
    out: list[tuple[dict[str, Any], int | None]] = []
    styles: dict[int, dict[str, Any]] = {}
    for i, item in enumerate(base):
        if i in off:
            out.append((_off_topic(rng, name), None))
            continue
        styles[i] = _style(rng, config, two_turn.get(i))
        answer = cap.wrong_answer(item, rng) if i in wrong else item.answer
        keys = [two_turn[i].key, item.key] if i in two_turn else [item.key]
        out.append((_record(name, item.subtask, _messages(item.prompt, answer, styles[i]), keys,
                            item.level, "wrong_answer" if i in wrong else None, item.answer,
                            _tags(styles[i])), None))
    clean = [i for i in on_topic if i not in wrong]
    if n_dup and not clean:
        raise ConfigError(f"capability {name!r}: no clean pool example to near-duplicate")
    for _ in range(n_dup):
        i = rng.choice(clean)
        prompt = cap.rephrase(base[i], rng).prompt
        if rng.random() < 0.5:
            prompt = rng.choice(_EDITS)(prompt)
        messages = _messages(prompt, base[i].answer, styles[i])
        out.append((_record(name, base[i].subtask, messages, list(out[i][0]["keys"]),
                            base[i].level, "near_duplicate", base[i].answer, _tags(styles[i])), i))
    return out


def _pool(ctx: Context, config: LabDataConfig, seed: int, held: set[str]) -> list[Example]:
    entries: list[tuple[dict[str, Any], tuple[str, int] | None]] = []
    offsets: dict[str, int] = {}
    for name, n in config.pool_counts().items():
        offsets[name] = len(entries)
        for record, dup in _capability_pool(name, n, ctx, config, held, seed):
            entries.append((record, None if dup is None else (name, dup)))
    order = list(range(len(entries)))
    random.Random(f"{seed}:pool:order").shuffle(order)
    width = max(6, len(str(len(entries) - 1)))
    ids = [""] * len(entries)
    for position, index in enumerate(order):
        ids[index] = f"pool-{position:0{width}d}"
    examples = []
    for index in order:
        record, dup = entries[index]
        record["id"] = ids[index]
        if dup is not None:
            record["duplicate_of"] = ids[offsets[dup[0]] + dup[1]]
        examples.append(Example(record["id"], record["task"], record["messages"],
                                record["subtask"], record))
    return examples


def build_lab_data(config: LabDataConfig, seed: int) -> LabData:
    """The world, corpus, pool, validation and test sets for ``seed``."""
    world = build_world(seed, config.num_entities, config.num_cities)
    ctx = Context(world, config.difficulty)
    test, validation = _held_out(ctx, config, seed)
    held = {i.key for sets in (test, validation) for items in sets.values() for i in items}
    return LabData(
        world=world,
        corpus=build_corpus(world, config.difficulty, seed, config.corpus_chars),
        pool=_pool(ctx, config, seed, held),
        validation={c: [_eval_example("val", c, i, it) for i, it in enumerate(items)]
                    for c, items in validation.items()},
        test={c: [_eval_example("test", c, i, it) for i, it in enumerate(items)]
              for c, items in test.items()},
    )


def _jsonl(examples: list[Example]) -> str:
    return "".join(json.dumps(e.record, ensure_ascii=False) + "\n" for e in examples)


def summarize(data: LabData) -> dict[str, Any]:
    """Counts per capability, subtask, defect and style; the held-out fact split."""
    pool = [e.record for e in data.pool]
    count = lambda rows, key, value: sum(1 for r in rows if r[key] == value)  # noqa: E731
    by_cap = {c: [r for r in pool if r["task"] == c] for c in CAPABILITIES}
    facts = lambda sets: {k for es in sets.values() for e in es for k in e.record["keys"]  # noqa
                          if k.startswith("knowledge:")}
    pool_facts = {k for r in pool for k in r["keys"] if k.startswith("knowledge:")}
    return {
        "seed": data.world.seed,
        "corpus": {"documents": len(data.corpus), "chars": sum(len(d) for d in data.corpus)},
        "pool": {
            "size": len(pool),
            "by_capability": {c: len(rows) for c, rows in by_cap.items()},
            "by_subtask": {c: {s: count(by_cap[c], "subtask", s)
                               for s in CAPABILITIES[c].subtask_names} for c in CAPABILITIES},
            "defects": {d: count(pool, "defect", d) for d in DEFECTS},
            "defects_by_capability": {c: {d: count(rows, "defect", d) for d in DEFECTS}
                                      for c, rows in by_cap.items()},
            "styles": {t: sum(1 for r in pool if t in r["style"])
                       for t in ("verbose", "two_turn", "system")},
        },
        "validation": {c: len(es) for c, es in data.validation.items()},
        "test": {c: len(es) for c, es in data.test.items()},
        "knowledge_facts": {"world": len(data.world.facts()), "pool": len(pool_facts),
                            "validation": len(facts(data.validation)),
                            "test": len(facts(data.test))},
    }


def write_lab_data(out_dir: Path, config: LabDataConfig, seed: int) -> dict[str, Any]:
    """Write corpus.txt, pool.jsonl, validation/ and test/ under ``out_dir``; return a summary."""
    out_dir = Path(out_dir)
    data = build_lab_data(config, seed)
    files = {"corpus.txt": corpus_text(data.corpus), "pool.jsonl": _jsonl(data.pool)}
    for split, sets in (("validation", data.validation), ("test", data.test)):
        for capability, examples in sets.items():
            files[f"{split}/{capability}.jsonl"] = _jsonl(examples)
    for relative, text in files.items():
        atomic_write_text(out_dir / relative, text)
    return {**summarize(data), "files": list(files)}
