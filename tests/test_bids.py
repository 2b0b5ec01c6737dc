"""BIDS: the fast pointer form selects exactly what the naive Algorithm 1 selects."""
from __future__ import annotations

import numpy as np
import pytest

from instruct_select.select.bids import bids_fast, bids_naive
from instruct_select.select.less import standardise_columns


@pytest.mark.parametrize("seed", range(6))
def test_fast_equals_naive_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(20, 120), rng.integers(1, 12)
    a = rng.normal(size=(n, m)).astype(np.float32)
    norm, _ = standardise_columns(a)
    budget = int(rng.integers(1, n))
    assert bids_fast(norm, budget) == bids_naive(norm, budget)


@pytest.mark.parametrize("seed", range(6))
def test_fast_equals_naive_with_ties(seed):
    rng = np.random.default_rng(100 + seed)
    n, m = 60, 5
    # Few distinct values: many exact ties within and across columns.
    a = rng.integers(0, 4, size=(n, m)).astype(np.float32)
    a[:, 0] = a[:, 1]  # identical columns
    a[10] = a[3]  # identical rows
    budget = n  # the whole order, through every tie
    assert bids_fast(a, budget) == bids_naive(a, budget)
    norm, _ = standardise_columns(a)
    assert bids_fast(norm, 25) == bids_naive(norm, 25)


def test_first_pick_is_the_global_maximum_and_lowest_index_on_tie():
    a = np.array([[0.0, 5.0], [5.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    assert bids_fast(a, 1) == [0]  # rows 0 and 1 tie at 5: the lower index wins
    # After row 0, column 0's mean is 0 and column 1's is 5: row 1 (5 in column 0) follows.
    assert bids_fast(a, 3) == bids_naive(a, 3) == [0, 1, 2]


def test_selection_favours_underrepresented_column():
    # Column 0 has many strong rows, column 1 a few weaker ones: BIDS alternates, top-k does not.
    a = np.zeros((10, 2), dtype=np.float32)
    a[:6, 0] = [9, 8.5, 8, 7.5, 7, 6.5]
    a[6:, 1] = [3, 2.5, 2, 1.5]
    assert list(np.argsort(-a.max(axis=1), kind="stable")[:4]) == [0, 1, 2, 3]
    norm, _ = standardise_columns(a)
    picks = bids_fast(norm, 4)
    assert len(set(picks) & {6, 7, 8, 9}) >= 2


def test_standardise_drops_zero_variance_columns():
    a = np.array([[1.0, 2.0, 3.0], [1.0, 4.0, 5.0], [1.0, 6.0, 9.0]], dtype=np.float32)
    norm, dropped = standardise_columns(a)
    assert dropped == [0] and norm.shape == (3, 2)
    np.testing.assert_allclose(norm.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(norm.std(axis=0), 1, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_on_demand_normalisation_equals_naive_on_normalised_matrix(seed):
    from instruct_select.select.less import column_statistics

    rng = np.random.default_rng(200 + seed)
    a = (rng.normal(size=(80, 7)) * rng.uniform(0.1, 10, size=7) + rng.normal(size=7) * 5).astype(np.float32)
    a[:, 3] = np.round(a[:, 3])  # ties after normalisation too
    mean, std, keep, dropped = column_statistics(a)
    assert dropped == []
    normalised, _ = standardise_columns(a)
    assert bids_fast(a, 40, mean, std) == bids_naive(normalised, 40)
