"""The BIDS paper's diagnostics of a selection, from the attribution matrix.

AID (average influence distribution): the mean row of A over the selected examples, averaged
within each validation task: how strongly the subset serves each task.
THI (task of highest influence): for each selected example, the task k maximising Σ_{j∈V_k} A_ij;
counted per task. Computed on the raw scores and on the column-standardised ones.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .attribution import AttributionMatrix


def influence_diagnostics(matrix: AttributionMatrix, selected_ids: list[str]) -> dict:
    row_of = {id_: i for i, id_ in enumerate(matrix.rows)}
    rows = np.array(sorted(row_of[i] for i in selected_ids if i in row_of), dtype=np.int64)
    scores = np.asarray(matrix.scores, dtype=np.float32)
    tasks = sorted({str(t) for t in matrix.tasks})
    cols = {t: [j for j, c in enumerate(matrix.tasks) if str(c) == t] for t in tasks}
    std = scores.std(axis=0)
    normalised = (scores - scores.mean(axis=0)) / np.where(std > 0, std, 1.0)
    out = {}
    for label, values in (("raw", scores), ("normalised", normalised)):
        chosen = values[rows]
        aid = {t: float(chosen[:, c].mean()) if len(rows) else 0.0 for t, c in cols.items()}
        sums = np.stack([chosen[:, c].sum(axis=1) for c in cols.values()], axis=1) if len(rows) else np.zeros((0, len(tasks)))
        thi = Counter(tasks[k] for k in sums.argmax(axis=1)) if len(rows) else Counter()
        out[label] = {"aid": aid, "thi": {t: int(thi.get(t, 0)) for t in tasks}}
    return out
