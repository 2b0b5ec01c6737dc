"""The command line: help that explains itself, user errors without tracebacks, API parity."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import instruct_select
from instruct_select.cli import main


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "instruct_select", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_every_subcommand():
    out = _run("--help")
    assert out.returncode == 0
    for command in ("demo", "lab", "select", "train", "evaluate", "inspect", "methods"):
        assert command in out.stdout
    for command in ("demo", "select", "train", "evaluate", "inspect", "methods"):
        sub = _run(command, "--help")
        assert sub.returncode == 0 and "usage:" in sub.stdout and len(sub.stdout) > 150


def test_user_error_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "pool.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{not json\n')
    out = _run("select", "--pool", str(bad), "--method", "random", "--budget", "1", "--out", str(tmp_path / "s"))
    assert out.returncode == 2
    error = "".join(line for line in out.stderr.splitlines(keepends=True) if not line.startswith("["))  # stage lines
    assert "Traceback" not in out.stderr and error.startswith("error: ") and len(error.splitlines()) == 1
    assert "pool.jsonl" in out.stderr and ":1" in out.stderr or ":2" in out.stderr


def test_unknown_method_and_bad_budget(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"x{i}", "messages": [{"role": "user", "content": str(i)},
                                                                   {"role": "assistant", "content": "y"}]}) + "\n"
                            for i in range(10)))
    assert main(["select", "--pool", str(pool), "--method", "nope", "--out", str(tmp_path / "a")]) == 2
    assert main(["select", "--pool", str(pool), "--budget", "lots", "--out", str(tmp_path / "b")]) == 2
    assert main(["select", "--pool", str(pool), "--budget", "11", "--out", str(tmp_path / "c")]) == 2


def test_cli_select_matches_python_api(tmp_path):
    pool = tmp_path / "pool.jsonl"
    rows = [{"id": f"x{i}", "task": "t", "messages": [{"role": "user", "content": str(i)},
                                                     {"role": "assistant", "content": "y"}]} for i in range(20)]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["--quiet", "select", "--pool", str(pool), "--budget", "25%", "--seed", "4", "--out", str(tmp_path / "cli")]) == 0
    from instruct_select.run.context import RunContext
    from instruct_select.run.stages import select_stage

    context = RunContext.create(pool=pool)
    api = select_stage(context, "random", "25%", tmp_path / "api", seed=4)
    cli_tsv = (tmp_path / "cli" / "selection.tsv").read_text()
    assert cli_tsv == (api.path / "selection.tsv").read_text() and len(cli_tsv.splitlines()) == 6
    selected = [json.loads(line) for line in (tmp_path / "cli" / "selected.jsonl").read_text().splitlines()]
    assert [r["id"] for r in selected] == [line.split("\t")[1] for line in cli_tsv.splitlines()[1:]]
    assert all(r in rows for r in selected)  # the input's own records, untouched
    # Same place, other settings: refused, naming the setting.
    assert main(["select", "--pool", str(pool), "--budget", "50%", "--seed", "4", "--out", str(tmp_path / "cli")]) == 2


def test_methods_are_listed(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("random", "less", "bids", "instance-max", "sum", "normalized", "task-balanced", "rds", "full",
                 "lp-hard", "lp-easy", "lp-random"):
        assert name in out


def test_exports_resolve():
    for name in instruct_select.__all__:
        assert getattr(instruct_select, name) is not None
    with pytest.raises(AttributeError):
        instruct_select.nothing_here


def test_every_data_hint_names_a_flag_of_the_commands_that_load_a_pool():
    """The loader's hints say --format, --columns, --id-field and --skip-invalid: each command that
    loads a pool must take them; run and ideal take their YAML as an argument, not --config."""
    from instruct_select.cli import build_parser

    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices
    for command in ("inspect", "select", "train", "export"):
        flags = {flag for action in choices[command]._actions for flag in action.option_strings}
        assert {"--format", "--columns", "--id-field", "--skip-invalid"} <= flags, command
    for command in ("run", "ideal"):
        assert "--config" not in choices[command].format_help()


def test_select_reads_a_pool_through_columns_id_field_and_skip_invalid(tmp_path, capsys):
    pool = tmp_path / "pool.jsonl"
    rows = [{"uid": f"u{i}", "q": f"question {i}", "a": f"answer {i}"} for i in range(6)]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    out = tmp_path / "sel"
    assert main(["--quiet", "select", "--pool", str(pool), "--budget", "3", "--out", str(out),
                 "--columns", "prompt=q,response=a", "--id-field", "uid", "--skip-invalid"]) == 0
    selected = [json.loads(line) for line in (out / "selected.jsonl").read_text().splitlines()]
    assert len(selected) == 3 and all(r in rows for r in selected)  # the user's own fields, untouched
    ids = [line.split("\t")[1] for line in (out / "selection.tsv").read_text().splitlines()[1:]]
    assert ids == [r["uid"] for r in selected]
    # without --skip-invalid the broken line stops it, and the hint names the flag just used
    assert main(["select", "--pool", str(pool), "--out", str(tmp_path / "s2"), "--columns", "prompt=q,response=a"]) == 2
    assert "pool.jsonl:7: malformed JSON" in capsys.readouterr().err

    # export reads the pool the same way, so the selection's ids are found in it
    hf = tmp_path / "hf"
    assert main(["--quiet", "export", str(out), "--pool", str(pool), "--to", "hf", "--out", str(hf),
                 "--columns", "prompt=q,response=a", "--id-field", "uid", "--skip-invalid"]) == 0
    from datasets import load_from_disk

    assert load_from_disk(str(hf))["id"] == ids


def test_debug_shows_the_traceback_of_a_user_error_and_a_bug_always_shows_one(tmp_path, capsys, monkeypatch):
    missing = str(tmp_path / "absent.jsonl")
    assert main(["inspect", missing]) == 2
    plain = capsys.readouterr().err
    assert "Traceback" not in plain and plain.count("\n") == 1
    assert main(["--debug", "inspect", missing]) == 2
    debug = capsys.readouterr().err
    assert "Traceback" in debug and debug.endswith(plain)  # the same one line, after the traceback

    import instruct_select.cli as cli
    import instruct_select.commands.stages as stages

    def bug(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(stages, "cmd_inspect", bug)
    with pytest.raises(RuntimeError, match="a bug"):  # not turned into a user error: its traceback shows
        main(["inspect", missing])
    # an OSError other than a permission one (a read-only --out) is a bug too, and keeps its traceback
    assert cli._user_error(FileNotFoundError(2, "No such file or directory", "x")) is None
    assert cli._user_error(PermissionError(13, "Permission denied", "out")) is not None


def test_file_system_answers_are_one_line():
    """A full disk (an OSError, or a Rust writer's message such as safetensors'), a file where a folder
    goes: the user's line; anything else stays a bug with its traceback."""
    import errno

    from instruct_select.cli import _user_error

    full = _user_error(OSError(errno.ENOSPC, "No space left on device", "/out/selection.tsv"))
    assert full.startswith("/out/selection.tsv: no space left on the device; free some space")
    rust = _user_error(RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"))
    assert rust.startswith("no space left on the device") or "no space left on the device" in rust
    assert _user_error(FileExistsError(errno.EEXIST, "File exists", "/out")) == (
        "/out: File exists: a file is where a folder must go; give another output path (or move that file away)")
    assert _user_error(RuntimeError("shape mismatch")) is None
    assert _user_error(OSError(errno.EIO, "Input/output error", "/x")) is None
