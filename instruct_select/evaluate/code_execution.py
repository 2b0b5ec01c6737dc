"""HumanEval pass@1: run a model's completion against the problem's unit tests, sandboxed.

Each HumanEval problem gives a function signature with its docstring (``prompt``), the name of the
function (``entry_point``) and a ``check(candidate)`` test function (``test``). The model answers
a chat prompt; its code is the first fenced code block of the answer (or the whole answer when it
has none). A completion that defines the function is run after the prompt (its definition wins); a
completion that only continues the body is appended to the prompt, as HumanEval's own harness does.
With greedy decoding there is one sample per problem, so pass@1 is the share of problems solved.

Each program runs in its own Python process (``python -I``: no user site, no environment
variables), in a fresh temporary folder it may write to and that is removed afterwards, with a
wall-clock timeout after which its whole process group is killed, limits on memory and CPU time,
and the network switched off inside the process (the ``socket`` module's constructors raise) —
the guard against a program reaching out by accident, not a security boundary against a hostile
one: run untrusted models' code in a container.
"""
from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from instruct_select.errors import InputError

TIMEOUT_S = 10.0
MEMORY_BYTES = 2 * 1024 ** 3
_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
# Runs first in every program: no sockets (so no network), whatever the program imports later.
_NO_NETWORK = """import socket as _socket
def _no_network(*args, **kwargs):
    raise OSError("network access is disabled while running generated code")
_socket.socket = _socket.create_connection = _socket.socketpair = _no_network
del _socket
"""


@dataclass(frozen=True)
class ExecutionResult:
    passed: bool
    status: str  # "passed", "failed", "timeout"
    detail: str = ""  # the last lines of stderr, for a failure


def extract_code(response: str) -> str:
    """The first fenced code block of a chat answer, else the answer itself."""
    match = _FENCE.search(response)
    return match.group(1) if match else response


def build_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The program HumanEval runs: the prompt with the completion, the tests, then ``check(entry_point)``."""
    code = extract_code(completion)
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, flags=re.MULTILINE):
        body = f"{prompt}\n    pass\n\n{code}"  # the prompt's imports and helpers, then the model's function
    else:
        body = prompt + code
    return f"{_NO_NETWORK}\n{body}\n\n{test}\n\ncheck({entry_point})\n"


def _limits() -> None:  # pragma: no cover - runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    cpu = int(TIMEOUT_S) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))


def run_program(program: str, timeout_s: float = TIMEOUT_S) -> ExecutionResult:
    """Run ``program`` in a child Python in a temporary folder; passed when it exits with 0."""
    with tempfile.TemporaryDirectory(prefix="humaneval-") as folder:
        path = Path(folder) / "program.py"
        path.write_text(program, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", ""), "HOME": folder, "TMPDIR": folder, "PYTHONHASHSEED": "0",
               "no_proxy": "*", "NO_PROXY": "*"}
        child = subprocess.Popen([sys.executable, "-I", str(path)], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                 preexec_fn=_limits if os.name == "posix" else None)
        try:
            _, stderr = child.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the whole group: a program's own children too
            child.communicate()
            return ExecutionResult(False, "timeout", f"killed after {timeout_s:g} s")
    if child.returncode == 0:
        return ExecutionResult(True, "passed")
    tail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
    return ExecutionResult(False, "failed", "\n".join(tail))


def check_problem(record: dict, where: str) -> None:
    """A HumanEval record must carry what running it needs."""
    missing = [key for key in ("prompt", "test", "entry_point") if not isinstance(record.get(key), str)]
    if missing:
        raise InputError(f"{where}: a humaneval record needs string fields {missing}")


def passes(record: dict, completion: str, timeout_s: float = TIMEOUT_S) -> ExecutionResult:
    """Run the model's ``completion`` against ``record``'s tests."""
    program = build_program(record["prompt"], completion, record["test"], record["entry_point"])
    return run_program(program, timeout_s)
