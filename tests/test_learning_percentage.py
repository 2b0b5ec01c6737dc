"""Learning percentage: LP formulas on hand-computed trajectories, the ranking of examples that did
not move (the raw ratio, as the reference; or last), exact per-cluster budgets that cover every
cluster (against a slow reference), the default number of clusters, the three orderings, seeded
k-means, Kendall τ, batched loss trajectories against a one-at-a-time reference, resuming, and the
whole path on the tiny lab.

The selector module is imported inside the tests (fixture ``lp``), not at collection: importing it
registers lp-hard/lp-easy/lp-random, and other test files parametrise over the registry when they
are collected.
"""
from __future__ import annotations

import importlib
import itertools
import json
import logging
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from instruct_select.config import LoraSettings, TrainSettings
from instruct_select.run.context import RunContext
from instruct_select.data.batching import Batching, collate
from instruct_select.data.chat import tokenize_examples
from instruct_select.data.example import Example
from instruct_select.data.loading import load_examples
from instruct_select.errors import ConfigError, InputError
from instruct_select.features.embeddings import Embeddings
from instruct_select.loss import model_per_example_loss
from instruct_select.features.store import FeatureStore
from instruct_select.features.trajectories import LossTrajectories, fill_loss_store
from instruct_select.run.producers.loss_trajectories import loss_trajectories_stage
from instruct_select.select.base import SelectionContext
from instruct_select.select.kmeans import kmeans


@pytest.fixture(scope="module")
def lp():
    return importlib.import_module("instruct_select.select.learning_percentage")


def _run_selector(*args, **kwargs):
    from instruct_select.select.selection import run_selector

    return run_selector(*args, **kwargs)


def _pool(ids, task="t"):
    return [Example(i, task, [{"role": "user", "content": i}, {"role": "assistant", "content": "x"}]) for i in ids]


def _trajectories(perplexities: dict[str, tuple]) -> LossTrajectories:
    ids = list(perplexities)
    return LossTrajectories.from_losses(ids, np.log(np.array([perplexities[i] for i in ids], dtype=float)))


# ------------------------------------------------------------------------------------------------
# LP values


def test_lp1_and_lp_app_pinned_on_hand_computed_trajectories(lp):
    traj = _trajectories({"a": (10, 6, 4, 2), "b": (4, 3.5, 3, 2), "c": (5, 2, 2.5, 3)})
    one = lp.learning_percentages(traj, "lp1")
    app = lp.learning_percentages(traj, "lp_app")
    # a: (10-6)/(10-2) = 0.5, app 4/10; b: 0.5/2 = 0.25, app 0.5/4; c: 3/2 = 1.5 (overshoot), app 3/5.
    np.testing.assert_allclose(one.values, [0.5, 0.25, 1.5], rtol=1e-12)
    np.testing.assert_allclose(app.values, [0.4, 0.125, 0.6], rtol=1e-12)
    assert one.counts() == {"learned": 3, "unmoved": 0, "regressed": 0, "excluded_no_loss": 0}


def test_unmoved_regressed_and_missing_examples_are_counted_and_keep_the_raw_ratio(lp):
    losses = np.log([[3, 3, 3], [3, 2.9, 3.002], [2, 2.5, 3], [2, 2, 2], [4, 3, 2]])
    losses[3] = np.nan  # no response token after truncation
    traj = LossTrajectories.from_losses(["flat", "tiny", "worse", "none", "ok"], losses)
    assert traj.excluded == ["none"]
    result = lp.learning_percentages(traj, "lp1", tolerance=1e-3)
    assert result.ids == ["flat", "ok", "tiny", "worse"] and result.excluded == ["none"]
    assert list(result.status) == [lp.UNMOVED, lp.LEARNED, lp.UNMOVED, lp.REGRESSED]
    # The reference's values: flat 0 (P_0 = P_n exactly), ok 1/2, tiny 0.1 / -0.002, worse -0.5 / -1.
    np.testing.assert_allclose(result.values, [0.0, 0.5, -50.0, 0.5], rtol=1e-9)
    assert result.counts() == {"learned": 1, "unmoved": 2, "regressed": 1, "excluded_no_loss": 1}
    # A denominator of one ulp overflows the ratio: clamped to the largest float, sign kept, never inf.
    values, status = lp.lp_values(np.array([1.0]), np.array([1e300]), np.array([np.nextafter(1.0, 2.0)]))
    assert values[0] == np.finfo(np.float64).max and status[0] == lp.UNMOVED
    with pytest.raises(ConfigError, match="lp_tolerance"):
        lp.learning_percentages(traj, "lp1", tolerance=0)
    with pytest.raises(ConfigError, match="lp_app"):
        lp.learning_percentages(LossTrajectories.from_losses(["a", "b"], np.log([[3, 2], [3, 1]])), "lp1")


def _untrained_case():
    # LP(1) by hand: h1 1/8, h2 2/8, e1 7/8 (learned); flat 0 (P_0 = P_n exactly: the reference's 0);
    # noise 0.1 / -0.002 = -50 (unmoved: inside the 1e-3 band); dip 2 / -1 = -2 and up -1 / -2 = 0.5
    # (regressed: perplexity rose); gone has no loss.
    perplexities = {"h1": (10, 9, 2), "h2": (10, 8, 2), "e1": (10, 3, 2), "flat": (3, 3, 3),
                    "noise": (3, 2.9, 3.002), "dip": (4, 2, 5), "up": (2, 3, 4), "gone": (2, 2, 2)}
    traj = _trajectories(perplexities)
    traj.losses[traj.ids.index("gone")] = np.nan
    traj = LossTrajectories.from_losses(traj.ids, traj.losses)
    return _pool(list(perplexities)), {"loss_trajectories": traj, "embeddings": (traj.ids, np.ones((8, 3)))}


def test_examples_that_did_not_learn_are_ranked_by_their_raw_ratio_as_the_reference(lp):
    pool, artifacts = _untrained_case()
    one = {"clusters": 1}
    hard = _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts, options=one), 7)
    easy = _run_selector("lp-easy", SelectionContext(pool, artifacts=artifacts, options=one), 7)
    # Small2Large sorts every example of a cluster by its LP(1) value, whatever happened to it.
    assert hard.ids == ["noise", "dip", "flat", "h1", "h2", "up", "e1"]
    assert easy.ids == ["e1", "up", "h2", "h1", "flat", "dip", "noise"]
    np.testing.assert_allclose(hard.scores, [-50, -2, 0, 0.125, 0.25, 0.5, 0.875], rtol=1e-9)
    assert hard.diagnostics["lp_unlearned"] == "ratio"
    assert hard.diagnostics["status_counts"] == {"learned": 3, "unmoved": 2, "regressed": 2, "excluded_no_loss": 1}
    assert hard.diagnostics["excluded_no_loss_ids"] == ["gone"]
    picked = _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts, options=one), 3)
    assert picked.ids == ["noise", "dip", "flat"]
    with pytest.raises(InputError, match="only 7 of 8 have a loss trajectory"):
        _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts, options=one), 8)


def test_lp_unlearned_last_keeps_the_old_rule_learned_first_then_unmoved_then_regressed(lp):
    pool, artifacts = _untrained_case()
    last = {"clusters": 1, "lp_unlearned": "last"}
    hard = _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts, options=last), 7)
    easy = _run_selector("lp-easy", SelectionContext(pool, artifacts=artifacts, options=last), 7)
    # The tail goes by id whatever its values (noise's -50 would otherwise lead lp-hard).
    assert hard.ids == ["h1", "h2", "e1", "flat", "noise", "dip", "up"]
    assert easy.ids == ["e1", "h2", "h1", "flat", "noise", "dip", "up"]
    assert all(math.isfinite(s) for s in hard.scores + easy.scores)
    assert hard.diagnostics["selected_status_counts"] == {"learned": 3, "unmoved": 2, "regressed": 2}
    picked = _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts, options=last), 3)
    assert picked.ids == ["h1", "h2", "e1"]
    with pytest.raises(ConfigError, match="lp_unlearned"):
        _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts, options={"lp_unlearned": "first"}), 3)
    with pytest.raises(ConfigError, match="lp_quotas"):
        _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts, options={"lp_quotas": "ceil"}), 3)


# ------------------------------------------------------------------------------------------------
# Quotas and orderings on clustered pools


def _coverage_quotas_reference(sizes, total):
    """The coverage rule written out slowly: one per non-empty cluster (the largest first when there
    are fewer than clusters), then Hamilton's method on n_c - 1 with exact fractions."""
    sizes = [int(n) for n in sizes]
    nonempty = [c for c, n in enumerate(sizes) if n > 0]
    if total < len(nonempty):
        chosen = sorted(nonempty, key=lambda c: (-sizes[c], c))[:total]
        return [int(c in chosen) for c in range(len(sizes))]
    left = total - len(nonempty)
    capacity = [max(n - 1, 0) for n in sizes]
    exact = [Fraction(left * w, sum(capacity)) if sum(capacity) else Fraction(0) for w in capacity]
    quotas = [int(n > 0) + math.floor(e) for n, e in zip(sizes, exact)]
    by_remainder = sorted(range(len(sizes)), key=lambda c: (-(exact[c] - math.floor(exact[c])), c))
    for c in by_remainder[: total - sum(quotas)]:
        quotas[c] += 1
    return quotas


def test_coverage_quotas_by_hand(lp):
    # 5 of (5, 3, 2): one each, then 2 over what is left (4, 2, 1)/7: exact 8/7, 4/7, 2/7 -> floors
    # 1, 0, 0; the last one to the largest remainder, 4/7.
    assert lp.cluster_quotas([5, 3, 2], 5).tolist() == [2, 2, 1]
    # 4 of (7, 5, 3): one each, then 1 over (6, 4, 2)/12: the largest remainder is the first cluster's.
    assert lp.cluster_quotas([7, 5, 3], 4).tolist() == [2, 1, 1]
    # Fewer than clusters: the largest clusters get one each, ties to the lower index; empty ones none.
    assert lp.cluster_quotas([1, 1, 1, 1], 2).tolist() == [1, 1, 0, 0]
    assert lp.cluster_quotas([10, 0, 3, 3, 1], 3).tolist() == [1, 0, 1, 1, 0]
    assert lp.cluster_quotas([10, 0, 3, 3, 1], 4).tolist() == [1, 0, 1, 1, 1]
    assert lp.cluster_quotas([10, 0, 3, 3, 1], 17).tolist() == [10, 0, 3, 3, 1]
    assert lp.cluster_quotas([10, 0, 3, 3, 1], 0).tolist() == [0, 0, 0, 0, 0]
    with pytest.raises(InputError):
        lp.cluster_quotas([2, 2], 5)
    # The rule before, kept as lp_quotas="proportional": 5 of (5, 3, 2) is 2.5, 1.5, 1.0.
    assert lp.cluster_quotas([5, 3, 2], 5, "proportional").tolist() == [3, 1, 1]
    assert lp.cluster_quotas([7, 5, 3], 4, "proportional").tolist() == [2, 1, 1]


def test_coverage_quotas_against_the_slow_reference(lp):
    rng = np.random.default_rng(0)
    for _ in range(400):
        sizes = rng.integers(0, 30, size=rng.integers(1, 14))
        total = int(rng.integers(0, sizes.sum() + 1))
        quotas = lp.cluster_quotas(sizes, total)
        assert quotas.tolist() == _coverage_quotas_reference(sizes, total)
        assert quotas.sum() == total and np.all(quotas <= sizes) and np.all(quotas >= 0)
        nonempty = sizes > 0
        if total >= nonempty.sum():
            assert np.all(quotas[nonempty] >= 1)
        else:
            assert np.all(quotas <= 1)
        proportional = lp.cluster_quotas(sizes, total, "proportional")
        exact = sizes * total / max(sizes.sum(), 1)
        assert proportional.sum() == total and np.all(np.abs(proportional - exact) < 1)


def test_paper_scale_budgets_cover_every_cluster_and_stay_exact(lp):
    # 52,000 examples in 1,000 clusters of uneven size (as k-means makes them).
    rng = np.random.default_rng(1)
    weights = rng.lognormal(0, 0.9, 1000)
    sizes = np.maximum(1, np.floor(weights / weights.sum() * 52_000)).astype(np.int64)
    sizes[np.argmax(sizes)] += 52_000 - sizes.sum()
    five, one = 2_600, 520
    assert np.sum(lp.cluster_quotas(sizes, five, "proportional") == 0) > 0  # the rule before left some empty
    quotas = lp.cluster_quotas(sizes, five)
    assert quotas.sum() == five and quotas.min() >= 1
    assert lp.reference_ceil_total(sizes, five) > five  # the reference's ceil overshoots
    ones = lp.cluster_quotas(sizes, one)  # 1%: fewer examples than clusters, one each to the largest
    assert ones.sum() == one and ones.max() == 1
    assert sizes[ones == 1].min() >= sizes[ones == 0].max()
    assert lp.reference_ceil_total(sizes, one) >= 1000  # ceil gives every cluster one: about 2%


def test_default_clusters_gives_the_papers_k_at_the_papers_scale(lp):
    assert lp.default_clusters(52_000) == 1000 and lp.default_clusters(52_002) == 1000  # Alpaca
    assert lp.default_clusters(15_011) == 289  # Dolly, at the same mean cluster size
    assert lp.default_clusters(4_000) == 77  # the lab's default pool: clusters of about 52
    assert lp.default_clusters(240) == 5  # the tiny lab
    assert lp.default_clusters(10) == 1 and lp.default_clusters(1) == 1


def _take_reference(labels, quotas, tier, key):
    """Each cluster's rows sorted by (tier, key, row), its first quota kept; heads first, then the rest."""
    rank = lambda r: (tier[r], key[r], r)  # noqa: E731
    heads, rest = [], []
    for c in range(len(quotas)):
        members = sorted((r for r in range(len(labels)) if labels[r] == c), key=rank)[: quotas[c]]
        heads += members[:1]
        rest += members[1:]
    return sorted(heads, key=rank) + sorted(rest, key=rank)


def test_take_by_quota_against_the_slow_reference(lp):
    rng = np.random.default_rng(2)
    for _ in range(200):
        n, k = int(rng.integers(1, 40)), int(rng.integers(1, 8))
        labels = rng.integers(0, k, n)
        sizes = np.bincount(labels, minlength=k)
        quotas = lp.cluster_quotas(sizes, int(rng.integers(0, n + 1)))
        tier, key = rng.integers(0, 3, n).astype(np.int8), rng.integers(0, 4, n).astype(float)  # many ties
        assert lp.take_by_quota(labels, quotas, tier, key).tolist() == _take_reference(labels, quotas, tier, key)


def _blob_pool(sizes=(7, 5, 3), seed=0):
    """Well-separated blobs; each example's LP is its index inside its blob over 10."""
    rng = np.random.default_rng(seed)
    centers = np.eye(8)[: len(sizes)] * 20
    ids, vectors, blob_of, losses = [], [], {}, []
    for b, size in enumerate(sizes):
        for j in range(size):
            id_ = f"b{b}-{j:02d}"
            ids.append(id_)
            vectors.append(centers[b] + rng.normal(size=8) * 0.1)
            blob_of[id_] = b
            lp1 = (j + 1) / 10  # (P0 - P1) / (P0 - P2) with P0 = 11, P2 = 1
            losses.append(np.log([11, 11 - 10 * lp1, 1]))
    traj = LossTrajectories.from_losses(ids, np.array(losses))
    return _pool(ids), {"loss_trajectories": traj, "embeddings": Embeddings(ids, np.array(vectors, np.float32), {})}, blob_of


def test_budget_met_exactly_with_documented_rounding_on_uneven_clusters(lp):
    pool, artifacts, blob_of = _blob_pool()
    selection = _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts, options={"clusters": 3}), 4)
    per_blob = {b: sum(blob_of[i] == b for i in selection.ids) for b in range(3)}
    assert per_blob == {0: 2, 1: 1, 2: 1}  # the hand-computed quotas above
    d = selection.diagnostics
    assert sorted(d["cluster_sizes"]) == [3, 5, 7] and d["cluster_selected"] == d["cluster_quotas"]
    assert d["clusters_covered"] == d["clusters_nonempty"] == 3 and d["lp_quotas"] == "coverage"
    # 8 of 15: one each, then 5 over (6, 4, 2)/12 -> 2.5, 1.67, 0.83 -> (3, 3, 2); the reference's
    # ceil(n_c · 8/15) would take 4 + 3 + 2 = 9.
    eight = _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts, options={"clusters": 3}), 8)
    assert sorted(sum(blob_of[i] == b for i in eight.ids) for b in range(3)) == [2, 3, 3]
    assert {b: sum(blob_of[i] == b for i in eight.ids) for b in range(3)} == {0: 3, 1: 3, 2: 2}
    assert eight.diagnostics["reference_ceil_total"] == 9
    proportional = {"clusters": 3, "lp_quotas": "proportional"}
    old = _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts, options=proportional), 8)
    assert {b: sum(blob_of[i] == b for i in old.ids) for b in range(3)} == {0: 4, 1: 3, 2: 1}  # 3.73, 2.67, 1.6
    two = _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts, options={"clusters": 3}), 2)
    assert sorted(blob_of[i] for i in two.ids) == [0, 1]  # fewer than clusters: the two largest
    assert two.diagnostics["clusters_covered"] == 2
    for limit in range(1, 16):
        ids = _run_selector("lp-random", SelectionContext(pool, artifacts=artifacts, options={"clusters": 3},
                                                          seed=limit), limit).ids
        assert len(ids) == limit == len(set(ids))


def test_hard_easy_random_order_inside_clusters(lp):
    pool, artifacts, blob_of = _blob_pool()
    options = {"clusters": 3}
    hard = _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts, options=options), "8")
    easy = _run_selector("lp-easy", SelectionContext(pool, artifacts=artifacts, options=options), "8")
    # Quotas (3, 3, 2). Each cluster's first pick comes first, then the rest, each part by LP (ties
    # by id): a prefix of the ranking (what a token budget keeps) reaches every cluster first.
    assert hard.ids == ["b0-00", "b1-00", "b2-00", "b0-01", "b1-01", "b2-01", "b0-02", "b1-02"]
    assert easy.ids == ["b0-06", "b1-04", "b2-02", "b0-05", "b0-04", "b1-03", "b1-02", "b2-01"]
    randoms = [_run_selector("lp-random", SelectionContext(pool, artifacts=artifacts, options=options, seed=s),
                             "8") for s in range(6)]
    for selection in randoms:  # same quotas per cluster as lp-hard
        assert sorted(blob_of[i] for i in selection.ids) == sorted(blob_of[i] for i in hard.ids)
    assert len({tuple(sorted(s.ids)) for s in randoms}) > 1
    again = _run_selector("lp-random", SelectionContext(list(reversed(pool)), artifacts=artifacts, options=options,
                                                        seed=3), "8")
    assert again.ids == randoms[3].ids  # seeded, whatever the pool order


def test_conformance_like_the_registry_test(lp):
    """What tests/test_selectors.py checks of every registered selector, with LP artifacts."""
    rng = np.random.default_rng(0)
    pool = _pool([f"p{i:03d}" for i in range(50)])
    ids = [e.id for e in pool]
    losses = np.column_stack([np.full(50, 2.0), 2.0 - rng.uniform(0.1, 1.0, 50), np.full(50, 0.5)])
    artifacts = {"loss_trajectories": LossTrajectories.from_losses(ids, losses),
                 "embeddings": Embeddings(ids, rng.normal(size=(50, 6)).astype(np.float32), {})}
    for method in ("lp-hard", "lp-easy", "lp-random"):
        first = _run_selector(method, SelectionContext(pool, seed=3, artifacts=artifacts), "7")
        assert first.ids == _run_selector(method, SelectionContext(list(reversed(pool)), seed=3, artifacts=artifacts),
                                          "7").ids
        assert len(set(first.ids)) == 7 and first.diagnostics["clusters"] == 1  # round(50 / 52)
        assert len(_run_selector(method, SelectionContext(pool, seed=3, artifacts=artifacts), "20%").ids) == 10
        several = _run_selector(method, SelectionContext(pool, seed=3, artifacts=artifacts, options={"clusters": 5}),
                                "7")
        assert len(set(several.ids)) == 7 and several.diagnostics["clusters_covered"] == 5


# ------------------------------------------------------------------------------------------------
# k-means and Kendall τ


def test_kmeans_is_deterministic_and_recovers_separated_blobs():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(5, 4)) * 10
    truth = np.repeat(np.arange(5), [30, 10, 25, 5, 30])
    x = centers[truth] + rng.normal(size=(len(truth), 4)) * 0.2
    a, b = kmeans(x, 5, seed=7), kmeans(x, 5, seed=7)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.centers, b.centers)
    # Each true blob is exactly one cluster.
    assert len({(t, l) for t, l in zip(truth, a.labels)}) == 5 and len(set(a.labels)) == 5
    assert a.inertia < kmeans(x, 2, seed=7).inertia
    with pytest.raises(ConfigError, match="between 1"):
        kmeans(x, 0)


def _tau_brute(a, b):
    c = d = only_a = only_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        sa, sb = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
        if sa == 0 and sb == 0:
            continue
        if sa == 0 or sb == 0:
            only_a += sa == 0
            only_b += sb == 0
        elif sa == sb:
            c += 1
        else:
            d += 1
    return (c - d) / math.sqrt((c + d + only_a) * (c + d + only_b))


def test_kendall_tau_against_hand_computation(lp):
    assert lp.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    # One pair tied in a, one in b, four concordant: 4 / sqrt(5 * 5).
    assert lp.kendall_tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    assert lp.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(3, 40))
        a, b = rng.integers(0, 5, n).astype(float), rng.integers(0, 7, n).astype(float)
        if len(set(a)) > 1 and len(set(b)) > 1:
            assert lp.kendall_tau(a, b) == pytest.approx(_tau_brute(a, b), abs=1e-12)
    with pytest.raises(ConfigError):
        lp.kendall_tau([1, 1, 1], [1, 2, 3])


def test_lp_agreement_compares_examples_both_models_learned(lp):
    a = _trajectories({"x": (10, 8, 2), "y": (10, 4, 2), "z": (10, 6, 2), "w": (3, 3, 3)})
    b = _trajectories({"x": (10, 9, 2), "y": (10, 5, 2), "z": (10, 3, 2), "w": (5, 4, 2)})
    result = lp.lp_agreement(a, b)
    # a orders x < z < y, b orders x < y < z: 2 concordant pairs, 1 discordant over 3.
    assert result["tau"] == pytest.approx(1 / 3) and result["n"] == 3
    assert result["left_out"] == {"no_loss_under_one_model": 0, "not_learned_by_both": 1}


# ------------------------------------------------------------------------------------------------
# Loss trajectories on a tiny model


def _examples():
    prompts = ["hi", "What is 2 + 3?", "Reverse the words: red green blue", "hello world, how are you today?",
               "Name the capital of Velkar." * 8]
    answers = ["hello", "5", "blue green red", "I am fine, thanks! " * 3, "Orrin"]
    return [Example(f"e{i}", "t", [{"role": "user", "content": p}, {"role": "assistant", "content": a}])
            for i, (p, a) in enumerate(zip(prompts, answers))]


def test_batched_losses_equal_one_at_a_time_reference(tiny_model_dir, tiny_tokenizer, tmp_path):
    from instruct_select.models.loading import load_base_model

    model = load_base_model(tiny_model_dir)
    examples = _examples()  # the last one's prompt fills max_length: no response token left
    store = FeatureStore.open_or_create(tmp_path / "s", [e.id for e in examples], 1, "float32", {"m": 1})
    out = fill_loss_store(model, tiny_tokenizer, examples, store, Batching(max_length=48, token_budget=200, max_batch_size=3))
    assert out["no_response"] == ["e4"]
    items, _ = tokenize_examples(tiny_tokenizer, examples, 48)
    assert len({len(i) for i in items}) == len(items)  # mixed lengths: batches are padded
    with torch.no_grad():
        reference = [model_per_example_loss(model, collate([it], tiny_tokenizer.pad_token_id))[0].item() for it in items]
    got = np.asarray(store.features[:, 0], dtype=np.float64)
    np.testing.assert_allclose(got[:4], reference, rtol=1e-5)
    assert np.isnan(got[4]) and store.complete()


@pytest.fixture(scope="module")
def tiny_train_run(tiny_model_dir, tmp_path_factory):
    from instruct_select.run.stages import train_stage

    root = tmp_path_factory.mktemp("lp_train")
    pool = root / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": e.id, "task": e.task, "messages": e.messages}) + "\n"
                            for e in _examples()[:4]))
    settings = TrainSettings(epochs=2, learning_rate=5e-2, warmup_ratio=0.05, batching="token_budget", max_length=48,
                             token_budget=96, max_batch_size=2,
                             lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]))
    train_stage(RunContext.create(pool=pool), tiny_model_dir, root / "train",
                settings)
    return root


def _stage(model_dir, root, out):
    context = RunContext.create(pool=root / "pool.jsonl")
    return loss_trajectories_stage(context, model_dir, root / "train", out, Batching(48, 96, 2))


def test_trajectories_follow_the_checkpoints_and_resume(tiny_model_dir, tiny_train_run, tmp_path, monkeypatch, caplog):
    from instruct_select.models.loading import load_tokenizer, load_trained

    full = _stage(tiny_model_dir, tiny_train_run, tmp_path / "full")
    assert full.losses.shape == (4, 3) and full.epochs == 2 and full.excluded == []
    assert np.all(full.losses[:, 2] < full.losses[:, 0])  # training lowered every loss
    # The last epoch equals the trained model as saved (LoRA weights loaded by name).
    trained = load_trained(tiny_train_run / "train" / "model")
    tokenizer = load_tokenizer(tiny_train_run / "train" / "model")
    store = FeatureStore.open_or_create(tmp_path / "ref", full.ids, 1, "float32", {})
    fill_loss_store(trained, tokenizer, load_examples(tiny_train_run / "pool.jsonl").examples, store, Batching(48, 96, 2))
    np.testing.assert_allclose(full.losses[:, 2], store.features[:, 0], rtol=1e-5)

    # Interrupt after the first batch of epoch 0, then rerun: it resumes and ends equal.
    monkeypatch.setattr("instruct_select.features.trajectories.WRITE_EVERY_SECONDS", 0.0)  # write every batch
    calls = {"n": 0}
    original = FeatureStore.write

    def failing_write(self, ids, values):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        original(self, ids, values)

    monkeypatch.setattr(FeatureStore, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        _stage(tiny_model_dir, tiny_train_run, tmp_path / "resumed")
    monkeypatch.setattr(FeatureStore, "write", original)
    resumed = _stage(tiny_model_dir, tiny_train_run, tmp_path / "resumed")
    np.testing.assert_array_equal(resumed.losses, full.losses)
    manifest = json.loads((tmp_path / "resumed" / "epoch-0" / "manifest.json").read_text())
    assert manifest["outputs"]["computed"] == 2  # only the rows the interruption left
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="instruct_select"):
        _stage(tiny_model_dir, tiny_train_run, tmp_path / "resumed")
    assert sum("already done" in m for m in caplog.messages) == 3


def test_merged_and_separate_adapters_give_the_same_losses(tiny_model_dir, tiny_train_run, tmp_path):
    """float32 merges LoRA into the weights; other dtypes keep the adapter apart: same losses."""
    from instruct_select.features.trajectories import ModelAtEpoch
    from instruct_select.models.loading import load_tokenizer
    from instruct_select.train.checkpoint import list_checkpoints

    examples = load_examples(tiny_train_run / "pool.jsonl").examples
    tokenizer = load_tokenizer(tiny_train_run / "train" / "model")
    manifest = json.loads((tiny_train_run / "train" / "manifest.json").read_text())
    results = {}
    for merge in (True, False):
        models = ModelAtEpoch(tiny_model_dir, manifest, None, merge=merge)
        columns = []
        for epoch, checkpoint in enumerate([None, *list_checkpoints(tiny_train_run / "train")]):
            store = FeatureStore.open_or_create(tmp_path / f"{merge}-{epoch}", [e.id for e in examples], 1, "float32", {})
            fill_loss_store(models.get(checkpoint), tokenizer, examples, store, Batching(48, 96, 2))
            columns.append(np.asarray(store.features[:, 0]))
        results[merge] = np.stack(columns, axis=1)
    np.testing.assert_allclose(results[True], results[False], rtol=1e-5)
    assert np.all(np.abs(results[True][:, 1] - results[True][:, 0]) > 1e-3)  # the checkpoints did change the model


# ------------------------------------------------------------------------------------------------
# End to end on the tiny lab


def test_lp_hard_end_to_end_on_tiny_lab(tiny_lab, tmp_path, lp):
    from instruct_select.config import LPSettings, RunConfig
    from instruct_select.experiments.learning_percentage import agreement_section
    from instruct_select.lab.presets import lab_train_settings
    from instruct_select.layout import RunLayout
    from instruct_select.run.pipeline import context_for, execute
    from instruct_select.run.producers import produce
    from instruct_select.select.selection import read_selected_ids

    settings = LPSettings(epochs=2, label="small", selection_train=lab_train_settings(
        epochs=2, token_budget=2048, max_length=128, lora=LoraSettings(r=4, alpha=8, dropout=0.0)))
    config = RunConfig(model=str(tiny_lab.model("small")), pool=str(tiny_lab.pool), run_dir=str(tmp_path / "run"),
                       methods=["lp-hard"], budgets=["10%"], dtype="float32", device="cpu", finetune=False,
                       learning_percentage=settings)
    produced = produce({"loss_trajectories", "embeddings"}, context_for(config),
                       config, RunLayout(config.run_dir))
    artifacts = {name: artifact.value for name, artifact in produced.items()}
    pool = load_examples(tiny_lab.pool).examples
    trajectories = artifacts["loss_trajectories"]
    assert isinstance(trajectories, LossTrajectories) and trajectories.losses.shape == (len(pool), 3)
    assert isinstance(artifacts["embeddings"], Embeddings) and set(produced) == set(artifacts)
    selection = _run_selector("lp-hard", SelectionContext(pool, artifacts=artifacts), "10%")
    assert len(selection.ids) == 24 and selection.diagnostics["clusters"] == round(len(pool) / 52)
    assert sum(selection.diagnostics["cluster_quotas"]) == 24
    assert selection.diagnostics["clusters_covered"] == selection.diagnostics["clusters_nonempty"]
    assert set(selection.diagnostics["lp_by_task"]) == {e.task for e in pool}
    # Hardest first: the selection's LP sits below the pool's median LP.
    values = lp.learning_percentages(trajectories)
    assert np.median(selection.scores) < np.median(values.values[values.status == lp.LEARNED])
    # The pipeline reuses those artifacts, writes the same selection, and compares LP rankings.
    messages = []
    handler, logger = logging.Handler(logging.INFO), logging.getLogger("instruct_select")
    handler.emit = lambda record: messages.append(record.getMessage())
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        result = execute(context_for(config), config)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert read_selected_ids(result.arms["lp-hard @ 10% (by small)"].selection) == selection.ids
    assert sum("already done" in m or "reusing" in m for m in messages) >= 5  # train, 3 loss epochs, embeddings
    agreement_section(RunLayout(config.run_dir), ["small", "small"], settings)
    agreement = json.loads((tmp_path / "run" / "agreement-small-vs-small.json").read_text())
    assert agreement["tau"] == pytest.approx(1.0)  # the same model against itself
