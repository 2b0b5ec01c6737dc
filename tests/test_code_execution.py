"""HumanEval pass@1's sandboxed runner: a solution that passes, one that fails, one that loops
forever and is killed, one that tries the network, and the canonical solutions of real problems."""
from __future__ import annotations

import json
import time

import pytest

from instruct_select.errors import InputError
from instruct_select.evaluate.code_execution import build_program, check_problem, extract_code, passes
from tests.conftest import SHARED

PROBLEM = {
    "prompt": 'def add(a, b):\n    """Return a + b."""\n',
    "entry_point": "add",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
}


def test_a_correct_solution_passes():
    assert passes(PROBLEM, "    return a + b\n").status == "passed"
    # A chat answer with the whole function in a fenced block.
    assert passes(PROBLEM, "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```\nDone.").passed


def test_a_wrong_solution_fails():
    result = passes(PROBLEM, "    return a - b\n")
    assert result.status == "failed" and "AssertionError" in result.detail
    assert passes(PROBLEM, "    return a +\n").status == "failed"  # a syntax error


def test_an_endless_loop_is_killed():
    start = time.monotonic()
    result = passes(PROBLEM, "    while True:\n        pass\n", timeout_s=1.0)
    assert result.status == "timeout" and not result.passed
    assert time.monotonic() - start < 5


def test_network_is_off_and_the_folder_is_temporary(tmp_path):
    reach = "    import socket\n    socket.create_connection(('example.com', 80))\n    return a + b\n"
    assert passes(PROBLEM, reach).status == "failed"
    write = f"    open('left.txt', 'w').write('x')\n    import os\n    assert os.getcwd() != {str(tmp_path)!r}\n" \
            "    return a + b\n"
    assert passes(PROBLEM, write).passed


def test_extract_code_and_program():
    assert extract_code("text\n```py\nx = 1\n```\nmore") == "x = 1\n"
    assert extract_code("    return 1") == "    return 1"
    program = build_program(PROBLEM["prompt"], "    return a + b\n", PROBLEM["test"], "add")
    assert program.rstrip().endswith("check(add)")


def test_records_lacking_fields_are_refused():
    with pytest.raises(InputError, match="entry_point"):
        check_problem({"prompt": "x", "test": "y"}, "tests/code.jsonl line 3")


def test_canonical_solutions_pass():
    path = SHARED / "data" / "real" / "humaneval.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    records = [json.loads(line) for line in path.read_text().splitlines()[:5]]
    for record in records:
        assert passes(record, record["canonical_solution"]).passed, record["task_id"]
        assert not passes(record, "    return None\n").passed, record["task_id"]
