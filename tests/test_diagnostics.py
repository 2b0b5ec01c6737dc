"""The BIDS paper's diagnostics (AID, THI) at the task and the instance level, against a hand
computation on a small matrix and a slow reference on random ones; rows left out of selection (no
response token) do not enter the column statistics, exactly as BIDS leaves them out."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from instruct_select.data.example import Example
from instruct_select.influence.attribution import AttributionMatrix
from instruct_select.influence.diagnostics import column_statistics, influence_diagnostics

COLUMNS = [{"id": "v0", "task": "code"}, {"id": "v1", "task": "code"},
           {"id": "v2", "task": "math"}, {"id": "v3", "task": "math"}]
SCORES = np.array([[1, 0, 0, 2],
                   [0, 2, 1, 1],
                   [3, 1, 0, 0],
                   [0, 1, 2, 1],
                   [9, 9, 9, 9]], dtype=np.float32)  # r4: no response token (its real row would be zeros)
ROWS = ["r0", "r1", "r2", "r3", "r4"]


def _matrix(scores=SCORES, rows=ROWS, excluded=("r4",)):
    return AttributionMatrix(np.asarray(scores, dtype=np.float32), list(rows), COLUMNS, list(excluded))


def test_aid_and_thi_by_hand_at_task_and_instance_level():
    d = influence_diagnostics(_matrix(), ["r0", "r1", "r4", "nowhere"])
    assert d["rows"] == 2 and d["statistics_rows"] == 4
    assert d["left_out"] == {"no_response_token": 1, "not_in_matrix": 1}
    assert d["instance_task"] == {"v0": "code", "v1": "code", "v2": "math", "v3": "math"}
    raw = d["raw"]
    # Mean of r0 = (1, 0, 0, 2) and r1 = (0, 2, 1, 1).
    assert raw["aid_instance"] == pytest.approx({"v0": 0.5, "v1": 1.0, "v2": 0.5, "v3": 1.5})
    assert raw["aid"] == pytest.approx({"code": 0.75, "math": 1.0})
    # Task sums: r0 code 1 < math 2; r1 code 2 = math 2, a tie: the lower task (code).
    assert raw["thi"] == {"code": 1, "math": 1}
    # Best instance: r0 v3 (2), r1 v1 (2).
    assert raw["thi_instance"] == {"v0": 0, "v1": 1, "v2": 0, "v3": 1}
    assert raw["thi_instance_by_task"] == {"code": 1, "math": 1}
    # Column statistics over r0..r3 only (r4's 9s left out): means (1, 1, 0.75, 1), population
    # variances (6/4, 2/4, 2.75/4, 2/4).
    sd = [math.sqrt(1.5), math.sqrt(0.5), math.sqrt(0.6875), math.sqrt(0.5)]
    z0 = [0 / sd[0], -1 / sd[1], -0.75 / sd[2], 1 / sd[3]]
    z1 = [-1 / sd[0], 1 / sd[1], 0.25 / sd[2], 0 / sd[3]]
    norm = d["normalised"]
    assert norm["aid_instance"] == pytest.approx({f"v{j}": (z0[j] + z1[j]) / 2 for j in range(4)})
    assert norm["aid"] == pytest.approx({"code": (z0[0] + z0[1] + z1[0] + z1[1]) / 4,
                                         "math": (z0[2] + z0[3] + z1[2] + z1[3]) / 4})
    # Normalised task sums: r0 code -1.41 < math 0.51; r1 code 0.60 > math 0.30.
    assert norm["thi"] == {"code": 1, "math": 1}
    assert norm["thi_instance"] == {"v0": 0, "v1": 1, "v2": 0, "v3": 1}
    assert d["zero_variance_columns"] == []


def test_an_excluded_row_does_not_change_the_statistics():
    base = influence_diagnostics(_matrix(), ["r0", "r1", "r2"])
    changed = SCORES.copy()
    changed[4] = [-50, 7, 0.5, 1e3]
    assert influence_diagnostics(_matrix(changed), ["r0", "r1", "r2"]) == base
    without = influence_diagnostics(_matrix(SCORES[:4], ROWS[:4], ()), ["r0", "r1", "r2"])
    assert without["normalised"] == base["normalised"] and without["raw"] == base["raw"]
    # The same row counted in the statistics moves every normalised value (the test can fail).
    counted = influence_diagnostics(_matrix(excluded=()), ["r0", "r1", "r2"])
    assert counted["statistics_rows"] == 5
    assert counted["normalised"]["aid"]["code"] != pytest.approx(base["normalised"]["aid"]["code"])


def _reference(scores, rows, columns, excluded, selected):
    """The definitions written out: statistics with numpy on the kept rows, loops over the selection."""
    keep = [i for i, r in enumerate(rows) if r not in excluded]
    mean, std = scores[keep].astype(np.float64).mean(axis=0), scores[keep].astype(np.float64).std(axis=0)
    std = np.where(std <= 1e-12 * np.maximum(1, np.abs(mean)), 1.0, std)
    picked = [rows.index(s) for s in selected if s in rows and s not in excluded]
    tasks = sorted({c["task"] for c in columns})
    out = {}
    for kind, values in (("raw", scores.astype(np.float64)), ("normalised", (scores - mean) / std)):
        aid_instance = {c["id"]: float(np.mean([values[i, j] for i in picked])) for j, c in enumerate(columns)}
        aid = {t: float(np.mean([aid_instance[c["id"]] for c in columns if c["task"] == t])) for t in tasks}
        thi, thi_instance = dict.fromkeys(tasks, 0), {c["id"]: 0 for c in columns}
        for i in picked:
            sums = [sum(values[i, j] for j, c in enumerate(columns) if c["task"] == t) for t in tasks]
            thi[tasks[sums.index(max(sums))]] += 1
            best = [values[i, j] for j in range(len(columns))]
            thi_instance[columns[best.index(max(best))]["id"]] += 1
        by_task = {t: sum(n for c, n in zip(columns, thi_instance.values()) if c["task"] == t) for t in tasks}
        out[kind] = {"aid": aid, "thi": thi, "aid_instance": aid_instance, "thi_instance": thi_instance,
                     "thi_instance_by_task": by_task}
    return out


@pytest.mark.parametrize("seed", range(5))
def test_against_the_slow_reference_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    n, tasks = int(rng.integers(8, 40)), ["a", "b", "c"]
    columns = [{"id": f"v{j}", "task": tasks[j % 3]} for j in range(9)]
    scores = rng.normal(size=(n, 9)).astype(np.float32)
    if seed % 2:
        scores = np.round(scores).astype(np.float32)  # many ties
    rows = [f"r{i}" for i in range(n)]
    excluded = set(rng.choice(rows, size=3, replace=False).tolist())
    scores[[rows.index(r) for r in excluded]] = 0.0
    selected = rng.choice(rows, size=int(rng.integers(1, n)), replace=False).tolist()
    got = influence_diagnostics(AttributionMatrix(scores, rows, columns, sorted(excluded)), selected)
    want = _reference(scores, rows, columns, excluded, selected)
    for kind in ("raw", "normalised"):
        for key in ("aid", "aid_instance"):
            assert got[kind][key] == pytest.approx(want[kind][key], rel=1e-9, abs=1e-9)
        for key in ("thi", "thi_instance", "thi_instance_by_task"):
            if seed % 2 and kind == "normalised":  # float rounding may break exact ties differently
                assert sum(got[kind][key].values()) == sum(want[kind][key].values())
            else:
                assert got[kind][key] == want[kind][key]


def test_blockwise_statistics_equal_numpy():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(23, 5)).astype(np.float32)
    keep = rng.random(23) > 0.3
    mean, std = column_statistics(scores, keep, block_rows=4)
    np.testing.assert_allclose(mean, scores[keep].astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, scores[keep].astype(np.float64).std(axis=0), rtol=1e-12)


def test_a_memory_mapped_matrix_and_an_empty_selection(tmp_path):
    np.save(tmp_path / "scores.npy", SCORES)
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    (tmp_path / "columns.json").write_text(json.dumps(COLUMNS))
    (tmp_path / "excluded_rows.json").write_text(json.dumps(["r4"]))
    loaded = AttributionMatrix.load(tmp_path)
    assert influence_diagnostics(loaded, ["r0", "r1"]) == influence_diagnostics(_matrix(), ["r0", "r1"])
    empty = influence_diagnostics(loaded, [])
    assert empty["rows"] == 0 and empty["raw"]["thi"] == {"code": 0, "math": 0}
    assert empty["normalised"]["aid"] == {"code": 0.0, "math": 0.0}


def test_bids_and_its_diagnostics_standardise_the_same_rows():
    """BIDS's score of its first pick is max_j Â_ij with its own statistics (excluded rows left out):
    the diagnostics of that one-example selection must give the same Â row."""
    from instruct_select.select.base import SelectionContext
    from instruct_select.select.selection import run_selector

    rng = np.random.default_rng(4)
    n = 30
    pool = [Example(f"p{i:02d}", "t", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
            for i in range(n)]
    columns = [{"id": f"v{j}", "task": ["code", "math"][j % 2]} for j in range(6)]
    scores = rng.normal(size=(n, 6)).astype(np.float32)
    scores[[3, 17]] = 0.0  # no response token
    matrix = AttributionMatrix(scores, [e.id for e in pool], columns, ["p03", "p17"])
    selection = run_selector("bids", SelectionContext(pool, artifacts={"attribution": matrix}), 1)
    normalised = selection.diagnostics["influence"]["normalised"]
    assert max(normalised["aid_instance"].values()) == pytest.approx(selection.scores[0], rel=1e-5)
    assert selection.diagnostics["influence"]["statistics_rows"] == n - 2


def test_report_distributions_standardise_over_scorable_rows_only(tmp_path):
    """The report's per-example influence histograms use the same statistics as the diagnostics:
    the excluded row r4 (all 9s) neither appears nor shifts the other rows' normalised values."""
    from instruct_select.report.collect import influence_distributions

    np.save(tmp_path / "scores.npy", SCORES)
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    (tmp_path / "columns.json").write_text(json.dumps(COLUMNS))
    (tmp_path / "excluded_rows.json").write_text(json.dumps(["r4"]))
    raw, normalised = influence_distributions(tmp_path, block_rows=2)
    kept = SCORES[:4].astype(np.float64)
    scaled = (kept - kept.mean(axis=0)) / kept.std(axis=0)
    np.testing.assert_allclose(raw["code"], kept[:, :2].max(axis=1))
    np.testing.assert_allclose(normalised["math"], scaled[:, 2:].max(axis=1), rtol=1e-12)
