"""The one in-memory form of an instruction example: ``Example(id, task, messages)``.

Every input format is converted to this; every stage after loading sees only this. Examples are
keyed by ``id``, never by position, so a selection survives shuffling, sharding and
re-tokenisation.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Example:
    """One instruction example.

    id:       stable identifier (given in the input, or a hash of the content).
    task:     task / domain / capability label, or None when the input has none.
    messages: list of {"role": "system"|"user"|"assistant", "content": str}; at least one
              assistant turn.
    subtask:  finer label inside ``task`` (e.g. a benchmark's subtask), or None.
    record:   the original input record, kept so that a selection can be written back in the
              input's own format.
    """

    id: str
    task: str | None
    messages: list[dict[str, str]]
    subtask: str | None = None
    record: dict[str, Any] | None = field(default=None, compare=False, repr=False)


def content_id(messages: list[dict[str, str]], task: str | None = None) -> str:
    """A stable id from the content: the first 16 hex digits of a SHA-1 of canonical JSON."""
    payload = json.dumps({"task": task, "messages": messages}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]
