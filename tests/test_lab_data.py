"""The lab's data: determinism, imbalance and defects, held-out sets, answers, tokenizer."""
from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from instruct_select.errors import ConfigError
from instruct_select.lab.capabilities import CAPABILITIES, Context, Difficulty
from instruct_select.lab.corpus import read_corpus
from instruct_select.lab.pool import LabDataConfig, build_lab_data, write_lab_data
from instruct_select.lab.tokenizer import SPECIAL_TOKENS, message_texts, train_lab_tokenizer
from instruct_select.lab.world import build_world

SMALL = dict(pool_size=1200, corpus_chars=150_000, test_per_capability=40)


@pytest.fixture(scope="module")
def data():
    return build_lab_data(LabDataConfig(), seed=0)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    small = build_lab_data(LabDataConfig(**SMALL), seed=0)
    out = tmp_path_factory.mktemp("tok")
    tok = train_lab_tokenizer(small.corpus, message_texts(small.pool), 1024, out)
    return tok, out, small


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _last_user(record: dict) -> str:
    return [m["content"] for m in record["messages"] if m["role"] == "user"][-1]


# --- determinism ---------------------------------------------------------------------------------

def test_same_seed_writes_byte_identical_files(tmp_path):
    a = write_lab_data(tmp_path / "a", LabDataConfig(**SMALL), seed=3)
    b = write_lab_data(tmp_path / "b", LabDataConfig(**SMALL), seed=3)
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b
    assert set(fa) == {"corpus.txt", "pool.jsonl"} | {
        f"{split}/{c}.jsonl" for split in ("validation", "test") for c in CAPABILITIES}
    assert fa == fb
    assert read_corpus(tmp_path / "a" / "corpus.txt") == build_lab_data(
        LabDataConfig(**SMALL), seed=3).corpus


def test_different_seed_gives_different_data(tmp_path):
    write_lab_data(tmp_path / "a", LabDataConfig(**SMALL), seed=3)
    write_lab_data(tmp_path / "b", LabDataConfig(**SMALL), seed=4)
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert all(fa[name] != fb[name] for name in fa)
    assert build_world(3).names != build_world(4).names


def test_test_sets_do_not_depend_on_pool_size():
    small = build_lab_data(LabDataConfig(**{**SMALL, "pool_size": 300}), seed=0)
    large = build_lab_data(LabDataConfig(**SMALL), seed=0)
    for c in CAPABILITIES:
        assert [e.record for e in small.test[c]] == [e.record for e in large.test[c]]
        assert [e.record for e in small.validation[c]] == [e.record for e in large.validation[c]]


# --- the pool ------------------------------------------------------------------------------------

def test_pool_imbalance_matches_weights(data):
    config = LabDataConfig()
    counts = Counter(e.task for e in data.pool)
    assert len(data.pool) == config.pool_size
    for c, w in config.capability_weights.items():
        assert abs(counts[c] - w * config.pool_size) <= 1
    assert counts["knowledge"] > 4 * counts["format"]
    ids = [e.id for e in data.pool]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"pool-\d{6}", i) for i in ids)


def test_pool_defect_shares_and_labels(data):
    config = LabDataConfig()
    by_id = {e.id: e.record for e in data.pool}
    for c in CAPABILITIES:
        rows = [r for r in by_id.values() if r["task"] == c]
        defects = Counter(r["defect"] for r in rows)
        assert abs(defects["wrong_answer"] / len(rows) - config.wrong_answer_share) < 0.01
        assert abs(defects["off_topic"] / len(rows) - config.off_topic_share) < 0.01
        assert abs(defects["near_duplicate"] / len(rows) - config.near_duplicate_share) < 0.01
    for r in by_id.values():
        answer = r["messages"][-1]["content"]
        if r["defect"] == "wrong_answer":
            assert answer != r["reference"]
        elif r["defect"] == "off_topic":
            assert r["keys"] == [] and r["reference"] is None
        else:
            assert answer == r["reference"]
        if r["defect"] == "near_duplicate":
            base = by_id[r["duplicate_of"]]
            assert base["defect"] is None and base["keys"] == r["keys"]
            assert base["task"] == r["task"] and base["subtask"] == r["subtask"]
            assert _last_user(base) != _last_user(r)


def test_pool_has_varied_lengths(data):
    styles = Counter(t for e in data.pool for t in e.record["style"])
    assert styles["verbose"] > 100 and styles["two_turn"] > 50 and styles["system"] > 50
    two_turn = [e for e in data.pool if "two_turn" in e.record["style"]]
    assert all(len([m for m in e.messages if m["role"] == "user"]) == 2 for e in two_turn)
    lengths = sorted(sum(len(m["content"]) for m in e.messages) for e in data.pool)
    median = lengths[len(lengths) // 2]
    assert lengths[-1] > 4 * median and lengths[9 * len(lengths) // 10] > 2 * median


def test_every_capability_has_subtasks_everywhere(data):
    for c, cap in CAPABILITIES.items():
        assert len(cap.subtasks) >= 2
        for examples in (data.pool, data.validation[c], data.test[c]):
            subtasks = {e.subtask for e in examples if e.task == c}
            assert len(subtasks) >= 2 and subtasks <= set(cap.subtask_names)


# --- validation and test -------------------------------------------------------------------------

def test_validation_sizes_equal_and_records_complete(data):
    config = LabDataConfig()
    assert {len(v) for v in data.validation.values()} == {config.validation_per_capability}
    assert {len(t) for t in data.test.values()} == {config.test_per_capability}
    for c in CAPABILITIES:
        for e in data.validation[c] + data.test[c]:
            r = e.record
            assert r["checker"] == CAPABILITIES[c].checker in ("exact", "exact_ci", "number")
            assert e.messages[-1]["role"] == "assistant"
            assert r["answer"] == e.messages[-1]["content"]
            assert r["task"] == c and e.id == r["id"]


def test_held_out_sets_disjoint_from_pool(data):
    pairs = lambda examples: {(_last_user(e.record), e.messages[-1]["content"])  # noqa: E731
                              for e in examples}
    pool_keys = {k for e in data.pool for k in e.record["keys"]}
    val = [e for es in data.validation.values() for e in es]
    test = [e for es in data.test.values() for e in es]
    assert pairs(test).isdisjoint(pairs(data.pool)) and pairs(test).isdisjoint(pairs(val))
    assert pairs(val).isdisjoint(pairs(data.pool))
    test_keys = {k for e in test for k in e.record["keys"]}
    val_keys = {k for e in val for k in e.record["keys"]}
    assert test_keys.isdisjoint(pool_keys) and val_keys.isdisjoint(pool_keys)
    assert test_keys.isdisjoint(val_keys)
    assert len(test_keys) == len(test)  # each test question asks something different


def test_knowledge_test_facts_never_asked_in_pool(data):
    names = data.world.names
    def facts(examples):
        found = set()
        for e in examples:
            if e.task != "knowledge" or e.record.get("defect") == "off_topic":
                continue
            named = [n for n in names if re.search(rf"\b{n}\b", _last_user(e.record))]
            assert len(named) == 1, _last_user(e.record)
            assert e.record["keys"][-1] == f"knowledge:{e.subtask}:{named[0]}"
            found.add((named[0], e.subtask))
        return found
    test_facts = facts(data.test["knowledge"])
    assert len(test_facts) == len(data.test["knowledge"])
    assert test_facts.isdisjoint(facts(data.pool))
    assert test_facts.isdisjoint(facts(data.validation["knowledge"]))


def test_knowledge_answers_come_from_corpus_not_prompt(data):
    sentences = [s for doc in data.corpus for s in re.split(r"(?<=\.)\s", doc)]
    for e in data.test["knowledge"] + data.validation["knowledge"]:
        entity = data.world.entity(e.record["keys"][0].split(":")[2])
        answer = e.record["answer"]
        assert answer == entity.get(e.subtask)
        assert answer.lower() not in e.messages[0]["content"].lower()
        assert any(entity.name in s and re.search(rf"\b{answer}\b", s) for s in sentences)


# --- answers against slow, obvious references ----------------------------------------------------

def _run_program(text: str) -> int:
    code = re.sub(r"repeat (\d+) \{ (.*?) \}", r"for _ in range(\1): \2", text)
    env: dict = {}
    for line in code.split(" ; "):
        if line.startswith("print "):
            return env[line[6:]]
        exec(line, {}, env)  # noqa: S102 - generated arithmetic only
    raise AssertionError(text)


def _order(facts: str) -> list[str]:
    """Names from most to least by repeatedly taking the one nobody beats."""
    beats = set()
    for a, rel, b in re.findall(r"(\w+) is (\w+) than (\w+)\.", facts):
        beats.add((a, b) if rel in ("taller", "faster", "heavier", "stronger") else (b, a))
    people = {p for pair in beats for p in pair}
    order = []
    while people:
        top = [p for p in people if not any((q, p) in beats for q in people)]
        assert len(top) == 1
        order.append(top[0])
        people.remove(top[0])
    return order


def _reference(item) -> str:
    f = dict(item.fields)
    if item.capability == "code":
        if item.subtask == "call":
            env: dict = {}
            exec(f["definition"], {}, env)  # noqa: S102
            return str(eval(f["call"], {}, env))  # noqa: S307
        return str(_run_program(f["program"]))
    if item.subtask in ("add", "sub"):
        a, b = map(int, re.findall(r"\d+", item.prompt))
        if item.subtask == "add":
            return str(a + b)
        return str(b - a if item.prompt.startswith("Subtract") else a - b)
    if item.subtask == "multi_step":
        return str(eval(f["expr"]))  # noqa: S307
    if item.subtask == "word":
        a, b = map(int, re.findall(r"\d+", f["story"]))
        return str(a + b if "more" in f["story"] else a - b)
    if item.subtask == "boolean":
        return str(eval(f["expr"].replace("true", "True").replace("false", "False"))).lower()
    if item.subtask == "chain":
        order = _order(f["facts"])
        sup = f["sup"]
        return order[0] if sup in ("tallest", "fastest", "heaviest", "strongest") else order[-1]
    if item.subtask == "compare":
        order = _order(f["facts"])
        x_first = order.index(f["x"]) < order.index(f["y"])
        more = f["rel"] in ("taller", "faster", "heavier", "stronger")
        return "yes" if x_first == more else "no"
    words = f.get("words", "").split()
    return {"upper": f.get("word", "").upper(), "reverse": " ".join(words[::-1]),
            "repeat": " ".join([f.get("word", "")] * int(f.get("n", 0))),
            "join": ", ".join(words)}[item.subtask]


def test_answers_match_slow_references():
    ctx = Context(build_world(5), Difficulty(program_steps=4, chain_length=5, bool_ops=3))
    for name, cap in CAPABILITIES.items():
        if name == "knowledge":
            continue
        for item in cap.generate(random.Random(name), 300, ctx, unique=False):
            assert item.answer == _reference(item), item
            assert item.answer not in item.distractors


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="unknown capabilities"):
        LabDataConfig(capability_weights={"cooking": 1.0})
    with pytest.raises(ConfigError, match="chain_length"):
        Difficulty(chain_length=2)
    with pytest.raises(ConfigError, match="ran out of distinct questions"):
        build_lab_data(LabDataConfig(**{**SMALL, "test_per_capability": 500}), seed=0)


# --- tokenizer -----------------------------------------------------------------------------------

def test_tokenizer_round_trips_lab_texts_exactly(tokenizer):
    tok, _, small = tokenizer
    odd = ["héllo wörld — 日本語 🙂", "tabs\tand  double  spaces\r\nand CRLF", "  lead",
           "x" * 50, "<|user|> inside text <|end|>", "12345678901234567890"]
    texts = small.corpus[:200] + [tok.apply_chat_template(e.messages, tokenize=False)
                                  for e in small.pool[:300]] + odd
    for text in texts:
        assert tok.decode(tok(text)["input_ids"]) == text


def test_tokenizer_digits_are_single_tokens(tokenizer):
    tok, _, _ = tokenizer
    assert len(tok.get_vocab()) == 1024
    for token in tok.get_vocab():
        text = tok.convert_tokens_to_string([token])
        if any(ch.isdigit() for ch in text) and token not in SPECIAL_TOKENS:
            assert len(text) == 1, token
    assert tok.convert_ids_to_tokens(tok("x = 12345")["input_ids"])[-5:] == list("12345")


def test_tokenizer_special_tokens_and_reload(tokenizer):
    from transformers import AutoTokenizer
    tok, out, _ = tokenizer
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|bos|>", "<|end|>", "<|pad|>")
    ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    for token, i in zip(SPECIAL_TOKENS, ids):
        assert tok(f"a{token}b", add_special_tokens=True)["input_ids"].count(i) == 1
        assert tok(token, add_special_tokens=True)["input_ids"] == [i]
    loaded = AutoTokenizer.from_pretrained(out)
    sample = "Velkar likes teal. 23 + 45 = 68"
    assert loaded(sample)["input_ids"] == tok(sample)["input_ids"]
    assert loaded.chat_template == tok.chat_template and loaded.eos_token == "<|end|>"


def test_chat_template_prefix_property(tokenizer):
    tok, _, small = tokenizer
    multi = [e for e in small.pool if len(e.messages) > 2][:40] + small.pool[:40]
    assert any(e.messages[0]["role"] == "system" for e in multi)
    for e in multi:
        for i, m in enumerate(e.messages):
            if m["role"] != "assistant":
                continue
            prompt = tok.apply_chat_template(e.messages[:i], tokenize=False,
                                             add_generation_prompt=True)
            full = tok.apply_chat_template(e.messages[: i + 1], tokenize=False)
            assert full.startswith(prompt) and full.startswith("<|bos|>")
            assert full[len(prompt):] == " " + m["content"] + "<|end|>\n"
            p_ids, f_ids = tok(prompt)["input_ids"], tok(full)["input_ids"]
            assert f_ids[: len(p_ids)] == p_ids
            assert f_ids[-2] == tok.eos_token_id


def test_tokenizer_training_is_deterministic(tokenizer, tmp_path):
    _, out, small = tokenizer
    train_lab_tokenizer(small.corpus, message_texts(small.pool), 1024, tmp_path)
    assert (tmp_path / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()
    assert _files(tmp_path) == _files(out)
