"""A corpus of malformed inputs, tried systematically through the command line.

Each case must end with exit status 2 and one 'error: ...' line naming what is wrong (and where),
never a traceback; or, where the user asked for skipping, a counted skip in the report.
"""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from instruct_select.data.example import Example
from instruct_select.errors import InstructSelectError
from instruct_select.influence.attribution import AttributionMatrix
from instruct_select.select.selection import run_selector

OK = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def _jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def _msg(**changes):
    return {**OK, **changes}


# (name, file name, file content (str or bytes), extra CLI args, fragments the error must contain)
FILE_CASES = [
    ("broken JSON line", "p.jsonl", _jsonl(OK, "{not json"), [], ["p.jsonl:2", "or pass --skip-invalid"]),
    ("messages not a list", "p.jsonl", _jsonl(_msg(messages="hi")), [], ["p.jsonl:1", "list"]),
    ("content a number", "p.jsonl", _jsonl(_msg(messages=[{"role": "user", "content": 3},
                                                          {"role": "assistant", "content": "x"}])), [], ["p.jsonl:1"]),
    ("unknown role", "p.jsonl", _jsonl(_msg(messages=[{"role": "bot", "content": "a"},
                                                      {"role": "assistant", "content": "x"}])), [], ["p.jsonl:1", "bot"]),
    ("missing role", "p.jsonl", _jsonl(_msg(messages=[{"content": "a"}, {"role": "assistant", "content": "x"}])), [], ["p.jsonl:1", "role"]),
    ("empty turn", "p.jsonl", _jsonl(_msg(messages=[{"role": "user", "content": ""},
                                                    {"role": "assistant", "content": "x"}])), [], ["p.jsonl:1", "empty"]),
    ("whitespace-only turn", "p.jsonl", _jsonl(_msg(messages=[{"role": "user", "content": "a"},
                                                              {"role": "assistant", "content": "  \n"}])), [], ["p.jsonl:1"]),
    ("no assistant turn", "p.jsonl", _jsonl(_msg(messages=[{"role": "user", "content": "a"}])), [], ["p.jsonl:1", "assistant"]),
    ("empty file", "p.jsonl", "", [], ["p.jsonl", "empty"]),
    ("non-UTF-8 bytes", "p.jsonl", b'{"messages": "\xff\xfe"}\n', [], ["p.jsonl", "UTF-8"]),
    ("duplicate ids", "p.jsonl", _jsonl(_msg(id="a"), _msg(id="a")), [], ["'a'", "p.jsonl:1", "p.jsonl:2",
                                                                         "name a unique field with --id-field FIELD"]),
    ("unknown fields", "p.jsonl", _jsonl({"foo": 1, "bar": 2}), [], ["p.jsonl", "foo"]),
    ("unknown format name", "p.jsonl", _jsonl(OK), ["--format", "yaml"], ["unknown format 'yaml'"]),
    ("JSON top level a string", "p.json", '"hello"', [], ["p.json"]),
    ("JSON list with a number", "p.json", json.dumps([OK, 3]), [], ["p.json"]),
    ("ShareGPT unknown speaker", "p.jsonl", _jsonl({"conversations": [{"from": "robot", "value": "a"},
                                                                       {"from": "gpt", "value": "b"}]}), [], ["p.jsonl:1", "robot"]),
    ("Alpaca without output", "p.jsonl", _jsonl({"instruction": "do", "input": ""}), [], ["p.jsonl:1"]),
    ("corrupt Parquet", "p.parquet", b"PAR1 not really", [], ["p.parquet", "Parquet"]),
    ("missing file", None, None, [], ["no such file"]),
    ("id of a wrong type", "p.jsonl", _jsonl(_msg(id=[1, 2])), [], ["p.jsonl:1", "id"]),
    ("Alpaca output null", "p.jsonl", _jsonl({"instruction": "do", "output": None}), [],
     ["p.jsonl:1: field 'output' is null; give it a value"]),
    ("undetectable fields", "p.jsonl", _jsonl({"q": "a", "r": "b"}), [],
     ["p.jsonl:1", "Map your fields with --columns", "--format NAME"]),
    ("id field absent", "p.jsonl", _jsonl(OK), ["--id-field", "uid"],
     ["p.jsonl:1: missing id field 'uid' (named by --id-field)"]),
    ("columns unknown key", "p.jsonl", _jsonl(OK), ["--columns", "prompt=q,answer=a"],
     ["--columns: unknown key 'answer'; the keys are prompt, query, response, history, messages, system"]),
    ("columns not KEY=FIELD", "p.jsonl", _jsonl(OK), ["--columns", "prompt"], ["--columns: 'prompt' is not KEY=FIELD"]),
    ("columns without a response", "p.jsonl", _jsonl(OK), ["--columns", "prompt=q"],
     ["--columns: name where the conversation is: prompt= and response="]),
    ("columns messages with prompt", "p.jsonl", _jsonl(OK), ["--columns", "messages=m,prompt=q"],
     ["['prompt'] cannot go with it"]),
    ("columns key twice", "p.jsonl", _jsonl(OK), ["--columns", "prompt=a,prompt=b,response=c"], ["'prompt' is given twice"]),
    ("columns field absent", "p.jsonl", _jsonl({"q": "a"}), ["--columns", "prompt=q,response=r"],
     ["p.jsonl:1: missing field 'r' (named by --columns response=r)"]),
    ("columns history not pairs", "p.jsonl", _jsonl({"q": "a", "r": "b", "h": ["x"]}),
     ["--columns", "prompt=q,response=r,history=h"], ["p.jsonl:1: field 'h'[0] is str, expected a [user, assistant] pair"]),
    ("columns messages not turns", "p.jsonl", _jsonl({"m": [{"speaker": "x"}]}), ["--columns", "messages=m"],
     ["p.jsonl:1: m[0] is not a turn"]),
    ("format and columns", "p.jsonl", _jsonl(OK), ["--format", "alpaca", "--columns", "prompt=q,response=a"],
     ["--format alpaca and --columns both say how to read the records"]),
]


def _cli(*args, cwd):
    """The command line in this process (a subprocess per case would spend seconds importing torch).

    An exception escaping ``main`` fails the test: that is the traceback a user must never see.
    """
    import contextlib
    import io

    from instruct_select.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _assert_clear_error(result, fragments):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.mark.parametrize("name,filename,content,args,fragments", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_file_gets_a_clear_error(tmp_path, name, filename, content, args, fragments):
    path = tmp_path / (filename or "absent.jsonl")
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    _assert_clear_error(_cli("inspect", str(path), *args, cwd=tmp_path), fragments)


def test_skip_invalid_counts_and_reports(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(_jsonl(OK, "{broken", _msg(messages=[{"role": "user", "content": "a"}]), _msg(id="z")))
    result = _cli("inspect", str(path), "--skip-invalid", cwd=tmp_path)
    assert result.returncode == 0
    assert "skipped" in result.stdout and "2" in result.stdout


def test_empty_validation_task(tmp_path, tiny_lab):
    val = tmp_path / "val"
    val.mkdir()
    (val / "code.jsonl").write_text((tiny_lab.validation / "code.jsonl").read_text())
    (val / "math.jsonl").write_text("")
    _assert_clear_error(_cli("inspect", str(val), cwd=tmp_path), ["math.jsonl", "empty"])


def test_budget_errors(tmp_path):
    pool = tmp_path / "p.jsonl"
    pool.write_text(_jsonl(*[_msg(id=f"x{i}") for i in range(10)]))
    for budget, fragment in (("11", "larger than the pool"), ("0%", "positive"), ("lots", "not understood"),
                             ("500tok", "needs a tokenizer")):
        _assert_clear_error(_cli("select", "--pool", str(pool), "--budget", budget, "--out", str(tmp_path / budget),
                                 cwd=tmp_path), [fragment])


def test_selection_from_another_pool_is_refused(tmp_path, tiny_lab):
    other = tmp_path / "other.jsonl"
    other.write_text(_jsonl(*[_msg(id=f"x{i}") for i in range(10)]))
    assert _cli("select", "--pool", str(other), "--budget", "3", "--out", str(tmp_path / "sel"), cwd=tmp_path).returncode == 0
    result = _cli("train", "--model", str(tiny_lab.model("small")), "--data", str(tiny_lab.pool),
                  "--selection", str(tmp_path / "sel"), "--out", str(tmp_path / "t"), cwd=tmp_path)
    _assert_clear_error(result, ["ids absent", "another pool"])


def test_bad_config_value(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: m\npool: p\ntrain: {epochs: many}\n")
    _assert_clear_error(_cli("run", str(config), "--dry-run", cwd=tmp_path), ["train.epochs must be int"])


def _pool(n):
    return [Example(f"p{i}", "code" if i % 2 else "math", [{"role": "user", "content": "q"},
                                                          {"role": "assistant", "content": "a"}]) for i in range(n)]


def test_zero_variance_columns_are_reported_and_dropped():
    pool = _pool(8)
    scores = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    scores[:, 1] = 0.5
    columns = [{"id": f"v{j}", "task": "code" if j < 2 else "math"} for j in range(4)]
    sel = run_selector("bids", pool, 3, artifacts={"attribution": AttributionMatrix(scores, [e.id for e in pool], columns, [])})
    assert sel.diagnostics["dropped_zero_variance_columns"] == ["v1"] and len(sel.ids) == 3
    scores[:] = 1.0
    with pytest.raises(InstructSelectError, match="zero variance"):
        run_selector("bids", pool, 3, artifacts={"attribution": AttributionMatrix(scores, [e.id for e in pool], columns, [])})


def test_unequal_validation_sizes_for_bids():
    pool = _pool(8)
    columns = [{"id": "v0", "task": "code"}, {"id": "v1", "task": "math"}, {"id": "v2", "task": "math"}]
    scores = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
    with pytest.raises(InstructSelectError, match="equal number of validation examples"):
        run_selector("bids", pool, 3, artifacts={"attribution": AttributionMatrix(scores, [e.id for e in pool], columns, [])})


# ------------------------------------------------------------------------------------------------
# Models and tokenizers that cannot serve (the real-model path)


def test_model_folder_that_is_not_a_causal_lm(tmp_path, tiny_lab):
    from transformers import BertConfig, BertModel

    folder = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=100)).save_pretrained(str(folder))
    result = _cli("train", "--model", str(folder), "--data", str(tiny_lab.pool), "--out", str(tmp_path / "t"),
                  cwd=tmp_path)
    _assert_clear_error(result, [str(folder), "BertModel", "not a causal language model"])
    assert not (tmp_path / "t" / "manifest.json").exists()


def test_tokenizer_without_chat_template(tmp_path, tiny_lab):
    import shutil

    model = tmp_path / "no-template"
    shutil.copytree(tiny_lab.model("small"), model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    (model / "manifest.json").unlink(missing_ok=True)
    result = _cli("train", "--model", str(model), "--data", str(tiny_lab.pool), "--out", str(tmp_path / "t"),
                  cwd=tmp_path)
    _assert_clear_error(result, [str(model), "no chat template", "--chat-template plain"])


def test_validation_task_with_nothing_left_after_truncation(tmp_path, tiny_lab):
    import yaml

    val = tmp_path / "val"
    val.mkdir()
    (val / "code.jsonl").write_text((tiny_lab.validation / "code.jsonl").read_text())
    long_prompt = {"id": "long", "messages": [{"role": "user", "content": "word " * 200},
                                             {"role": "assistant", "content": "ok"}]}
    (val / "math.jsonl").write_text(json.dumps(long_prompt) + "\n")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_lab.model("small")), "pool": str(tiny_lab.pool), "validation": str(val),
        "run_dir": str(tmp_path / "run"), "methods": ["less"], "dtype": "float32", "device": "cpu",
        "influence": {"features": {"max_length": 64, "token_budget": 2048}}}))
    result = _cli("--quiet", "run", str(config), cwd=tmp_path)
    _assert_clear_error(result, [str(val), "'math'", "influence.features.max_length"])
    assert not (tmp_path / "run" / "influence" / "warmup").exists()  # refused before any compute


def test_run_dry_run_checks_paths_and_validation_before_any_work(tmp_path, tiny_lab):
    import yaml

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": str(tiny_lab.model("small")), "pool": str(tmp_path / "nope.jsonl"),
                                      "methods": ["random"]}))
    _assert_clear_error(_cli("run", str(config), "--dry-run", cwd=tmp_path), ["pool:", "nope.jsonl", "does not exist"])
    config.write_text(yaml.safe_dump({"model": str(tiny_lab.model("small")), "pool": str(tiny_lab.pool),
                                      "methods": ["random", "bids"]}))
    _assert_clear_error(_cli("run", str(config), "--dry-run", cwd=tmp_path), ["['bids']", "set validation"])
