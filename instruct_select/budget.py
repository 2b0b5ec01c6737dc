"""Budgets: how much of the pool to keep, as a fraction, a count, or a token total.

``Budget.parse`` reads what a user types: ``15%`` or ``0.15`` (fraction), ``500`` (count),
``200000tok`` (tokens). A fraction rounds to the nearest count; one that rounds to no example is
refused, as is a count larger than the pool (``check_fits``: ``run`` checks it before any work). A token budget walks
a selector's ranking and keeps every example while the running total stays within the budget,
stopping at the first that would pass it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Budget:
    kind: str  # "fraction" | "count" | "tokens"
    value: float

    @classmethod
    def parse(cls, text: str | int | float) -> "Budget":
        raw = str(text).strip().lower().replace("_", "")
        try:
            if raw.endswith("%"):
                return cls._checked("fraction", float(raw[:-1]) / 100, text)
            if raw.endswith(("tok", "tokens")):
                return cls._checked("tokens", float(raw.rstrip("tokens").rstrip("tok")), text)
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError(raw)
        except ValueError:
            raise ConfigError(
                f"budget {text!r} is not understood; write a fraction (15% or 0.15), a count (500) "
                "or a token total (200000tok)"
            ) from None
        if number < 1 or (number == 1 and "." in raw):
            return cls._checked("fraction", number, text)
        if number != int(number):
            raise ConfigError(f"budget {text!r}: a count must be a whole number")
        return cls._checked("count", number, text)

    @classmethod
    def _checked(cls, kind: str, value: float, text) -> "Budget":
        if not math.isfinite(value):
            raise ConfigError(f"budget {text!r} is not a finite number; write a fraction (15% or 0.15), a count "
                              "(500) or a token total (200000tok)")
        if value <= 0 or (kind == "fraction" and value > 1):
            raise ConfigError(f"budget {text!r} must be positive (and at most 100% as a fraction)")
        return cls(kind, value)

    def __str__(self) -> str:
        if self.kind == "fraction":
            return f"{self.value * 100:g}%"
        return f"{int(self.value)}{'tok' if self.kind == 'tokens' else ''}"

    def check_fits(self, pool_size: int) -> None:
        """Refuse a count larger than the pool, or a fraction that rounds to no example of it
        (a token budget is checked against the examples' token counts, in ``max_count``)."""
        if self.kind == "count" and int(self.value) > pool_size:
            raise ConfigError(f"budget {self} is larger than the pool ({pool_size} examples); "
                              "ask for at most the pool size, or use the method full")
        if self.kind == "fraction" and round(self.value * pool_size) < 1:
            raise ConfigError(f"budget {self} of the pool ({pool_size} examples) rounds to 0 examples; "
                              f"ask for at least {100 / pool_size:.2g}% or a count such as 1")

    def max_count(self, pool_size: int, token_lengths: list[int] | None = None) -> int:
        """The number of examples this budget can hold at most (exact for fraction and count)."""
        if self.kind != "tokens":
            self.check_fits(pool_size)
            return round(self.value * pool_size) if self.kind == "fraction" else int(self.value)
        if token_lengths is None:
            raise ConfigError("a token budget needs the examples' token counts")
        total, count = 0, 0
        for n in sorted(token_lengths):
            if total + n > self.value:
                break
            total, count = total + n, count + 1
        if count == 0:
            raise ConfigError(f"budget {self} is smaller than the shortest example ({min(token_lengths)} tokens)")
        return count

    def take(self, ranked_ids: list[str], pool_size: int, token_length: dict[str, int] | None = None) -> list[str]:
        """The prefix of a ranking that this budget keeps."""
        if self.kind != "tokens":
            return ranked_ids[: self.max_count(pool_size)]
        assert token_length is not None
        kept, total = [], 0
        for id_ in ranked_ids:
            if total + token_length[id_] > self.value:
                break
            kept.append(id_)
            total += token_length[id_]
        return kept
