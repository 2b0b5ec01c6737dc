"""Loading every supported format and container, on real public data and on small files built
here; ids, tasks and fingerprints; writing a selection back in the input's own shape."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from instruct_select.data import Example, load_examples, write_examples_jsonl, write_records
from instruct_select.data.loading import SourceOptions
from instruct_select.data.example import content_id

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data not found at {REAL}")

CONTAINERS = ("jsonl", "json", "parquet", "hf")

# Each format: records as a user would have them, and the messages they must become.
RECORDS = {
    "messages": [
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Capital of France?"},
                      {"role": "assistant", "content": "Paris."}]},
        {"messages": [{"role": "user", "content": "Ünïcödé → ok?"},
                      {"role": "assistant", "content": "Yes ✓"}]},
    ],
    "alpaca": [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hello.", "input": "", "output": "Hello!"},
    ],
    "sharegpt": [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
                           {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "Bye!"}]},
        {"conversations": [{"from": "system", "value": "Be kind."},
                           {"from": "user", "value": "Thanks"},
                           {"from": "chatgpt", "value": "You're welcome"}]},
    ],
    "prompt_completion": [
        {"prompt": "2+2=", "completion": "4"},
        {"prompt": "The sky is", "completion": " blue"},
    ],
}
EXPECTED = {
    "messages": [RECORDS["messages"][0]["messages"], RECORDS["messages"][1]["messages"]],
    "alpaca": [[{"role": "user", "content": "Add the numbers.\n\n2 and 3"},
                {"role": "assistant", "content": "5"}],
               [{"role": "user", "content": "Say hello."},
                {"role": "assistant", "content": "Hello!"}]],
    "sharegpt": [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                  {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye!"}],
                 [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Thanks"},
                  {"role": "assistant", "content": "You're welcome"}]],
    "prompt_completion": [[{"role": "user", "content": "2+2="},
                           {"role": "assistant", "content": "4"}],
                          [{"role": "user", "content": "The sky is"},
                           {"role": "assistant", "content": " blue"}]],
}


def save(records: list[dict], kind: str, path: Path) -> Path:
    """Store records in a container the way a user's tools would."""
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                        encoding="utf-8")
    elif kind == "json":
        path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        import datasets
        datasets.Dataset.from_list(records).save_to_disk(str(path))
    return path


def built(tmp_path: Path, fmt: str, kind: str, records: list[dict] | None = None) -> Path:
    suffix = {"jsonl": ".jsonl", "json": ".json", "parquet": ".parquet", "hf": ""}[kind]
    return save(records or RECORDS[fmt], kind, tmp_path / f"{fmt}_{kind}{suffix}")


# --- real data --------------------------------------------------------------------------------

@needs_real
def test_every_bbh_file_loads_with_its_count_and_its_stem_as_task():
    files = sorted((REAL / "bbh").glob("*.json"))
    assert len(files) == 27
    counts = {}
    for path in files:
        expected = json.loads(path.read_text(encoding="utf-8"))["examples"]
        loaded = load_examples(path, source=SourceOptions(task=path.stem))
        assert (loaded.format, loaded.container) == ("input_target", "json")
        assert len(loaded.examples) == len(expected)
        assert {e.task for e in loaded.examples} == {path.stem}
        first = loaded.examples[0].messages
        assert first == [{"role": "user", "content": expected[0]["input"]},
                         {"role": "assistant", "content": expected[0]["target"]}]
        counts[path.stem] = len(loaded.examples)
    assert (counts["causal_judgement"], counts["penguins_in_a_table"], counts["snarks"]) == (187, 146, 178)
    assert sum(counts.values()) == 6511


@needs_real
def test_bbh_folder_takes_file_stems_as_tasks_and_counts_real_duplicates():
    loaded = load_examples(REAL / "bbh")
    assert loaded.container == "dir" and len(loaded.examples) == 6511
    assert len({e.task for e in loaded.examples}) == 27
    # sports_understanding repeats two inputs verbatim: kept, suffixed, counted.
    assert loaded.duplicates == 2
    repeats = [e for e in loaded.examples if e.id.endswith("-2")]
    assert {e.task for e in repeats} == {"sports_understanding"}
    for e in repeats:
        assert loaded.by_id()[e.id[:-2]].messages == e.messages
    assert "exact duplicates (kept, ids suffixed -2, -3, ...): 2" in loaded.summary()
    single = load_examples(REAL / "bbh" / "snarks.json", source=SourceOptions(task="snarks"))
    assert [e.id for e in single.examples] == [e.id for e in loaded.examples if e.task == "snarks"]


@needs_real
def test_gsm8k_loads_all_1319_problems_as_question_answer():
    loaded = load_examples(REAL / "gsm8k_test.jsonl")
    assert (loaded.format, loaded.container, len(loaded.examples)) == ("question_answer", "jsonl", 1319)
    first = loaded.examples[0]
    assert first.messages[0]["content"].startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert first.messages[1]["content"].endswith("#### 18")
    assert first.task is None and loaded.locations[first.id].line == 1
    assert all(e.messages[1]["content"].split("####")[-1].strip() for e in loaded.examples)


@needs_real
def test_sharegpt_sample_maps_multi_turn_roles():
    loaded = load_examples(REAL / "sharegpt_dummy_conversation.json")
    assert (loaded.format, len(loaded.examples)) == ("sharegpt", 500)
    conversation = loaded.by_id()["identity_2"].messages
    assert [m["role"] for m in conversation] == ["user", "assistant"] * 3
    assert conversation[2] == {"role": "user", "content": "Who are you?"}
    assert conversation[5]["content"].startswith("Goodbye! If you have any more questions")
    assert load_examples(REAL / "sharegpt_dummy_conversation.json", format="sharegpt").fingerprint \
        == loaded.fingerprint


# --- round trips through every container ------------------------------------------------------

@pytest.mark.parametrize("kind", CONTAINERS)
@pytest.mark.parametrize("fmt", list(RECORDS))
def test_format_round_trips_through_container(tmp_path, fmt, kind):
    path = built(tmp_path, fmt, kind)
    auto = load_examples(path)
    named = load_examples(path, format=fmt)
    assert (auto.format, auto.container) == (fmt, kind)
    assert [e.messages for e in auto.examples] == EXPECTED[fmt]
    assert [e.id for e in auto.examples] == [content_id(m) for m in EXPECTED[fmt]]
    assert [e.id for e in named.examples] == [e.id for e in auto.examples]
    (tmp_path / "ref").mkdir()
    reference = load_examples(built(tmp_path / "ref", fmt, "jsonl"))
    assert auto.fingerprint == reference.fingerprint


@pytest.mark.parametrize("kind", CONTAINERS)
def test_write_records_gives_back_the_same_records(tmp_path, kind):
    records = [{"id": f"r{i}", "instruction": f"Task {i}", "input": "", "output": f"Out {i}",
                "task": "math" if i % 2 else "code"} for i in range(6)]
    loaded = load_examples(built(tmp_path, "alpaca", kind, records))
    ids = ["r4", "r0", "r3"]
    out = tmp_path / f"out_{kind}{'' if kind == 'hf' else '.' + kind}"
    write_records(loaded, ids, out, extra_columns={"score": {"r4": 0.5, "r0": 0.25, "r3": 1.0}})
    back = load_examples(out)
    assert [e.id for e in back.examples] == ids
    assert [e.record for e in back.examples] == [{**records[4], "score": 0.5},
                                                 {**records[0], "score": 0.25},
                                                 {**records[3], "score": 1.0}]
    assert [e.task for e in back.examples] == ["code", "code", "math"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    write_records(loaded, ["r1"], out)  # overwrite in place
    assert [e.id for e in load_examples(out).examples] == ["r1"]


@needs_real
def test_write_records_keeps_the_json_objects_other_keys(tmp_path):
    loaded = load_examples(REAL / "bbh" / "navigate.json", source=SourceOptions(task="navigate"))
    chosen = [loaded.examples[5].id, loaded.examples[1].id]
    out = write_records(loaded, chosen, tmp_path / "navigate.json")
    written = json.loads(out.read_text(encoding="utf-8"))
    original = json.loads((REAL / "bbh" / "navigate.json").read_text(encoding="utf-8"))
    assert written["canary"] == original["canary"]
    assert written["examples"] == [original["examples"][5], original["examples"][1]]


def test_folder_of_files_reads_sorted_and_writes_back_per_file(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    save(RECORDS["alpaca"][1:], "jsonl", folder / "b_task.jsonl")
    save(RECORDS["alpaca"][:1], "jsonl", folder / "a_task.jsonl")
    (folder / "LICENSE").write_text("not data")
    loaded = load_examples(folder)
    assert [e.task for e in loaded.examples] == ["a_task", "b_task"]
    assert [e.messages for e in loaded.examples] == EXPECTED["alpaca"]
    out = write_records(loaded, [loaded.examples[1].id], tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["b_task.jsonl"]
    assert load_examples(folder, source=SourceOptions(task="given")).examples[0].task == "given"


def test_ids_tasks_and_subtasks_from_fields(tmp_path):
    records = [{"uid": 7, "domain": "math", "subtask": "add", "question": "1+1?", "answer": "2"},
               {"uid": 8, "category": "qa", "question": "Sky?", "answer": "Blue"},
               {"uid": 9, "question": "Up?", "answer": "Down", "kind": "k"}]
    path = save(records, "jsonl", tmp_path / "d.jsonl")
    loaded = load_examples(path, id_field="uid", source=SourceOptions(task="fallback"))
    assert [(e.id, e.task, e.subtask) for e in loaded.examples] == [
        ("7", "math", "add"), ("8", "qa", None), ("9", "fallback", None)]
    assert loaded.examples[0].record == records[0]
    assert [e.task for e in load_examples(path, id_field="uid", source=SourceOptions(task_field="uid")).examples] == \
        ["7", "8", "9"]


def test_identical_content_without_ids_is_kept_suffixed_and_counted(tmp_path):
    record = {"prompt": "Same", "completion": "Same answer"}
    path = save([record, {"prompt": "Other", "completion": "x"}, record, record], "jsonl",
                tmp_path / "d.jsonl")
    loaded = load_examples(path)
    base = content_id([{"role": "user", "content": "Same"},
                       {"role": "assistant", "content": "Same answer"}])
    assert [e.id for e in loaded.examples] == [base, loaded.examples[1].id, base + "-2", base + "-3"]
    assert loaded.duplicates == 2 and len(loaded.examples) == 4
    again = load_examples(path)
    assert [e.id for e in again.examples] == [e.id for e in loaded.examples]
    assert again.fingerprint == loaded.fingerprint


def test_fingerprint_ignores_order_but_not_content(tmp_path):
    a = load_examples(save(RECORDS["alpaca"], "jsonl", tmp_path / "a.jsonl"))
    b = load_examples(save(RECORDS["alpaca"][::-1], "json", tmp_path / "b.json"))
    changed = [dict(RECORDS["alpaca"][0], output="6"), RECORDS["alpaca"][1]]
    c = load_examples(save(changed, "jsonl", tmp_path / "c.jsonl"))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert len(a.fingerprint) == 64
    # With fixed ids, a change to any one example's messages or task changes the fingerprint.
    keyed = [dict(r, id=f"k{i}") for i, r in enumerate(RECORDS["alpaca"])]
    base = load_examples(save(keyed, "jsonl", tmp_path / "k.jsonl")).fingerprint
    for i in range(len(keyed)):
        for change in ({"output": "other"}, {"task": "other"}):
            edited = [dict(r, **change) if j == i else r for j, r in enumerate(keyed)]
            path = save(edited, "jsonl", tmp_path / f"k{i}.jsonl")
            assert load_examples(path).fingerprint != base


def test_conversational_prompt_completion_and_conversations_key(tmp_path):
    records = [{"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
                "completion": [{"role": "assistant", "content": "A"}]},
               {"prompt": "Q2", "response": "A2"}]
    loaded = load_examples(save(records, "jsonl", tmp_path / "pc.jsonl"))
    assert [[m["role"] for m in e.messages] for e in loaded.examples] == [
        ["system", "user", "assistant"], ["user", "assistant"]]
    convo = [{"conversations": [{"role": "user", "content": "Q"},
                                {"role": "assistant", "content": "A"}]}]
    assert load_examples(save(convo, "jsonl", tmp_path / "c.jsonl")).format == "messages"


def test_json_file_holding_json_lines_is_read_as_jsonl(tmp_path):
    loaded = load_examples(save(RECORDS["alpaca"], "jsonl", tmp_path / "really_lines.json"))
    assert loaded.container == "jsonl" and len(loaded.examples) == 2
    assert loaded.locations[loaded.examples[1].id].line == 2


def sni_task(tmp_path: Path) -> Path:
    task = {
        "Contributors": ["someone"],
        "Definition": ["Write a question about the passage."],
        "Positive Examples": [{"input": "Passage: Cats purr.", "output": "Who purrs?",
                               "explanation": "Asks about the passage."}],
        "Negative Examples": [{"input": "Passage: Dogs bark.", "output": "Hi",
                               "explanation": "Not a question."}],
        "Instances": [
            {"id": "task001-aaa", "input": "Passage: Birds fly.", "output": ["What flies?", "Who?"]},
            {"id": "task001-bbb", "input": "Passage: Fish swim.", "output": ["What swims?"]},
        ],
    }
    path = tmp_path / "task001_quoref_question_generation.json"
    path.write_text(json.dumps(task), encoding="utf-8")
    return path


def test_sni_task_file_becomes_one_example_per_instance(tmp_path):
    path = sni_task(tmp_path)
    loaded = load_examples(path)
    assert loaded.format == "sni" and [e.id for e in loaded.examples] == ["task001-aaa", "task001-bbb"]
    first = loaded.examples[0]
    assert first.task == "task001_quoref_question_generation"
    assert first.messages == [
        {"role": "user", "content": "Write a question about the passage.\n\nPassage: Birds fly."},
        {"role": "assistant", "content": "What flies?"}]
    demo = load_examples(path, source=SourceOptions(n_demos=1)).examples[0].messages[0]["content"]
    assert demo == ("Write a question about the passage.\n\nExample 1:\nInput: Passage: Cats purr."
                    "\nOutput: Who purrs?\n\nPassage: Birds fly.")
    out = write_records(loaded, ["task001-bbb"], tmp_path / "out" / path.name)
    written = json.loads(out.read_text(encoding="utf-8"))
    assert list(written) == list(json.loads(path.read_text(encoding="utf-8")))
    assert written["Instances"] == [{"id": "task001-bbb", "input": "Passage: Fish swim.",
                                     "output": ["What swims?"]}]
    assert [e.id for e in load_examples(out).examples] == ["task001-bbb"]


def test_write_examples_jsonl_loads_back_as_messages(tmp_path):
    examples = [Example("a", "math", EXPECTED["alpaca"][0], "add"),
                Example("b", None, EXPECTED["sharegpt"][1])]
    path = write_examples_jsonl(examples, tmp_path / "sub" / "examples.jsonl")
    back = load_examples(path)
    assert back.format == "messages"
    assert [(e.id, e.task, e.subtask, e.messages) for e in back.examples] == [
        ("a", "math", "add", EXPECTED["alpaca"][0]), ("b", None, None, EXPECTED["sharegpt"][1])]


# Pools as users keep them: mixed folders, Alpaca-like fields, a column mapping.

def test_folder_of_files_in_different_formats_loads_each_file_on_its_own(tmp_path):
    folder = tmp_path / "pool"
    folder.mkdir()
    save(RECORDS["alpaca"], "json", folder / "a.json")
    save(RECORDS["sharegpt"], "jsonl", folder / "b.jsonl")
    save([dict(r, dataset="gsm") for r in RECORDS["prompt_completion"]], "parquet", folder / "c.parquet")
    loaded = load_examples(folder)
    assert loaded.format == "mixed" and loaded.file_formats == ["alpaca", "sharegpt", "prompt_completion"]
    assert [e.messages for e in loaded.examples] == \
        EXPECTED["alpaca"] + EXPECTED["sharegpt"] + EXPECTED["prompt_completion"]
    # the record's own task field first (dataset here), else the file's name
    assert [e.task for e in loaded.examples] == ["a", "a", "b", "b", "gsm", "gsm"]
    summary = loaded.summary()
    assert "(dir, mixed)" in summary and "  a.json: alpaca, 2 examples" in summary
    assert "  b.jsonl: sharegpt, 2 examples" in summary and "  c.parquet: prompt_completion, 2 examples" in summary
    # a selection keeps each record in its own file and format, and loads back as the same examples
    ids = [loaded.examples[i].id for i in (5, 0, 3)]
    out = write_records(loaded, ids, tmp_path / "sel")
    again = load_examples(out)
    assert again.file_formats == ["alpaca", "sharegpt", "prompt_completion"]
    assert json.loads((out / "a.json").read_text()) == [RECORDS["alpaca"][0]]
    assert sorted(e.id for e in again.examples) == sorted(ids)


@pytest.mark.parametrize("field", ["task", "domain", "dataset", "source", "category"])
def test_task_comes_from_each_task_field(tmp_path, field):
    path = save([dict(RECORDS["alpaca"][0], **{field: "named"})], "jsonl", tmp_path / "stem.jsonl")
    assert load_examples(path).examples[0].task == "named"


@needs_real
def test_real_pool_folder_mixing_alpaca_like_question_answer_and_sharegpt(tmp_path):
    import shutil
    for name in ("gpteacher_codegen.json", "gsm8k_train.jsonl", "sharegpt_dummy_conversation.json"):
        shutil.copy(REAL / name, tmp_path / name)
    loaded = load_examples(tmp_path)
    assert loaded.file_formats == ["alpaca", "question_answer", "sharegpt"]
    counts = {task: sum(e.task == task for e in loaded.examples)
              for task in ("gpteacher_codegen", "gsm8k_train", "sharegpt_dummy_conversation")}
    assert counts == {"gpteacher_codegen": 4535, "gsm8k_train": 7473, "sharegpt_dummy_conversation": 500}
    first = loaded.examples[0]  # GPTeacher names the output "response"
    assert first.messages[1]["content"] == json.loads((REAL / "gpteacher_codegen.json").read_text())[0]["response"]


@pytest.mark.parametrize("key", ["response", "answer"])
def test_alpaca_like_records_with_response_or_answer(tmp_path, key):
    records = [{"instruction": "Add.", "input": "2 and 3", key: "5"}, {"instruction": "Hi.", key: "Hello"}]
    loaded = load_examples(save(records, "jsonl", tmp_path / "d.jsonl"))
    assert loaded.format == "alpaca"
    assert [e.messages for e in loaded.examples] == [
        [{"role": "user", "content": "Add.\n\n2 and 3"}, {"role": "assistant", "content": "5"}],
        [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello"}]]


COLUMN_RECORD = {"q": "Add.", "ctx": "2 and 3", "a": "5", "sys": "Be brief.",
                 "past": [["Hi", "Hello"]], "turns": [{"from": "human", "value": "Yo"}, {"from": "gpt", "value": "Hey"}]}


@pytest.mark.parametrize("mapping,expected", [
    ("prompt=q,response=a", [("user", "Add."), ("assistant", "5")]),
    ("prompt=q,query=ctx,response=a", [("user", "Add.\n\n2 and 3"), ("assistant", "5")]),
    ("prompt=q,response=a,system=sys", [("system", "Be brief."), ("user", "Add."), ("assistant", "5")]),
    ("prompt=q,response=a,history=past", [("user", "Hi"), ("assistant", "Hello"), ("user", "Add."),
                                          ("assistant", "5")]),
    ("messages=turns", [("user", "Yo"), ("assistant", "Hey")]),
    ("messages=turns,system=sys", [("system", "Be brief."), ("user", "Yo"), ("assistant", "Hey")]),
], ids=["prompt+response", "query", "system", "history", "messages", "messages+system"])
def test_columns_mapping_each_key(tmp_path, mapping, expected):
    path = save([COLUMN_RECORD], "jsonl", tmp_path / "d.jsonl")
    loaded = load_examples(path, columns=mapping)
    assert loaded.format == "columns"
    assert [(m["role"], m["content"]) for m in loaded.examples[0].messages] == expected
    assert loaded.examples[0].record == COLUMN_RECORD  # written back with the user's own fields
    assert load_examples(path, columns=dict(p.split("=") for p in mapping.split(","))).fingerprint == \
        loaded.fingerprint


def test_columns_messages_in_role_content_turns(tmp_path):
    record = {"chat": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    path = save([record], "jsonl", tmp_path / "d.jsonl")
    assert load_examples(path, columns="messages=chat").examples[0].messages == record["chat"]
