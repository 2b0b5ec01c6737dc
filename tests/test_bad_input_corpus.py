"""A corpus of malformed inputs, tried systematically through the command line.

Each case must end with exit status 2 and one 'error: ...' line naming what is wrong (and where),
never a traceback; or, where the user asked for skipping, a counted skip in the report.
"""
from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from instruct_select.data.example import Example
from instruct_select.errors import InstructSelectError
from instruct_select.influence.attribution import AttributionMatrix
from instruct_select.select.base import SelectionContext
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
    # issue 23: what the bytes are, not a Latin-1 hint
    ("gzip bytes in a .jsonl", "p.jsonl", gzip.compress(_jsonl(OK).encode()), [],
     ["p.jsonl: the file holds gzip-compressed data, not JSONL text; decompress it first (gunzip FILE)"]),
    ("Parquet bytes in a .jsonl", "p.jsonl", b"PAR1\x15\x04" + bytes(range(200)), [],
     ["p.jsonl: the file holds a Parquet file, not JSONL text; rename it to .parquet"]),
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


def _error_lines(stderr: str) -> str:
    """stderr without the stage lines that come before an error (``[stage] FOLDER ...``, ``... failed after``)."""
    lines = stderr.splitlines(keepends=True)
    while lines and lines[0].startswith("["):
        lines.pop(0)
    return "".join(lines)


def _assert_clear_error(result, fragments):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    error = _error_lines(result.stderr)
    assert error.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in error, (fragment, result.stderr)


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
                             ("500tok", "needs a tokenizer"), ("inf", "not understood"),
                             ("nan%", "is not a finite number"), ("inftok", "is not a finite number")):
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
    sel = run_selector("bids", SelectionContext(pool, artifacts={"attribution": AttributionMatrix(
        scores, [e.id for e in pool], columns, [])}), 3)
    assert sel.diagnostics["dropped_zero_variance_columns"] == ["v1"] and len(sel.ids) == 3
    scores[:] = 1.0
    with pytest.raises(InstructSelectError, match="zero variance"):
        run_selector("bids", SelectionContext(pool, artifacts={"attribution": AttributionMatrix(
            scores, [e.id for e in pool], columns, [])}), 3)


def test_unequal_validation_sizes_for_bids():
    pool = _pool(8)
    columns = [{"id": "v0", "task": "code"}, {"id": "v1", "task": "math"}, {"id": "v2", "task": "math"}]
    scores = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
    with pytest.raises(InstructSelectError, match="equal number of validation examples"):
        run_selector("bids", SelectionContext(pool, artifacts={"attribution": AttributionMatrix(
            scores, [e.id for e in pool], columns, [])}), 3)


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


# ------------------------------------------------------------------------------------------------
# Issue 14: validation before any work, and one line instead of a traceback. One case per class of
# mistake; each asserts the whole error line, the exit status, and that nothing outside the
# command's own output (OUT) changed: every other file under the work folder is snapshotted (size,
# mtime, SHA-256) before and after, and no file appeared beside OUT.


@pytest.fixture(scope="module")
def work(tiny_lab, tmp_path_factory):
    """Inputs a user might hand the commands, good and bad, in one folder."""
    import shutil

    from transformers import AutoConfig, AutoModelForCausalLM

    from instruct_select.cli import main

    root = tmp_path_factory.mktemp("work")
    shutil.copy(tiny_lab.pool, root / "pool.jsonl")
    lines = (root / "pool.jsonl").read_text().splitlines(keepends=True)
    (root / "small.jsonl").write_text("".join(lines[:12]))
    shutil.copytree(tiny_lab.model("small"), root / "model")
    shutil.copytree(tiny_lab.test, root / "tests")
    (root / "readme").mkdir()
    (root / "readme" / "README.md").write_text("# my model\n")
    (root / "tok").mkdir()
    for f in (root / "model").iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, root / "tok" / f.name)
    # another base: same vocabulary, other widths
    config = AutoConfig.from_pretrained(root / "model")
    config.hidden_size, config.intermediate_size = 2 * config.hidden_size, 2 * config.intermediate_size
    AutoModelForCausalLM.from_config(config).save_pretrained(root / "other-base")
    for f in (root / "tok").iterdir():
        shutil.copy(f, root / "other-base" / f.name)
    assert main(["--quiet", "train", "--model", str(root / "model"), "--data", str(root / "small.jsonl"),
                 "--out", str(root / "trained"), "--device", "cpu", "epochs=1", "max_length=64",
                 "save_checkpoints=false", "lora.r=2", "lora.alpha=4", "lora.dropout=0.0", "learning_rate=1e-3",
                 "warmup_ratio=0.05", "batching=token_budget"]) == 0
    assert main(["--quiet", "select", "--pool", str(root / "small.jsonl"), "--budget", "3",
                 "--out", str(root / "selection")]) == 0
    (root / "val").mkdir()
    (root / "val" / "code.jsonl").write_text(_jsonl(*[_msg(id=f"c{i}") for i in range(3)]))
    (root / "val" / "math.jsonl").write_text(_jsonl(*[_msg(id=f"m{i}") for i in range(2)]))
    (root / "assistant-first.jsonl").write_text(_jsonl(_msg(id="ok"), _msg(id="greeting", messages=[
        {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}])))
    (root / "bad.jinja").write_text("{% for m in messages %}{{ m['content'] }}")
    (root / "notes.txt").write_text("my notes\n")
    (root / "ideal.yaml").write_text(f"kind: ideal\nmodel: {root / 'model'}\npool: {root / 'small.jsonl'}\n"
                                     f"reference: {root / 'val'}\nrun_dir: {root / 'outputs' / 'ideal'}\n"
                                     "layers: [gate_prj]\n")
    return root


def _config(work, out, **changes) -> list[str]:
    import yaml

    data = {"model": str(work / "model"), "pool": str(work / "pool.jsonl"), "validation": str(work / "val"),
            "run_dir": str(out), "methods": ["random"], "budgets": ["10"], "device": "cpu", "dtype": "float32",
            **changes}
    path = work / "configs" / f"{abs(hash(json.dumps(data, sort_keys=True)))}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return [str(path)]


APART = "a command never writes over or into its inputs: give {o} a path apart from them"
PLACEHOLDER_HINT = "(in the config, or pool=PATH after it on the command line)"
RUN_HINT = "`instruct-select run CONFIG` with {m} in its methods (finetune=false stops after selecting)"

# (name, the command line given the work folder W and the output OUT, the error after "error: ").
# Paths in messages are written as given: W/... below stands for the work folder.
CASES = [
    # validation before any work (run --dry-run and run itself, ideal --dry-run)
    ("budget larger than the pool", lambda w, o: ["run", *_config(w, o, budgets=["500"]), "--dry-run"],
     "budget 500 is larger than the pool (240 examples); ask for at most the pool size, or use the method full"),
    ("budget rounding to no example", lambda w, o: ["run", *_config(w, o, budgets=["0.1%"])],
     "budget 0.1% of the pool (240 examples) rounds to 0 examples; ask for at least 0.42% or a count such as 1"),
    ("unequal BIDS validation", lambda w, o: ["run", *_config(w, o, methods=["bids"]), "--dry-run"],
     "BIDS needs an equal number of validation examples per task, got {'code': 3, 'math': 2}; sample the "
     "validation sets to equal sizes (or set selection_options: {allow_unequal_validation: true} in the run config)"),
    ("run given a train output root", lambda w, o: ["run", *_config(w, o, model=str(w / "trained")), "--dry-run"],
     "model folder W/trained is the output folder of a training run; give its model folder: W/trained/model"),
    ("ideal recipe placeholders", lambda w, o: ["ideal", str(CONFIGS / "ideal_llama31_8b.yaml"), "--dry-run"],
     f"pool: data/ideal/pool.jsonl does not exist; give the path of the pool file or folder {PLACEHOLDER_HINT}"),
    # a model or tokenizer path that is not one, or not there
    ("model folder holding a README", lambda w, o: ["train", "--model", str(w / "readme"), "--data",
                                                     str(w / "small.jsonl"), "--out", str(o)],
     "--model folder W/readme holds README.md, not a saved model (no config.json); give the folder of a saved "
     "model (config.json and weights) or a hub id"),
    ("model folder holding a tokenizer", lambda w, o: ["train", "--model", str(w / "tok"), "--data",
                                                        str(w / "small.jsonl"), "--out", str(o)],
     "--model folder W/tok holds a tokenizer but no model (no config.json); give the folder of a saved model "
     "(config.json and weights) or a hub id"),
    ("train output root for a model", lambda w, o: ["evaluate", "--model", str(w / "trained"), "--tests",
                                                     str(w / "tests"), "--out", str(o)],
     "--model folder W/trained is the output folder of a training run; give its model folder: W/trained/model"),
    ("tokenizer path that is no tokenizer", lambda w, o: ["select", "--pool", str(w / "pool.jsonl"), "--budget",
                                                           "500tok", "--tokenizer", str(w / "readme"), "--out", str(o)],
     "--tokenizer folder W/readme holds README.md, not a tokenizer (none of tokenizer.json, tokenizer_config.json, "
     "tokenizer.model, vocab.json, spiece.model, vocab.txt); give the folder of a saved tokenizer or model, or a "
     "hub id"),
    ("mistyped local path", lambda w, o: ["train", "--model", "./modle", "--data", str(w / "small.jsonl"),
                                          "--out", str(o)],
     "--model folder ./modle does not exist; check the path (a hub id looks like org/name)"),
    # devices
    ("unknown device", lambda w, o: ["train", "--model", str(w / "model"), "--data", str(w / "small.jsonl"),
                                     "--out", str(o), "--device", "gpu"],
     "device 'gpu' is not a device; use cpu, cuda, cuda:N or auto"),
    ("CUDA on a CPU-only torch", lambda w, o: ["train", "--model", str(w / "model"), "--data", str(w / "small.jsonl"),
                                               "--out", str(o), "--device", "cuda"],
     "device 'cuda': this torch ({torch}) is a CPU-only build; use cpu (or install the torch build for your CUDA "
     "version)"),
    # an adapter over another base than its own
    ("adapter over the wrong base", lambda w, o: ["evaluate", "--model", str(w / "trained" / "model"), "--base",
                                                  str(w / "other-base"), "--tests", str(w / "tests"), "--out", str(o)],
     "adapter W/trained/model does not fit base model W/other-base (its weight shapes differ); it was trained on "
     "W/model: drop --base, or give --base W/model"),
    # data: an assistant-first conversation, refused at load time, the same wherever it is loaded
    ("assistant-first conversation (inspect)", lambda w, o: ["inspect", str(w / "assistant-first.jsonl")],
     "W/assistant-first.jsonl:2: the conversation starts with an assistant turn (message 1): it answers no prompt. "
     "Start with the user's turn (a greeting can go in a system message), or drop the record."),
    ("assistant-first conversation (train)", lambda w, o: ["train", "--model", str(w / "model"), "--data",
                                                            str(w / "assistant-first.jsonl"), "--out", str(o)],
     "W/assistant-first.jsonl:2: the conversation starts with an assistant turn (message 1): it answers no prompt. "
     "Start with the user's turn (a greeting can go in a system message), or drop the record."),
    # hints that name what exists
    ("score-needing method without scores", lambda w, o: ["select", "--pool", str(w / "pool.jsonl"), "--method",
                                                           "bids", "--out", str(o)],
     "--method bids needs influence scores ('attribution'): compute them with " + RUN_HINT.format(m="bids")
     + ", which writes RUN/influence/scores; then pass --scores RUN/influence/scores"),
    ("method whose need select cannot compute", lambda w, o: ["select", "--pool", str(w / "pool.jsonl"), "--method",
                                                               "rds", "--out", str(o)],
     "--method rds needs the 'hidden_states' artifact, which `select` cannot compute: select with "
     + RUN_HINT.format(m="rds")),
    ("export reads the pool with --id-field", lambda w, o: ["export", str(w / "selection"), "--pool",
                                                             str(w / "small.jsonl"), "--to", "jsonl", "--out",
                                                             str(o), "--id-field", "uid"],
     "W/small.jsonl:1: missing id field 'uid' (named by --id-field); the record has ['checker', 'defect', "
     "'duplicate_of', 'id', 'keys', 'level', 'messages', 'reference', 'style', 'subtask', 'task']."),
    # issue 23, one case per class. 1: no command destroys an input
    ("export over its own pool", lambda w, o: ["export", str(w / "selection"), "--pool", str(w / "small.jsonl"),
                                               "--to", "jsonl", "--out", str(w / "small.jsonl"), "--overwrite"],
     f"--out W/small.jsonl is the --pool W/small.jsonl; {APART.format(o='--out')}"),
    ("export into the folder holding its inputs", lambda w, o: ["export", str(w / "selection"), "--pool",
                                                                str(w / "small.jsonl"), "--to", "hf", "--out",
                                                                str(w), "--overwrite"],
     f"--out W holds the selection folder W/selection; {APART.format(o='--out')}"),
    ("train into its model's folder", lambda w, o: ["train", "--model", str(w / "model"), "--data",
                                                     str(w / "small.jsonl"), "--out", str(w / "model" / "tuned")],
     f"--out W/model/tuned lies inside the --model W/model; {APART.format(o='--out')}"),
    # 2: refused before the stage starts (nothing left to block the corrected command)
    ("select budget larger than the pool", lambda w, o: ["select", "--pool", str(w / "small.jsonl"), "--budget",
                                                          "5000", "--out", str(o), "--restart"],
     "budget 5000 is larger than the pool (12 examples); ask for at most the pool size, or use the method full"),
    # 4: values that cannot train
    ("infinite learning rate", lambda w, o: ["train", "--model", str(w / "model"), "--data", str(w / "small.jsonl"),
                                             "--out", str(o), "learning_rate=.inf"],
     "learning_rate must be a finite number, got inf"),
    ("negative weight decay", lambda w, o: ["run", *_config(w, o, train={"weight_decay": -0.1}), "--dry-run"],
     "weight_decay must be >= 0, got -0.1"),
    # 5: --dry-run catches what a config gets wrong
    ("selection_options a list", lambda w, o: ["run", *_config(w, o, selection_options=["less_groups"]), "--dry-run"],
     "selection_options must be a mapping (key: value), got ['less_groups']"),
    ("unknown selection option", lambda w, o: ["run", *_config(w, o, selection_options={"group": "task"}),
                                               "--dry-run"],
     "unknown selection option 'group'; known: {options}"),
    ("a bool for a count", lambda w, o: ["run", *_config(w, o, selection_options={"uot_max_iter": True}),
                                         "--dry-run"],
     "selection_options.uot_max_iter must be int, got True"),
    ("zero clusters", lambda w, o: ["run", *_config(w, o, learning_percentage={"clusters": 0}), "--dry-run"],
     "learning_percentage.clusters must be >= 1 (or null for the paper's rule), got 0"),
    ("empty train section", lambda w, o: ["run", *_config(w, o, train=None), "--dry-run"],
     "train is empty; give its settings as a mapping (or leave it out for the defaults)"),
    ("binary file as the config", lambda w, o: ["run", str(w / "model" / "model.safetensors"), "--dry-run"],
     "W/model/model.safetensors: not a YAML text file (its bytes are not UTF-8 text); give a YAML config such as "
     "configs/lab.yaml"),
    ("run_dir a file", lambda w, o: ["run", *_config(w, o, run_dir=str(w / "notes.txt")), "--dry-run"],
     "run_dir W/notes.txt is a file, and the command writes a folder there; give a folder path (or move the file "
     "away)"),
    ("unknown checker", lambda w, o: ["run", *_config(w, o, tests=str(w / "tests"), eval={"default_checker": "fuzzy"}),
                                      "--dry-run"],
     "{unknown checker 'fuzzy'}"),
    ("IDEAL layers matching no module", lambda w, o: ["ideal", str(w / "ideal.yaml"), "--dry-run"],
     "layers ['gate_prj'] match no linear layer of this model; its linear layers are named ['down_proj', "
     "'gate_proj', 'k_proj', 'lm_head', 'o_proj', 'q_proj', 'up_proj', 'v_proj'] (e.g. model.layers.0.self_attn.q_proj)"),
    # 6: the file system's answers
    ("a file where the output folder goes", lambda w, o: ["select", "--pool", str(w / "small.jsonl"), "--out",
                                                           str(w / "notes.txt")],
     "--out W/notes.txt is a file, and the command writes a folder there; give a folder path (or move the file away)"),
    # 7: paths and flags mean what they say
    ("chat template Jinja cannot parse", lambda w, o: ["train", "--model", str(w / "model"), "--data",
                                                        str(w / "small.jsonl"), "--out", str(o), "--chat-template",
                                                        str(w / "bad.jinja")],
     "--chat-template W/bad.jinja: line 1 Jinja cannot parse it (Unexpected end of template. Jinja was looking for "
     "the following tags: 'endfor' or 'else'. The innermost block that needs to be closed is 'for'.); fix the "
     "template"),
    ("merge on a missing path", lambda w, o: ["merge", str(w / "features")],
     "W/features does not exist; give the features folder of a run (RUN/influence/features)"),
    ("merge on a data file", lambda w, o: ["merge", str(w / "small.jsonl")],
     "W/small.jsonl is a file; give the features folder of a run (RUN/influence/features), whose checkpoint "
     "folders hold the shards"),
    ("stop after a stage the run lacks", lambda w, o: ["run", *_config(w, o), "--stop-after", "features"],
     "--stop-after features: methods ['random'] have no features stage (only the influence methods and rds do); "
     "drop --stop-after"),
    ("train on a selection folder as data", lambda w, o: ["train", "--model", str(w / "model"), "--data",
                                                           str(w / "selection"), "--out", str(o)],
     "--data W/selection is a selection folder; train on a selection with --data POOL --selection W/selection (the "
     "pool the selection was made from)"),
]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Whether an adapter fits a base shows only once it is loaded onto it, inside the evaluate stage.
LOADED_TO_TELL = {"adapter over the wrong base"}


def _files(root: Path, skip: Path) -> dict[str, tuple]:
    """Every file under ``root`` but those under ``skip``: (size, mtime, SHA-256)."""
    import hashlib

    found = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and not f.is_relative_to(skip):
            st = f.stat()
            found[str(f)] = (st.st_size, st.st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
    return found


@pytest.mark.parametrize("name,command,message", CASES, ids=[c[0] for c in CASES])
def test_mistake_is_one_line_before_any_work(work, tmp_path, monkeypatch, name, command, message):
    import torch

    if name == "CUDA on a CPU-only torch" and torch.version.cuda is not None:
        pytest.skip(f"this torch ({torch.__version__}) has CUDA: the CPU-only refusal cannot happen here")
    monkeypatch.chdir(tmp_path)  # relative paths (./modle, a recipe's data/...) resolve here, not in the repo
    out = work / "outputs" / name.replace(" ", "-")
    args = command(work, out)
    before = _files(work, out) | _files(tmp_path, out)
    result = _cli(*args, cwd=tmp_path)
    from instruct_select.config import SELECTION_OPTIONS
    from instruct_select.evaluate.checkers import get_checker

    try:
        get_checker("fuzzy")
    except InstructSelectError as err:
        unknown_checker = str(err)  # evaluation's own message, whatever checkers exist
    expected = (message.replace("W/", f"{work}/").replace("W ", f"{work} ").replace("{torch}", torch.__version__)
                .replace("{options}", ", ".join(SELECTION_OPTIONS))
                .replace("{unknown checker 'fuzzy'}", unknown_checker))
    assert (result.returncode, _error_lines(result.stderr)) == (2, f"error: {expected}\n")
    assert _files(work, out) | _files(tmp_path, out) == before  # nothing outside OUT changed or appeared
    if name in LOADED_TO_TELL:
        assert not (out / "manifest.json").exists()  # no stage ran to its end
    else:
        assert not out.exists()  # refused before any stage began


def test_read_only_out_is_one_line(work, tmp_path):
    """--out where the user may not write: a read-only folder (or, for root, /sys, which root cannot
    write either); the line names the path and the system's reason."""
    import os

    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    out = read_only / "out"
    try:
        os.mkdir(out)  # root writes anywhere a mode allows nothing
    except PermissionError as err:
        reason = err.strerror
    else:
        os.rmdir(out)
        out = Path("/sys/instruct-select-out")
        try:
            os.mkdir(out)
        except OSError as err:
            reason = err.strerror
        else:
            os.rmdir(out)
            pytest.skip("no folder here refuses writes")
    before = _files(work, tmp_path / "nothing") | _files(tmp_path, tmp_path / "nothing")
    result = _cli("select", "--pool", str(work / "pool.jsonl"), "--budget", "10", "--out", str(out), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, f"error: {out}: {reason}; give an output folder you can write "
                                                     "to (or fix that path's permissions)\n")
    assert _files(work, tmp_path / "nothing") | _files(tmp_path, tmp_path / "nothing") == before


def test_a_refused_model_leaves_nothing_that_blocks_the_corrected_rerun(work, tmp_path):
    """Checks come before a stage starts: rerunning with the model fixed goes ahead (no 'started with
    other settings' refusal)."""
    out = tmp_path / "sel"
    assert _cli("select", "--pool", str(work / "small.jsonl"), "--budget", "500tok", "--tokenizer",
                str(work / "readme"), "--out", str(out), cwd=tmp_path).returncode == 2
    assert not out.exists()
    result = _cli("select", "--pool", str(work / "small.jsonl"), "--budget", "500tok", "--tokenizer",
                  str(work / "model"), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------------
# Issue 23: the classes whose case needs a setup (a held folder, a full disk, an unreadable file, a
# training run). Each asserts the one line, the exit status, and that nothing outside OUT changed.


def _one_line_and_nothing_else(work, tmp_path, out, args, expected, setup_changes=()):
    before = _files(work, out) | _files(tmp_path, out)
    result = _cli(*args, cwd=tmp_path)
    assert (result.returncode, result.stderr.splitlines()[-1:]) == (2, [f"error: {expected}"]), result.stderr
    assert [line for line in result.stderr.splitlines() if not line.startswith("warning: ")] == [f"error: {expected}"]
    assert _files(work, out) | _files(tmp_path, out) == before
    return result


def test_a_folder_held_by_a_live_job_is_one_line_naming_it(work, tmp_path):
    import os
    import socket

    from instruct_select.artifacts import stage_lock

    out = tmp_path / "sel"
    with stage_lock(out):
        _one_line_and_nothing_else(
            work, tmp_path, out, ["select", "--pool", str(work / "small.jsonl"), "--budget", "3", "--out", str(out)],
            f"{out} is in use by another job (pid {os.getpid()} on {socket.gethostname()}); one job writes a folder "
            "at a time: wait for that job to end (or stop it), or give another output folder")
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the live job's folder was not touched


def test_a_full_disk_is_one_line_and_leaves_no_half_selection(work, tmp_path, monkeypatch):
    import errno

    from instruct_select.data import writing

    out = tmp_path / "sel"
    real = writing._write_jsonl

    def full(rows, path):
        path.write_text("{\"half\": ")  # what a full disk leaves of the temporary file
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(writing, "_write_jsonl", full)
    before = _files(work, out)
    result = _cli("select", "--pool", str(work / "small.jsonl"), "--budget", "3", "--out", str(out), cwd=tmp_path)
    error = _error_lines(result.stderr)
    assert result.returncode == 2 and len(error.splitlines()) == 1, result.stderr
    assert error.startswith(f"error: {out}/.selected.jsonl.") and error.endswith(
        ": no space left on the device; free some space (or give an output folder on another disk) and rerun the "
        "same command: finished stages are kept and nothing was left half-written\n")
    assert _files(work, out) == before
    assert sorted(p.name for p in out.iterdir()) == [".lock", "started.json"]  # no selection.tsv, no temporary
    monkeypatch.setattr(writing, "_write_jsonl", real)
    result = _cli("select", "--pool", str(work / "small.jsonl"), "--budget", "3", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # the same command, rerun, finishes the stage
    assert {"selected.jsonl", "selection.tsv", "manifest.json"} <= {p.name for p in out.iterdir()}


def test_an_unreadable_input_is_one_line_that_says_so(work, tmp_path, monkeypatch):
    """Root reads every file whatever its mode, so the refusal the system gives is played here."""
    import errno
    from pathlib import Path as P

    pool = tmp_path / "pool.jsonl"
    pool.write_bytes((work / "small.jsonl").read_bytes())
    real = P.read_bytes

    def refuse(self):
        if self == pool:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    out = tmp_path / "sel"
    before = _files(work, out) | _files(tmp_path, out)
    with monkeypatch.context() as patched:
        patched.setattr(P, "read_bytes", refuse)
        result = _cli("select", "--pool", str(pool), "--budget", "3", "--out", str(out), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2, f"error: {pool}: cannot be read (Permission denied); make it readable (chmod) or give another input\n")
    assert _files(work, out) | _files(tmp_path, out) == before and not out.exists()


def test_training_that_diverges_stops_naming_the_step_and_writes_no_model(work, tmp_path):
    import re

    out = tmp_path / "t"
    before = _files(work, out)
    result = _cli("train", "--model", str(work / "model"), "--data", str(work / "small.jsonl"), "--out", str(out),
                  "--device", "cpu", "learning_rate=1e9", "epochs=2", "batching=token_budget", "max_batch_size=4",
                  "max_length=64", "lora.r=2", "lora.alpha=4", cwd=tmp_path)
    warning, *stage_lines, error = result.stderr.splitlines()
    assert result.returncode == 2 and all(line.startswith("[") for line in stage_lines), result.stderr
    assert warning == ("warning: learning_rate 1e+09 is far outside the usual range [1e-07, 0.1] (LESS, BIDS: 2e-5); "
                       "training will likely diverge or not move")
    assert re.fullmatch(r"error: training diverged at step \d+ \(epoch \d\): (the loss is nan|the loss is inf|a weight "
                        r"became NaN or infinite); no model was written\. Lower learning_rate \(now 1e\+09; LESS, "
                        r"BIDS: 2e-5\) or check the data and the dtype, then rerun", error), error
    assert not out.exists()  # nothing written as a model, and no marker to block the corrected command
    assert _files(work, out) == before


def test_export_overwrite_replaces_only_an_earlier_export(work, tmp_path):
    selection, pool = str(work / "selection"), str(work / "small.jsonl")
    out = tmp_path / "hf"
    assert _cli("export", selection, "--pool", pool, "--to", "hf", "--out", str(out), cwd=tmp_path).returncode == 0
    assert _cli("export", selection, "--pool", pool, "--to", "hf", "--out", str(out), "--overwrite",
                cwd=tmp_path).returncode == 0
    (out / "notes.txt").write_text("mine")
    _one_line_and_nothing_else(
        work, tmp_path, tmp_path / "nothing", ["export", selection, "--pool", pool, "--to", "hf", "--out", str(out),
                                               "--overwrite"],
        f"--out {out} holds files an earlier export did not write (notes.txt); --overwrite replaces only what export "
        "wrote: move them away, or choose a new path")
    mine = tmp_path / "mine.jsonl"
    mine.write_text("my own file\n")
    _one_line_and_nothing_else(
        work, tmp_path, tmp_path / "nothing", ["export", selection, "--pool", pool, "--to", "jsonl", "--out",
                                               str(mine), "--overwrite"],
        f"--out {mine} was not written by `export --to jsonl` (no .mine.jsonl.export.json records it); --overwrite "
        "replaces only an earlier export: choose a new path, or move it away")


def test_refused_then_corrected_commands_go_ahead(work, tmp_path):
    """A refusal found before the stage (a budget) or inside it (LoRA modules the model lacks) leaves
    nothing that refuses the corrected command; --restart is accepted after the subcommand."""
    out = tmp_path / "sel"
    assert _cli("select", "--pool", str(work / "small.jsonl"), "--budget", "5000", "--out", str(out),
                cwd=tmp_path).returncode == 2
    assert _cli("select", "--pool", str(work / "small.jsonl"), "--budget", "5", "--out", str(out), "--restart",
                cwd=tmp_path).returncode == 0
    train = ["train", "--model", str(work / "model"), "--data", str(work / "small.jsonl"), "--out",
             str(tmp_path / "t"), "--device", "cpu", "epochs=1", "max_length=64", "save_checkpoints=false",
             "lora.r=2", "lora.alpha=4", "batching=token_budget"]
    result = _cli(*train, "lora.target_modules=[qq_proj]", cwd=tmp_path)
    assert result.returncode == 2 and "qq_proj" in result.stderr and not (tmp_path / "t").exists()
    result = _cli(*train, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_run_config_given_a_path_says_to_load_it():
    from instruct_select.run.pipeline import run_config

    with pytest.raises(TypeError, match=r"call run_config\(load_config\(path\)\)"):
        run_config("configs/lab.yaml")
