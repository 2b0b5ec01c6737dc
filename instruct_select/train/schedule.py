"""Learning-rate schedules as plain functions of the step: linear or cosine decay after warmup."""
from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, peak: float, schedule: str, warmup_ratio: float) -> float:
    """Learning rate used for optimizer step ``step`` (0-based) of ``total_steps``."""
    warmup = int(math.ceil(warmup_ratio * total_steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    remaining = max(1, total_steps - warmup)
    progress = (step - warmup) / remaining
    if schedule == "linear":
        return peak * (1.0 - progress)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
