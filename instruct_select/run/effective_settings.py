"""The settings a config really runs with, each marked where it comes from a built-in default.

The built-in defaults are the papers' recipe (LESS/BIDS: 128 examples a step, LoRA r=128 /
alpha=512 / dropout 0.1 on q/k/v/o, lr 2e-5, 4 warmup epochs, k=8192), so a config that leaves a
setting out runs it the papers' way. ``run --dry-run`` prints this list, so that nobody has to
guess which values a config states and which it inherits.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

DEFAULT_MARK = "(default)"


def effective_settings(settings: Any, given: dict | None, prefix: str = "") -> list[tuple[str, Any, bool]]:
    """``(dotted name, value, from_default)`` for every leaf setting of the dataclass ``settings``.

    ``given`` is the mapping ``settings`` was built from (YAML plus key=value overrides): a name
    absent from it took its value from a default. A nested section left out entirely is default
    throughout; a section given as null (e.g. ``learning_percentage.selection_train``) is one leaf.
    """
    given = given if isinstance(given, dict) else {}
    rows: list[tuple[str, Any, bool]] = []
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        name = prefix + field.name
        stated = field.name in given
        if dataclasses.is_dataclass(value):
            nested = effective_settings(value, given.get(field.name), name + ".")
            rows.extend((n, v, d or not stated) for n, v, d in nested)
        else:
            rows.append((name, value, not stated))
    return rows


def describe_effective_settings(settings: Any, given: dict | None) -> str:
    """The effective settings as aligned ``name  value`` lines, defaults marked ``(default)``."""
    rows = effective_settings(settings, given)
    width = max(len(name) for name, _, _ in rows)
    defaults = sum(1 for _, _, d in rows if d)
    lines = [f"effective settings ({defaults} of {len(rows)} from built-in defaults, marked {DEFAULT_MARK}; "
             "the defaults are the LESS/BIDS papers' recipe):"]
    for name, value, default in rows:
        shown = json.dumps(value, default=str)
        lines.append(f"  {name:<{width}}  {shown}" + (f"  {DEFAULT_MARK}" if default else ""))
    return "\n".join(lines)
