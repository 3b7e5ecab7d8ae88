from __future__ import annotations

import math

import numpy as np
import pytest

from learner.strategies import (
    STRATEGIES,
    cardinality_inconsistency,
    cold_start,
    mean_binary_entropy,
    random_scores,
    score_pool,
    select_top,
    threshold_margin,
)


def entropy_bits(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def test_mean_binary_entropy_values_and_ranking() -> None:
    probs = np.array([[0.99, 0.01], [0.5, 0.5], [0.0, 1.0], [0.9, 0.5]])

    scores = mean_binary_entropy(probs)

    np.testing.assert_allclose(scores, [entropy_bits(0.99), 1.0, 0.0, (entropy_bits(0.9) + 1.0) / 2])
    assert list(select_top(scores, 4)) == [1, 3, 0, 2]


def test_mean_binary_entropy_is_safe_at_zero_and_one() -> None:
    with np.errstate(all="raise"):
        scores = mean_binary_entropy(np.array([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))

    np.testing.assert_array_equal(scores, [0.0, 0.0])


def test_uncertainty_does_not_pick_what_modal_min_confidence_picks() -> None:
    # Document 0 has one label confidently absent (p = 0.001) and two confident positives;
    # document 1 is undecided on every label. modAL's min_confidence picks document 0.
    probs = np.array([[0.001, 0.9, 0.9], [0.5, 0.45, 0.55]])
    modal = pytest.importorskip("modAL.multilabel")

    class Fixed:
        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            return X

    modal_pick, _ = modal.min_confidence(Fixed(), probs, n_instances=1)

    assert list(modal_pick) == [0]
    assert list(select_top(score_pool("uncertainty", probs), 1)) == [1]
    assert list(select_top(score_pool("margin", probs), 1)) == [1]


def test_threshold_margin_exact_scores() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.2], [0.45, 0.0], [0.3, 0.35]])

    np.testing.assert_allclose(threshold_margin(probs), [-0.4, -0.1, -0.05, -0.15])
    np.testing.assert_allclose(threshold_margin(probs, threshold=0.3), [-0.2, -0.1, -0.15, -0.0])
    assert list(select_top(threshold_margin(probs), 4)) == [2, 1, 3, 0]


def test_cardinality_inconsistency_exact_scores() -> None:
    probs = np.array([[0.9, 0.8, 0.7], [0.1, 0.2, 0.3], [0.6, 0.1, 0.1], [0.5, 0.5, 0.1]])

    scores = cardinality_inconsistency(probs, 0.5, 1.2)

    np.testing.assert_allclose(scores, [1.8, 1.2, 0.2, 0.8])


def test_score_pool_dispatches_by_name() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.2], [0.45, 0.0]])

    np.testing.assert_array_equal(score_pool("uncertainty", probs), mean_binary_entropy(probs))
    np.testing.assert_array_equal(score_pool("margin", probs, threshold=0.4), threshold_margin(probs, 0.4))
    np.testing.assert_array_equal(
        score_pool("cardinality", probs, threshold=0.5, mean_cardinality=2.0),
        cardinality_inconsistency(probs, 0.5, 2.0),
    )
    np.testing.assert_array_equal(score_pool("random", probs, seed=4), random_scores(3, 4))


def test_unknown_strategy_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="random, uncertainty, margin, cardinality"):
        score_pool("entropy", np.zeros((2, 2)))


def test_strategies_are_described_with_their_cost() -> None:
    assert list(STRATEGIES) == ["random", "uncertainty", "margin", "cardinality"]
    assert all("O(" in description for description in STRATEGIES.values())


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (np.array([0.5, 0.5]), "2-D"),
        (np.array([[0.5, 1.5]]), r"\[0, 1\]"),
        (np.array([[np.nan, 0.5]]), "NaN"),
        (np.zeros((3, 0)), "no label columns"),
    ],
)
def test_bad_probabilities_raise(probs: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mean_binary_entropy(probs)


def test_random_scores_are_reproducible_per_seed() -> None:
    np.testing.assert_array_equal(random_scores(5, 1), random_scores(5, 1))
    assert not np.array_equal(random_scores(5, 1), random_scores(5, 2))
    assert random_scores(0, 1).shape == (0,)


def test_select_top_picks_highest_scores_first() -> None:
    scores = np.array([0.1, 0.9, 0.3, 0.7, 0.5])

    assert list(select_top(scores, 3)) == [1, 3, 4]
    assert list(select_top(scores, 10)) == [1, 3, 4, 2, 0]  # n clipped to N
    assert select_top(scores, 0).shape == (0,)


def test_select_top_breaks_ties_with_a_seeded_shuffle() -> None:
    scores = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 0.5, 1.0, 1.0])
    tied = {0, 2, 3, 4, 6, 7}

    picks = {seed: list(select_top(scores, 3, seed=seed)) for seed in range(6)}

    assert all(set(p) <= tied for p in picks.values())
    assert picks[0] == list(select_top(scores, 3, seed=0))  # deterministic for a seed
    assert len({tuple(p) for p in picks.values()}) > 1  # and not always the first tied indices
    assert list(select_top(scores, 8, seed=2))[-2:] == [5, 1]


def test_select_top_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        select_top(np.array([0.1, np.nan]), 1)
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        select_top(np.array([0.1]), -1)
    with pytest.raises(ValueError, match="1-D"):
        select_top(np.zeros((2, 2)), 1)


def blobs(sizes: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.eye(8)[: len(sizes)] * 10.0
    blob = np.repeat(np.arange(len(sizes)), sizes)
    return (centers[blob] + rng.normal(scale=0.5, size=(len(blob), 8))).astype(np.float32), blob


def test_cold_start_picks_one_document_per_blob_biggest_first() -> None:
    X, blob = blobs([20, 50, 30])

    picks = cold_start(X, 3, seed=0)

    assert len(set(picks.tolist())) == 3
    assert list(blob[picks]) == [1, 2, 0]  # sizes 50, 30, 20


def test_cold_start_picks_the_document_nearest_each_centre() -> None:
    X, _ = blobs([40])
    X = np.vstack([X, np.full((1, 8), 0.0)])
    X[-1, 0] = 10.0  # exactly the centre of the blob

    assert list(cold_start(X, 1)) == [40]


def test_cold_start_returns_n_distinct_indices_and_is_seeded() -> None:
    X, _ = blobs([60, 60, 60], seed=3)

    picks = cold_start(X, 10, seed=7)

    assert picks.dtype == np.int64
    assert len(set(picks.tolist())) == 10
    assert picks.min() >= 0 and picks.max() < 180
    np.testing.assert_array_equal(picks, cold_start(X, 10, seed=7))


def test_cold_start_fills_up_when_duplicates_leave_too_few_distinct_points() -> None:
    X = np.vstack([np.tile([1.0, 0.0, 0.0], (20, 1)), [[0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]], [[1.0, 1.0, 0.0]]])

    picks = cold_start(X, 6, seed=0)

    assert len(set(picks.tolist())) == 6
    assert {20, 21, 22} <= set(picks.tolist())  # every distinct point is covered


def test_cold_start_small_pools_and_bad_input() -> None:
    X, _ = blobs([5])

    np.testing.assert_array_equal(cold_start(X, 5), np.arange(5))
    np.testing.assert_array_equal(cold_start(X, 50), np.arange(5))
    assert cold_start(X, 0).shape == (0,)
    with pytest.raises(ValueError, match="2-D"):
        cold_start(X[0], 2)
    with pytest.raises(ValueError, match="NaN"):
        cold_start(np.full((4, 2), np.nan), 2)
