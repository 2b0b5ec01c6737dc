"""Learning percentage (Mekala, Nguyen, Shang, 2024; METHODS §3): keep the hardest share of every cluster.

From an example's perplexities P_0 (base model), P_1 (after epoch 1) and P_n (after the last epoch):

    LP(1)  = (P_0 − P_1) / (P_0 − P_n)     the share of all learning that happened in epoch 1
    LP_app = (P_0 − P_1) / P_0             the one-epoch approximation

A low value means most learning happened late: a hard example.

Examples the training did not move. Let band = tolerance · P_0 (``lp_tolerance``, default 1e-3).
  - learned:   P_0 − P_n >  band;
  - unmoved:   |P_0 − P_n| ≤ band (LP(1) is noise over noise);
  - regressed: P_0 − P_n < −band (perplexity rose: the ratio's sign flips).
The status comes from the trajectory, so it is the same for both variants. Every example's value is
the raw ratio, as the reference implementation computes it (Small2Large ``process_pickle.py``:
(P_0 − P_1)/(P_0 − P_3), and 0 where P_0 = P_3 exactly), and by default every example is ranked by
that value whatever its status: a regressed example that improved in epoch 1 gets a negative LP(1)
and counts as very hard, as in the reference. ``lp_unlearned="last"`` (the rule before) instead puts
unmoved and regressed examples after every learned one in each cluster (unmoved, then regressed,
then by id). A value too large for a float is clamped to ±max float, so no NaN or inf reaches a
ranking. Examples with no loss (no response token after truncation: NaN trajectories) are left out
entirely, and a budget larger than what remains is refused. All kinds are counted in the diagnostics.

Selection. Candidates (every pool example with a finite trajectory) are sorted by id, their
embeddings L2-normalised and clustered with the seeded k-means of ``select/kmeans.py``; k is
``clusters`` or, by default, max(1, round(N / 52)) for N candidates: the paper's mean cluster size
(k = 1,000 for the 52,002 Alpaca examples; the sizes of the authors' released Dolly subsets imply
roughly 250-290 clusters for its 15,011, and this rule gives 289). The budget B is split over the k' non-empty clusters
(``lp_quotas="coverage"``, the default):

  - B ≥ k': every cluster gets one example first; the B − k' left are split in proportion to what
    each cluster has left, n_c − 1, by largest remainder: floor((B − k') · (n_c − 1) / (N − k')),
    then one more each to the largest remainders (compared exactly in integers), ties to the lower
    cluster index;
  - B < k': one each to the B largest clusters (ties to the lower cluster index).

So the selection holds exactly B examples and, whenever the budget allows, touches every cluster.
The reference takes ceil(n_c · p) of every cluster (``subset.py``: the first chunk of
``np.array_split`` into 1/p parts), so every cluster gets one but the total overshoots (1% of
Alpaca was about 2%); overshooting cannot be kept as an option (the budget is a hard cap), so the
diagnostics report what the reference would have taken (``reference_ceil_total``).
``lp_quotas="proportional"`` is the plain largest-remainder split of B · n_c / N (the rule before:
exact, but it left 18 of Alpaca's 1,000 clusters empty at 5%).

| name      | order inside each cluster                                              |
|-----------|------------------------------------------------------------------------|
| lp-hard   | lowest LP first                                                        |
| lp-easy   | highest LP first                                                       |
| lp-random | uniform at random (seeded), same quotas; statuses ignored              |

The returned ranking is the selection itself (exactly ``limit`` ids): first each covered cluster's
first pick, then the rest, each part ordered globally by the same key (ties by id). A token budget,
which keeps a prefix of the ranking, so keeps the coverage before any cluster's second pick. Quotas
are computed for the exact ``limit`` the selector is given: largest remainder is not monotone in the
budget, so (as before) the selection at one budget need not be a prefix of the selection at a
larger one. Options: ``lp_variant`` ("lp1" or "lp_app"), ``clusters``, ``lp_tolerance``,
``lp_quotas``, ``lp_unlearned``; ``seed`` seeds k-means and lp-random.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..config import RunConfig
from ..errors import ArtifactMismatchError, ConfigError, InputError
from .base import BaseSelector, Ranking, SelectionContext
from .kmeans import kmeans

VARIANTS = ("lp1", "lp_app")
LEARNED, UNMOVED, REGRESSED = 0, 1, 2
STATUS_NAMES = ("learned", "unmoved", "regressed")
DEFAULT_TOLERANCE = 1e-3
PAPER_CLUSTER_SIZE = 52  # 52,002 Alpaca examples / the paper's 1,000 clusters
QUOTA_RULES = ("coverage", "proportional")
UNLEARNED_ORDERS = ("ratio", "last")
QUOTA_TEXT = {
    "coverage": "one example per non-empty cluster first (when the budget is smaller than their number: the "
                "largest clusters, ties to the lower index), the rest by largest remainder of what each cluster "
                "has left (n_c - 1), ties to the lower cluster; exactly the budget",
    "proportional": "largest remainder of budget x n_c / N, ties to the lower cluster; exactly the budget",
}
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


@dataclass
class LearningPercentages:
    """The learning percentage of every pool example with a finite trajectory: ``ids`` (sorted),
    ``values`` (the LP ratio), ``status`` (learned, unmoved or regressed), ``excluded`` (ids with no
    usable trajectory) and the ``variant`` ("lp1" or "lp_app")."""
    ids: list[str]  # sorted; only examples with a finite trajectory
    values: np.ndarray  # (N,) finite float64
    status: np.ndarray  # (N,) int8: LEARNED, UNMOVED or REGRESSED
    excluded: list[str]  # ids with no usable trajectory (NaN or inf)
    variant: str

    def counts(self) -> dict[str, int]:
        """{"learned", "unmoved", "regressed", "excluded_no_loss"}: how many examples of each kind."""
        counts = {name: int(np.sum(self.status == code)) for code, name in enumerate(STATUS_NAMES)}
        return {**counts, "excluded_no_loss": len(self.excluded)}


def lp_values(p0: np.ndarray, p1: np.ndarray, pn: np.ndarray, variant: str = "lp1",
              tolerance: float = DEFAULT_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """(values, status) from perplexity arrays: the raw ratio (0 where its denominator is exactly 0,
    as the reference writes it), and the status from the tolerance band; see the module docstring."""
    if variant not in VARIANTS:
        raise ConfigError(f"lp_variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if not tolerance > 0:
        raise ConfigError(f"lp_tolerance must be > 0 (it separates learned from unmoved examples), got {tolerance}")
    p0, p1, pn = (np.asarray(a, dtype=np.float64) for a in (p0, p1, pn))
    moved, band = p0 - pn, tolerance * p0
    status = np.where(moved > band, LEARNED, np.where(moved < -band, REGRESSED, UNMOVED)).astype(np.int8)
    denominator = p0 if variant == "lp_app" else moved
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values = np.where(denominator != 0, (p0 - p1) / np.where(denominator != 0, denominator, 1.0), 0.0)
    # A denominator of a few ulps can overflow the ratio: clamp, keeping its sign and its rank.
    big = np.finfo(np.float64).max
    return np.nan_to_num(values, nan=0.0, posinf=big, neginf=-big), status


def learning_percentages(trajectories, variant: str = "lp1", tolerance: float = DEFAULT_TOLERANCE) -> LearningPercentages:
    """LP of every example of a ``LossTrajectories`` with a finite trajectory, in id order."""
    if variant == "lp1" and trajectories.epochs < 2:
        raise ConfigError("LP(1) needs at least 2 trained epochs (with one, it is 1 for every example); "
                          "train longer or use lp_variant='lp_app'")
    order = sorted(range(len(trajectories.ids)), key=lambda i: trajectories.ids[i])
    p = trajectories.perplexities[order]
    finite = np.isfinite(p).all(axis=1)
    ids = [trajectories.ids[i] for i in order]
    values, status = lp_values(p[finite, 0], p[finite, 1], p[finite, -1], variant, tolerance)
    return LearningPercentages([i for i, ok in zip(ids, finite) if ok], values, status,
                               [i for i, ok in zip(ids, finite) if not ok], variant)


def largest_remainder(weights, total: int) -> np.ndarray:
    """Split ``total`` in proportion to the integer ``weights``: floors of total · w / Σw, then one more
    each to the largest remainders (exact integer comparison), ties to the lower index."""
    weights = np.asarray(weights, dtype=np.int64)
    whole = max(int(weights.sum()), 1)
    numerators = weights * total
    quotas = numerators // whole
    order = np.lexsort((np.arange(len(weights)), -(numerators % whole)))  # largest remainder, lowest index
    quotas[order[: total - int(quotas.sum())]] += 1
    return quotas


def cluster_quotas(sizes, total: int, rule: str = "coverage") -> np.ndarray:
    """How many examples each cluster gives to a selection of exactly ``total`` (module docstring).

    coverage: one per non-empty cluster first (the largest clusters' when ``total`` is smaller than
    their number), the rest by largest remainder over what each has left; proportional: largest
    remainder of total · n_c / N.
    """
    if rule not in QUOTA_RULES:
        raise ConfigError(f"lp_quotas must be one of {', '.join(QUOTA_RULES)}, got {rule!r}")
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(sizes.sum())
    if not 0 <= total <= n:
        raise InputError(f"cannot select {total} of {n} examples")
    if rule == "proportional":
        return largest_remainder(sizes, total)
    nonempty = sizes > 0
    covered = int(nonempty.sum())
    if total < covered:  # not enough for every cluster: the largest ones, ties to the lower index
        quotas = np.zeros(len(sizes), dtype=np.int64)
        quotas[np.lexsort((np.arange(len(sizes)), -sizes))[:total]] = 1
        return quotas
    # What is left after the first pick of each cluster, split by what each has left: no cluster is
    # given more than it holds (R ≤ W, so floor(R·w/W) ≤ w, and one rounded up had a fraction below w).
    return nonempty.astype(np.int64) + largest_remainder(np.maximum(sizes - 1, 0), total - covered)


def reference_ceil_total(sizes, total: int) -> int:
    """What the reference (Small2Large ``subset.py``) would take at the fraction total / N: Σ ceil(n_c · p)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n = max(int(sizes.sum()), 1)
    return int((-(-(sizes * total) // n)).sum())


def default_clusters(n: int) -> int:
    """k with the paper's mean cluster size: 1,000 for the 52K Alpaca pool, about 290 for 15K Dolly."""
    return max(1, round(n / PAPER_CLUSTER_SIZE))


def take_by_quota(labels: np.ndarray, quotas: np.ndarray, tier: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Each cluster's first ``quotas[c]`` rows in (tier, key, row) order; returned as every cluster's
    first pick in that global order, then the other picks in that order (module docstring)."""
    order = np.lexsort((np.arange(len(labels)), key, tier))
    taken = np.zeros(len(quotas), dtype=np.int64)
    heads, rest = [], []
    for row in order:
        c = labels[row]
        if taken[c] < quotas[c]:
            taken[c] += 1
            (heads if taken[c] == 1 else rest).append(row)
    return np.asarray(heads + rest, dtype=np.int64)


def _embedding_rows(embeddings, ids: list[str]) -> np.ndarray:
    """The rows of ``embeddings`` (an ``Embeddings`` or an (ids, array) pair) for ``ids``, normalised."""
    emb_ids, vectors = (embeddings.ids, embeddings.vectors) if hasattr(embeddings, "vectors") else embeddings
    row_of = {id_: i for i, id_ in enumerate(emb_ids)}
    missing = [i for i in ids if i not in row_of]
    if missing:
        raise ArtifactMismatchError(f"the embeddings lack {len(missing)} pool examples (e.g. {missing[0]!r}): "
                                    "they were computed for another pool; recompute them")
    x = np.asarray(vectors, dtype=np.float64)[[row_of[i] for i in ids]]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _checked_lp(selection: SelectionContext) -> LearningPercentages:
    trajectories = selection.need("loss_trajectories")
    pool_ids = {e.id for e in selection.pool}
    if set(trajectories.ids) != pool_ids:
        extra = sorted(set(trajectories.ids) ^ pool_ids)[0]
        raise ArtifactMismatchError(f"the loss trajectories cover other examples than the pool (e.g. {extra!r}); "
                                    "recompute them for this pool")
    return learning_percentages(trajectories, selection.options.get("lp_variant", "lp1"),
                                float(selection.options.get("lp_tolerance", DEFAULT_TOLERANCE)))


def _lp_summary(lp: LearningPercentages, task_of: dict[str, str]) -> dict[str, dict]:
    by_task: dict[str, list[int]] = defaultdict(list)
    for row, id_ in enumerate(lp.ids):
        by_task[str(task_of[id_])].append(row)
    summary = {}
    for task, rows in sorted(by_task.items()):
        rows = np.asarray(rows)
        learned = lp.values[rows][lp.status[rows] == LEARNED]
        entry = {"n": int(len(rows)), **{f"n_{s}": int(np.sum(lp.status[rows] == c)) for c, s in enumerate(STATUS_NAMES)}}
        if len(learned):
            entry["lp_quantiles"] = {f"q{round(q * 100)}": float(v) for q, v in zip(QUANTILES, np.quantile(learned, QUANTILES))}
        summary[task] = entry
    return summary


def _by_value(lp: LearningPercentages, key: np.ndarray, unlearned: str) -> tuple[np.ndarray, np.ndarray]:
    """(tier, key) for lp-hard and lp-easy. "ratio": one tier, every row by its value (the reference);
    "last": learned rows by value, then unmoved, then regressed rows, those by id alone."""
    if unlearned not in UNLEARNED_ORDERS:
        raise ConfigError(f"lp_unlearned must be one of {', '.join(UNLEARNED_ORDERS)}, got {unlearned!r}")
    if unlearned == "ratio":
        return np.zeros(len(lp.ids), dtype=np.int8), key
    return lp.status, np.where(lp.status == LEARNED, key, 0.0)


class _LearningPercentageSelector(BaseSelector):
    """What the learning-percentage family shares: its needs (the selection model's loss
    trajectories and the pool's embeddings), its settings (``config.learning_percentage``: the
    selection model, its label, the encoder, the variant, clusters and tolerance) and the rule of
    ``rank``; each member gives only the order inside a cluster (``order_key``)."""

    needs = ("loss_trajectories", "embeddings")

    def options(self, config: RunConfig) -> dict[str, object]:
        """``learning_percentage``'s variant, clusters and tolerance as the options ``rank`` reads
        (``lp_variant``, ``clusters``, ``lp_tolerance``): they override ``selection_options``."""
        return config.learning_percentage.options()

    def models(self, config: RunConfig) -> dict[str, str]:
        """The selection model when it is not the run's own:
        {"learning_percentage.selection_model": its folder or hub id}."""
        model = config.learning_percentage.selection_model
        return {"learning_percentage.selection_model": model} if model else {}

    def encoders(self, config: RunConfig) -> dict[str, str]:
        """The local sentence encoder that embeds the pool for the clustering, when one is set:
        {"learning_percentage.embedding_model": its folder}."""
        encoder = config.learning_percentage.embedding_model
        return {"learning_percentage.embedding_model": encoder} if encoder else {}

    def selected_by(self, config: RunConfig) -> str:
        """``learning_percentage.label``: names the selection model's folder and this method's arms
        ("" for a run with one selection model)."""
        return config.learning_percentage.label

    def order_key(self, lp: LearningPercentages, seed: int, unlearned: str) -> tuple[np.ndarray, np.ndarray]:
        """(tier, key) of every row of ``lp`` (the pool's learning percentages): rows are taken by
        ascending tier, then ascending key. ``seed``: lp-random's draw; ``unlearned``: the
        ``lp_unlearned`` rule ("ratio" or "last")."""
        raise NotImplementedError

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        """Exactly ``limit`` pool ids: each k-means cluster's quota of its rows in ``order_key``
        order, first picks first (module docstring); the LP values as scores."""
        lp = _checked_lp(selection)
        n = len(lp.ids)
        if limit > n:
            raise InputError(
                f"the budget asks for {limit} examples but only {n} of {len(selection.pool)} have a loss trajectory "
                f"({len(lp.excluded)} have no response token after truncation, e.g. {lp.excluded[:3]}); "
                "lower the budget or raise max_length")
        k = int(selection.options.get("clusters") or default_clusters(n))
        if not 1 <= k <= n:
            raise ConfigError(f"clusters must be between 1 and the {n} scorable examples, got {k}")
        rule = selection.options.get("lp_quotas") or "coverage"
        if rule not in QUOTA_RULES:  # checked before k-means runs, not after
            raise ConfigError(f"lp_quotas must be one of {', '.join(QUOTA_RULES)}, got {rule!r}")
        unlearned = selection.options.get("lp_unlearned") or "ratio"
        tier, key = self.order_key(lp, selection.seed, unlearned)  # checks lp_unlearned before k-means runs
        clustering = kmeans(_embedding_rows(selection.need("embeddings"), lp.ids), k, seed=selection.seed)
        sizes = clustering.sizes()
        quotas = cluster_quotas(sizes, limit, rule)
        rows = take_by_quota(clustering.labels, quotas, tier, key)
        selected = np.bincount(clustering.labels[rows], minlength=k)
        task_of = {e.id: e.task for e in selection.pool}
        diagnostics = {
            "lp_variant": lp.variant, "lp_tolerance": float(selection.options.get("lp_tolerance", DEFAULT_TOLERANCE)),
            "lp_unlearned": unlearned if self.name != "lp-random" else "ignored",
            "status_counts": lp.counts(), "excluded_no_loss_ids": lp.excluded[:20],
            "selected_status_counts": {s: int(np.sum(lp.status[rows] == c)) for c, s in enumerate(STATUS_NAMES)},
            "clusters": k, "cluster_sizes": sizes.tolist(), "cluster_quotas": quotas.tolist(),
            "cluster_selected": selected.tolist(),
            "clusters_nonempty": int(np.sum(sizes > 0)), "clusters_covered": int(np.sum(selected > 0)),
            "reference_ceil_total": reference_ceil_total(sizes, limit),
            "kmeans": {"inertia": clustering.inertia, "iterations": clustering.iterations, "seed": selection.seed},
            "lp_quotas": rule,
            "rounding": QUOTA_TEXT[rule],
            "lp_by_task": _lp_summary(lp, task_of),
        }
        return Ranking([lp.ids[r] for r in rows], lp.values[rows].astype(float).tolist(), diagnostics)


class LpHardSelector(_LearningPercentageSelector):
    """``lp-hard``: the lowest LP (the hardest examples) of every k-means cluster."""

    name = "lp-hard"
    description = "learning percentage: the hardest (lowest LP) share of every k-means cluster"

    def order_key(self, lp, seed, unlearned):
        return _by_value(lp, lp.values, unlearned)


class LpEasySelector(_LearningPercentageSelector):
    """``lp-easy``: the highest LP (the easiest examples) of every k-means cluster."""

    name = "lp-easy"
    description = "learning percentage: the easiest (highest LP) share of every k-means cluster"

    def order_key(self, lp, seed, unlearned):
        return _by_value(lp, -lp.values, unlearned)


class LpRandomSelector(_LearningPercentageSelector):
    """``lp-random``: random members of every k-means cluster, with lp-hard's quotas."""

    name = "lp-random"
    description = "random members of every k-means cluster, with lp-hard's per-cluster quotas"

    def order_key(self, lp, seed, unlearned):
        # A stream apart from k-means' (same seed) so the two draws are independent.
        return np.zeros(len(lp.ids), dtype=np.int8), np.random.default_rng([seed, 1]).permutation(len(lp.ids))


# --------------------------------------------------------------------------------------------
# Agreement between two models' LP rankings (METHODS §3.4)


def _inversions(ranks: np.ndarray) -> int:
    """Pairs i < j with ranks[i] > ranks[j]: bottom-up merge sort, one vectorised pass per level."""
    values = np.asarray(ranks, dtype=np.int64).copy()
    n, m = len(values), int(values.max()) + 1 if len(values) else 1
    positions, total, width = np.arange(n), 0, 1
    while width < n:
        block = positions // width
        pair, is_right = block // 2, (block % 2) == 1
        keys = pair * m + values  # sorted inside every block, blocks in order
        left = keys[~is_right]
        right_pair = pair[is_right]
        end_of_left = np.searchsorted(left, right_pair * m + m - 1, side="right")
        total += int((end_of_left - np.searchsorted(left, keys[is_right], side="right")).sum())
        values = values[np.argsort(keys, kind="stable")]  # merge each pair of blocks
        width *= 2
    return total


def _tied_pairs(sorted_values: np.ndarray) -> int:
    _, counts = np.unique(sorted_values, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def kendall_tau(a, b) -> float:
    """Kendall's τ-b between two score vectors (ties handled as τ-b does), in O(n log n)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ConfigError(f"Kendall τ needs two equally long vectors of at least 2 values, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ConfigError("Kendall τ: the values hold NaN or inf")
    n = len(a)
    order = np.lexsort((b, a))
    a_sorted, b_sorted = a[order], b[order]
    pairs = n * (n - 1) // 2
    ties_a, ties_b = _tied_pairs(a_sorted), _tied_pairs(b_sorted)
    joint = np.unique(np.stack([a_sorted, b_sorted]), axis=1, return_counts=True)[1]
    ties_both = int((joint * (joint - 1) // 2).sum())
    discordant = _inversions(np.unique(b_sorted, return_inverse=True)[1])
    denominator = ((pairs - ties_a) * (pairs - ties_b)) ** 0.5
    if denominator == 0:
        raise ConfigError("Kendall τ is undefined when one of the rankings is constant")
    return float((pairs - ties_a - ties_b + ties_both - 2 * discordant) / denominator)


def lp_agreement(trajectories_a, trajectories_b, variant: str = "lp1",
                 tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Kendall τ between two models' LP over the examples both learned (others counted, not ranked)."""
    lp_a = learning_percentages(trajectories_a, variant, tolerance)
    lp_b = learning_percentages(trajectories_b, variant, tolerance)
    row_b = {id_: i for i, id_ in enumerate(lp_b.ids)}
    common = [(i, row_b[id_]) for i, id_ in enumerate(lp_a.ids) if id_ in row_b]
    both = [(i, j) for i, j in common if lp_a.status[i] == LEARNED and lp_b.status[j] == LEARNED]
    if len(both) < 2:
        raise InputError(f"only {len(both)} examples were learned by both models: no ranking to compare")
    rows_a, rows_b = (np.asarray(x) for x in zip(*both))
    return {"tau": kendall_tau(lp_a.values[rows_a], lp_b.values[rows_b]), "n": len(both), "variant": variant,
            "left_out": {"no_loss_under_one_model": len(set(trajectories_a.ids) | set(trajectories_b.ids)) - len(common),
                         "not_learned_by_both": len(common) - len(both)}}
