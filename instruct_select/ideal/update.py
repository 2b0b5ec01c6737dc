"""From domain influences to new domain volumes, and the resampled mixture.

The sign. Train θ on the summed objective R(θ) = Σ_i L_i(θ) and up-weight domain j by ε:
θ*(ε) = argmin R(θ) + ε·L_{D_j}(θ), with L_{D_j} = Σ_{i∈D_j} L_i. Its stationarity condition
∇R(θ*(ε)) + ε∇L_{D_j}(θ*(ε)) = 0, differentiated at ε = 0, gives H·dθ*/dε + ∇L_{D_j} = 0, so
dθ*/dε = −H⁻¹∇L_{D_j} (H = ∇²R, the implicit-function theorem), and

    dL_ref/dε = ∇L_refᵀ dθ*/dε = −∇L_refᵀ H⁻¹ ∇L_{D_j} = I_j.

So up-weighting domain j by ε changes the reference loss by ≈ ε·I_j (Koh & Liang's
"influence of up-weighting"): a NEGATIVE I_j means more of domain j lowers the reference loss.
The update that grows such a domain is therefore

    β_j = −m · I_j / max_k |I_k|,        n_j ← n_j (1 + β_j),

so the most helpful domain grows by m, the most harmful shrinks by m, and the total volume is not
held fixed. (The influence code's H is the Fisher of the mean loss, 1/N of ∇²R: a positive scale
that the normalisation removes.) ``tests/test_ideal.py`` pins this on a quadratic problem solved
in closed form.

Rounding: n_j(1 + β_j) is rounded half up to an integer, and never below ``min_volume``.

Resampling: each domain's source examples (sorted ids) are put in one seeded order (seed and
domain name) that every round shares; a domain of volume n takes the first n entries of that
order repeated cyclically. Shrinking is seeded sampling without replacement, growing past the
source size repeats examples (each appears ⌊n/N⌋ or ⌈n/N⌉ times), and a smaller mixture is always a
subset of a larger one. The k-th copy of an example (k ≥ 2) has the id ``"<id>#r<k>"``.
"""
from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

from ..artifacts import atomic_write_text
from ..data.writing import write_records
from ..errors import ConfigError

REPEAT_MARK = "#r"


def influence_to_beta(influences: dict[str, float], m: float) -> dict[str, float]:
    """β_j = −m·I_j / max|I| (all zero when every influence is zero)."""
    largest = max((abs(v) for v in influences.values()), default=0.0)
    if not math.isfinite(largest):
        raise ConfigError(f"an influence is not finite ({influences}); raise the damping")
    if largest == 0:
        return {d: 0.0 for d in influences}
    return {d: -m * v / largest for d, v in influences.items()}


def new_volumes(volumes: dict[str, int], beta: dict[str, float], min_volume: int = 1) -> dict[str, int]:
    """n_j(1 + β_j), rounded half up, at least ``min_volume``."""
    missing = sorted(set(volumes) - set(beta))
    if missing:
        raise ConfigError(f"no influence for domain(s) {missing}: every domain needs one")
    return {d: max(min_volume, math.floor(n * (1 + beta[d]) + 0.5)) for d, n in volumes.items()}


def repeat_id(id_: str, copy: int) -> str:
    """The id of the ``copy``-th appearance of an example (1: the example's own id)."""
    return id_ if copy == 1 else f"{id_}{REPEAT_MARK}{copy}"


def domain_order(ids: list[str], domain: str, seed: int) -> list[str]:
    order = sorted(ids)
    random.Random(f"ideal:{seed}:{domain}").shuffle(order)
    return order


def mixture_entries(pools: dict[str, list[str]], volumes: dict[str, int], seed: int
                    ) -> list[tuple[str, str, str]]:
    """(mixture id, source id, domain) for every entry of the mixture with these volumes."""
    entries = []
    for domain, ids in sorted(pools.items()):
        if not ids:
            raise ConfigError(f"domain {domain!r} has no examples to sample from")
        order = domain_order(ids, domain, seed)
        for k in range(volumes[domain]):
            source = order[k % len(order)]
            entries.append((repeat_id(source, k // len(order) + 1), source, domain))
    return entries


def entry_counts(entries: list[tuple[str, str, str]]) -> dict[str, int]:
    """How often each source example appears in the mixture."""
    counts: dict[str, int] = {}
    for _, source, _ in entries:
        counts[source] = counts.get(source, 0) + 1
    return counts


def mixture_data(loaded, entries: list[tuple[str, str, str]]):
    """A LoadedData holding the mixture, ready for ``data.writing.write_records``.

    Each entry keeps its source's original record; a repeat's record gets its mixture id in the
    "id" field when the records carry one, so the written file loads back with unique ids.
    (Records without an id are written unchanged; loading them back numbers the repeats -2, -3.)
    """
    by_id = loaded.by_id()
    examples, origins = [], {}
    for mixture_id, source, _ in entries:
        example = by_id[source]
        record = example.record
        if mixture_id != source and record is not None and "id" in record:
            record = {**record, "id": mixture_id}
        examples.append(replace(example, id=mixture_id, record=record))
        origins[mixture_id] = loaded.origins[source]
    return replace(loaded, examples=examples, origins=origins, locations={})


def write_mixture(loaded, entries: list[tuple[str, str, str]], folder: str | Path) -> Path:
    """Write the mixture in the input's own format (``mixture.<ext>``) and ``mixture.tsv``."""
    folder = Path(folder)
    suffix = {"jsonl": ".jsonl", "json": ".json", "parquet": ".parquet"}.get(loaded.container, "")
    path = write_records(mixture_data(loaded, entries), [e[0] for e in entries], folder / f"mixture{suffix}")
    rows = ["mixture_id\tsource_id\tdomain"] + ["\t".join(e) for e in entries]
    atomic_write_text(folder / "mixture.tsv", "\n".join(rows) + "\n")
    return path
