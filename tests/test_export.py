"""Exporting a selection for other trainers: a datasets folder in rank order, JSONL equal to the
original records, through the CLI; a selection from another pool is refused by name."""
from __future__ import annotations

import json

import pytest

from instruct_select.cli import main
from instruct_select.data.loading import load_examples
from instruct_select.errors import ArtifactMismatchError
from instruct_select.run.context import RunContext
from instruct_select.run.stages import select_stage
from instruct_select.select.export import export_selection
from instruct_select.select.selection import read_selected_ids


def _messages_pool(path, n=20):
    records = []
    for i in range(n):
        record = {"id": f"ex{i}", "task": ["math", "code", "logic"][i % 3],
                  "messages": [{"role": "user", "content": f"question {i}"},
                               {"role": "assistant", "content": f"answer {i}"}],
                  "source": f"src{i % 2}",
                  "meta": {"k": i} if i % 2 else f"text {i}"}  # mixed types: Arrow needs JSON text
        records.append(record)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return records


def _alpaca_pool(path, n=12):
    records = [{"instruction": f"Add {i} and 1.", "input": "" if i % 2 else f"context {i}", "output": str(i + 1),
                "category": "math" if i % 2 else "format"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return records


def _select(pool, out, budget="7"):
    return select_stage(RunContext.create(pool=pool), "random", budget, out, seed=3).path


def test_hf_export_keeps_rank_order_and_fields(tmp_path):
    import datasets

    pool = tmp_path / "pool.jsonl"
    records = {r["id"]: r for r in _messages_pool(pool)}
    selection = _select(pool, tmp_path / "sel")
    result = export_selection(selection, pool, "hf", tmp_path / "hf")
    dataset = datasets.load_from_disk(str(tmp_path / "hf"))
    ids = read_selected_ids(selection)
    assert dataset["id"] == ids and result.rows == 7
    assert dataset["rank"] == list(range(1, 8))
    assert dataset["task"] == [records[i]["task"] for i in ids]
    assert dataset["messages"] == [records[i]["messages"] for i in ids]
    assert dataset["source"] == [records[i]["source"] for i in ids]
    assert [json.loads(v) for v in dataset["meta"]] == [records[i]["meta"] for i in ids]
    assert any("meta" in note for note in result.notes) and "meta" in dataset.info.description


def test_jsonl_export_equals_the_original_records(tmp_path):
    pool = tmp_path / "pool.jsonl"
    records = {r["id"]: r for r in _messages_pool(pool)}
    selection = _select(pool, tmp_path / "sel")
    export_selection(selection, pool, "jsonl", tmp_path / "out.jsonl")
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert written == [records[i] for i in read_selected_ids(selection)]


def test_alpaca_pool_through_the_cli(tmp_path, capsys):
    import datasets

    pool = tmp_path / "alpaca.jsonl"
    records = _alpaca_pool(pool)
    selection = _select(pool, tmp_path / "sel", budget="50%")
    assert main(["export", str(selection), "--pool", str(pool), "--to", "jsonl", "--out", str(tmp_path / "a.jsonl")]) == 0
    assert main(["export", str(selection), "--pool", str(pool), "--to", "hf", "--out", str(tmp_path / "a_hf")]) == 0
    assert "6 examples written" in capsys.readouterr().out
    written = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(written) == 6 and all(r in records for r in written)
    dataset = datasets.load_from_disk(str(tmp_path / "a_hf"))
    assert dataset["id"] == read_selected_ids(selection)
    assert {"instruction", "input", "output", "category", "messages"} <= set(dataset.column_names)
    first = written[0]
    assert dataset[0]["output"] == first["output"] and dataset[0]["messages"][-1]["content"] == first["output"]


def test_parquet_pool_exports_records_as_json_lines(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = tmp_path / "pool.jsonl"
    records = _alpaca_pool(jsonl)
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.Table.from_pylist(records), pool)
    selection = _select(pool, tmp_path / "sel", budget="4")
    result = export_selection(selection, pool, "jsonl", tmp_path / "out.jsonl")
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(written) == 4 and all(r in records for r in written) and result.notes


def test_selection_from_another_pool_is_refused(tmp_path, capsys):
    pool = tmp_path / "pool.jsonl"
    _messages_pool(pool)
    selection = _select(pool, tmp_path / "sel")
    other = tmp_path / "other.jsonl"
    _alpaca_pool(other)
    with pytest.raises(ArtifactMismatchError, match="another pool"):
        export_selection(selection, other, "hf", tmp_path / "x")
    assert main(["export", str(tmp_path), "--pool", str(pool), "--to", "hf", "--out", str(tmp_path / "y")]) == 2
    assert "holds no selection.tsv" in capsys.readouterr().err


def test_mixed_format_folder_exports_each_record_in_its_own_format(tmp_path):
    folder = tmp_path / "pool"
    folder.mkdir()
    alpaca = _alpaca_pool(folder / "alpaca.jsonl", n=4)
    sharegpt = [{"id": f"s{i}", "conversations": [{"from": "human", "value": f"hi {i}"}, {"from": "gpt", "value": "yo"}]}
                for i in range(4)]
    (folder / "chat.json").write_text(json.dumps(sharegpt))
    selection = _select(folder, tmp_path / "sel", budget="8")
    result = export_selection(selection, folder, "jsonl", tmp_path / "out.jsonl")
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(map(json.dumps, written)) == sorted(map(json.dumps, alpaca + sharegpt))
    assert any("2 formats (alpaca, sharegpt)" in note for note in result.notes)


def test_export_reads_the_pool_with_the_selections_id_field_and_columns(tmp_path):
    pool = tmp_path / "pool.jsonl"
    rows = [{"uid": f"u{i}", "q": f"question {i}", "a": f"answer {i}"} for i in range(6)]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    context = RunContext.create(pool=load_examples(pool, id_field="uid", columns="prompt=q,response=a"))
    selection = select_stage(context, "random", "3", tmp_path / "sel", seed=0).path
    export_selection(selection, pool, "jsonl", tmp_path / "out.jsonl", id_field="uid", columns="prompt=q,response=a")
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["uid"] for r in written] == read_selected_ids(selection)


def test_folder_pool_selection_is_a_folder_named_without_extension(tmp_path):
    """A pool folder is written back as a folder, so its name carries no file extension."""
    from instruct_select.data.loading import load_examples

    pool = tmp_path / "pool"
    pool.mkdir()
    _alpaca_pool(pool / "a.jsonl")
    _alpaca_pool(pool / "b.jsonl")
    out = _select(pool, tmp_path / "sel", budget="6")
    assert (out / "selected").is_dir() and not (out / "selected.jsonl").exists()
    assert len(load_examples(out / "selected").examples) == 6


def test_export_never_destroys_what_it_did_not_write(tmp_path):
    from instruct_select.errors import ConfigError

    pool = tmp_path / "pool.jsonl"
    _alpaca_pool(pool)
    selection = _select(pool, tmp_path / "sel")
    kept = {p.name: p.read_bytes() for p in selection.iterdir() if p.is_file()}
    for out, to, fragment in ((selection, "hf", "selection folder"), (selection / "x", "hf", "selection folder"),
                              (tmp_path, "hf", "selection folder"), (tmp_path / "dir", "jsonl", "is a folder")):
        if fragment == "is a folder":
            out.mkdir()
        with pytest.raises(ConfigError, match=fragment):
            export_selection(selection, pool, to, out)
    assert {p.name: p.read_bytes() for p in selection.iterdir() if p.is_file()} == kept
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my notes")
    with pytest.raises(ConfigError, match="--overwrite"):
        export_selection(selection, pool, "hf", foreign)
    assert (foreign / "notes.txt").read_text() == "my notes"
    export_selection(selection, pool, "jsonl", tmp_path / "out.jsonl")
    with pytest.raises(ConfigError, match="--overwrite"):
        export_selection(selection, pool, "jsonl", tmp_path / "out.jsonl")
    export_selection(selection, pool, "jsonl", tmp_path / "out.jsonl", overwrite=True)
