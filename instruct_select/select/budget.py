"""Budgets: how much of the pool to keep, as a fraction, a count, or a token total.

``Budget.parse`` reads what a user types: ``15%`` or ``0.15`` (fraction), ``500`` (count),
``200000tok`` (tokens). A fraction rounds to the nearest count (at least 1). A token budget walks
a selector's ranking and keeps every example while the running total stays within the budget,
stopping at the first that would pass it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


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
        if value <= 0 or (kind == "fraction" and value > 1):
            raise ConfigError(f"budget {text!r} must be positive (and at most 100% as a fraction)")
        return cls(kind, value)

    def __str__(self) -> str:
        if self.kind == "fraction":
            return f"{self.value * 100:g}%"
        return f"{int(self.value)}{'tok' if self.kind == 'tokens' else ''}"

    def max_count(self, pool_size: int, token_lengths: list[int] | None = None) -> int:
        """The number of examples this budget can hold at most (exact for fraction and count)."""
        if self.kind == "fraction":
            return max(1, round(self.value * pool_size))
        if self.kind == "count":
            count = int(self.value)
            if count > pool_size:
                raise ConfigError(
                    f"budget {self} is larger than the pool ({pool_size} examples); "
                    "ask for at most the pool size, or use --method full"
                )
            return count
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
