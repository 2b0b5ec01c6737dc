"""Bad input: every error names the file and the line (or position and id), says what is wrong
and what to do; skip_invalid skips and counts instead of raising."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from instruct_select.data import load_examples, write_records
from instruct_select.data.loading import SourceOptions
from instruct_select.errors import InputError

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def lines(tmp_path: Path, *rows: object, name: str = "data.jsonl") -> Path:
    """A JSONL file: dicts are dumped, strings written as they are."""
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def error(path: Path, **options: object) -> str:
    with pytest.raises(InputError) as caught:
        load_examples(path, **options)
    return str(caught.value)


def turn(role: object, content: object) -> dict:
    return {"messages": [{"role": "user", "content": "Q"}, {"role": role, "content": content}]}


def test_malformed_json_line_names_the_line(tmp_path):
    path = lines(tmp_path, GOOD, GOOD, '{"messages": [}', GOOD)
    message = error(path)
    assert message.startswith(f"{path}:3: malformed JSON")
    assert message.endswith("or pass --skip-invalid to skip bad lines.")
    single = lines(tmp_path, '{"messages": [}', name="one.jsonl")
    assert "rename" not in error(single)  # one bad line is not a pretty-printed document


def test_non_utf8_bytes_name_the_line_and_the_fix(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b'\n{"prompt": "caf\xe9", "completion": "x"}\n')
    message = error(path)
    assert message.startswith(f"{path}:2: not valid UTF-8 (byte 0xe9")
    assert "iconv" in message
    doc = tmp_path / "latin.json"
    doc.write_bytes(b'[\n{"prompt": "ok", "completion": "x"},\n{"prompt": "caf\xe9"}]')
    assert error(doc).startswith(f"{doc}:3: not valid UTF-8")


@pytest.mark.parametrize("content", [b"", b"\n \n"])
@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json"])
def test_empty_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    assert error(path) == f"{path}: the file is empty. Point at a file that holds records."


def test_malformed_json_document_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"prompt": "a", "completion": "b"},\n  {"prompt": "c" "completion": "d"}\n]')
    assert error(path).startswith(f"{path}:3: malformed JSON")


def test_pretty_printed_json_named_jsonl_gets_a_rename_hint(tmp_path):
    path = tmp_path / "pretty.jsonl"
    path.write_text(json.dumps([GOOD], indent=2))
    message = error(path)
    assert message.startswith(f"{path}:1: malformed JSON") and "rename it to .json" in message


def test_missing_field_names_the_field_the_format_and_the_keys_seen(tmp_path):
    path = lines(tmp_path, {"instruction": "a", "output": "b"}, {"instruction": "only"})
    message = error(path)
    assert message.startswith(f"{path}:2: missing field 'output' (alpaca format needs")
    assert "the record has ['instruction']" in message
    typed = lines(tmp_path, {"instruction": "a", "output": 5}, name="t.jsonl")
    assert error(typed).startswith(f"{typed}:1: field 'output' is int 5, expected a non-empty")
    prompt_only = lines(tmp_path, {"prompt": "a"}, name="p.jsonl")
    assert error(prompt_only, format="prompt_completion").startswith(
        f"{prompt_only}:1: missing field 'completion'")


def test_unknown_role_lists_the_allowed_roles(tmp_path):
    path = lines(tmp_path, GOOD, turn("robot", "beep"))
    assert error(path) == (f"{path}:2: message 2 has unknown role 'robot'; allowed roles: "
                           "system, user, assistant.")
    sharegpt_role = lines(tmp_path, turn("gpt", "x"), name="g.jsonl")
    assert error(sharegpt_role).endswith("allowed roles: system, user, assistant. Use 'assistant' "
                                         "instead.")


def test_unknown_sharegpt_speaker_lists_the_accepted_ones(tmp_path):
    path = lines(tmp_path, {"conversations": [{"from": "human", "value": "Q"},
                                              {"from": "wizard", "value": "A"}]})
    message = error(path)
    assert message.startswith(f"{path}:1: conversations[1] has unknown 'from' 'wizard'")
    assert "human" in message and "gpt" in message


@pytest.mark.parametrize("content", ["", "   \n\t"])
def test_empty_content_is_an_error(tmp_path, content):
    path = lines(tmp_path, turn("assistant", content))
    assert error(path).startswith(f"{path}:1: message 2 (assistant) content is empty")


def test_content_of_wrong_type_is_named(tmp_path):
    path = lines(tmp_path, GOOD, GOOD, turn("assistant", 42))
    assert error(path).startswith(f"{path}:3: message 2 (assistant) content is int 42, "
                                  "expected a non-empty string")
    listed = lines(tmp_path, turn("assistant", [{"type": "text", "text": "x"}]), name="l.jsonl")
    assert "content is list" in error(listed)


def test_messages_not_a_list_is_named(tmp_path):
    path = lines(tmp_path, {"messages": "user: hi"})
    assert error(path, format="messages").startswith(
        f"{path}:1: field 'messages' is str 'user: hi', expected a list")


def test_no_assistant_turn_and_system_only_are_errors(tmp_path):
    path = lines(tmp_path, {"messages": [{"role": "user", "content": "Q"}]})
    assert error(path).startswith(f"{path}:1: no assistant turn")
    system = lines(tmp_path, {"messages": [{"role": "system", "content": "S"}]}, name="s.jsonl")
    assert error(system).startswith(f"{system}:1: no assistant turn")


def test_unknown_format_name_lists_the_formats(tmp_path):
    message = error(lines(tmp_path, GOOD), format="chatml")
    assert message.startswith("unknown format 'chatml'; known formats: messages, sharegpt")


def test_undetectable_format_lists_keys_seen_and_formats(tmp_path):
    path = lines(tmp_path, {"text": "hello", "label": 1})
    message = error(path)
    assert message.startswith(f"{path}:1: cannot tell the format from the first record's keys "
                              "['label', 'text']")
    assert "alpaca" in message and "question_answer" in message
    assert message.endswith("Map your fields with --columns (e.g. --columns prompt=question,response=reply), "
                            "or name the format with --format NAME.")


def test_duplicate_ids_name_both_locations(tmp_path):
    path = tmp_path / "dup.json"
    rows = [dict(GOOD, id="a"), dict(GOOD, id="b"), dict(turn("assistant", "other"), id="a")]
    path.write_text(json.dumps(rows))
    assert error(path).startswith(f"{path}: [2] (id 'a'): duplicate id 'a', first seen at "
                                  f"{path}: [0]")
    jsonl = lines(tmp_path, dict(GOOD, id=5), dict(GOOD, id="5"))
    assert f"{jsonl}:2: duplicate id '5', first seen at {jsonl}:1" in error(jsonl)


def test_dataset_dict_without_the_split_lists_its_splits(tmp_path):
    import datasets
    folder = tmp_path / "dd"
    datasets.DatasetDict({"validation": datasets.Dataset.from_list([GOOD]),
                          "test": datasets.Dataset.from_list([GOOD])}).save_to_disk(str(folder))
    assert error(folder).startswith(f"{folder}: the dataset has no split 'train'; its splits are "
                                    "test, validation. Save the split you want as a folder of its own")
    assert len(load_examples(folder, source=SourceOptions(split="test")).examples) == 1


def test_bad_rows_in_parquet_and_hf_name_the_row(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [{"question": "Q1", "answer": "A1"}, {"question": "Q2", "answer": None}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    # A Parquet column holds every row's field: an absent answer is a null, and says so.
    assert error(tmp_path / "t.parquet") == (f"{tmp_path / 't.parquet'}: row 1: field 'answer' is null; "
                                             "give it a value, or drop the record.")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(
        str(tmp_path / "hf"))
    assert error(tmp_path / "hf").startswith(f"{tmp_path / 'hf'}: train row 1: field 'answer' is null")


def test_missing_id_and_task_fields_named_by_the_caller(tmp_path):
    path = lines(tmp_path, dict(GOOD, uid="x", kind="k"), GOOD)
    assert error(path, id_field="uid") == (f"{path}:2: missing id field 'uid' (named by --id-field); the "
                                           f"record has {sorted(GOOD)}.")
    assert error(path, source=SourceOptions(task_field="kind")).startswith(f"{path}:2: missing task field 'kind'")
    wrong = lines(tmp_path, dict(GOOD, id=[1]), name="w.jsonl")
    assert error(wrong).startswith(f"{wrong}:1: field 'id' is list [1], expected a string")


def test_json_object_without_a_list_of_records(tmp_path):
    path = tmp_path / "obj.json"
    path.write_text(json.dumps({"meta": 1, "items": {"a": GOOD}}))
    message = error(path)
    assert message.startswith(f"{path}: a JSON object with keys ['items', 'meta']")
    assert "examples" in message


def test_folder_without_data(tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "README.md").write_text("hi")
    assert error(empty).startswith(f"{empty}: no data files in this folder")


def test_sni_demos_beyond_the_positive_examples(tmp_path):
    path = tmp_path / "task002_x.json"
    path.write_text(json.dumps({"Definition": ["D"], "Positive Examples": [],
                                "Instances": [{"id": "i", "input": "x", "output": ["y"]}]}))
    assert error(path, source=SourceOptions(n_demos=2)).startswith(f"{path}: n_demos=2 asks for more demonstrations")


def test_skip_invalid_counts_every_skip_with_location_and_reason(tmp_path):
    path = lines(tmp_path, GOOD, "{not json", turn("robot", "x"), turn("assistant", ""),
                 dict(GOOD, id="k"), dict(turn("assistant", "again"), id="k"), turn("assistant", "ok"))
    with pytest.raises(InputError):
        load_examples(path)
    loaded = load_examples(path, skip_invalid=True)
    assert len(loaded.examples) == 3
    assert [where for where, _ in loaded.skipped] == [f"{path}:2", f"{path}:3", f"{path}:4",
                                                      f"{path}:6"]
    reasons = [why for _, why in loaded.skipped]
    assert reasons[0].startswith("malformed JSON") and "unknown role 'robot'" in reasons[1]
    assert "is empty" in reasons[2] and reasons[3].startswith("duplicate id 'k'")
    assert "skipped: 4" in loaded.summary() and f"{path}:3: message 2 has unknown role" in \
        loaded.summary()


def test_skip_invalid_with_nothing_valid_still_raises(tmp_path):
    path = lines(tmp_path, turn("robot", "x"), turn("assistant", " "))
    assert error(path, skip_invalid=True).startswith(f"{path}: no valid examples; all 2 records")


def test_write_records_refuses_unknown_or_repeated_ids(tmp_path):
    loaded = load_examples(lines(tmp_path, dict(GOOD, id="a")))
    with pytest.raises(InputError, match=r"not in .*data.jsonl, e.g. \['zzz'\]"):
        write_records(loaded, ["a", "zzz"], tmp_path / "out.jsonl")
    with pytest.raises(InputError, match="repeat"):
        write_records(loaded, ["a", "a"], tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
