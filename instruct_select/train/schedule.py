"""Learning-rate schedules as plain functions of the step: linear or cosine decay after warmup."""
from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, peak: float, schedule: str, warmup_ratio: float) -> float:
    """Learning rate used for optimizer step ``step`` (0-based) of ``total_steps``; never negative: a
    step past the end (a resumed run whose data shrank would ask for one) gets the final rate."""
    warmup = int(math.ceil(warmup_ratio * total_steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    remaining = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / remaining)
    if schedule == "linear":
        return peak * (1.0 - progress)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
