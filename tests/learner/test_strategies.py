from __future__ import annotations

import math

import numpy as np
import pytest

from learner.strategies import (
    DEFAULT_STRATEGY,
    MODAL_STRATEGIES,
    SCORERS,
    STRATEGIES,
    adaptive_uncertainty,
    badge_batch,
    cardinality_inconsistency,
    cold_start,
    decision_margin,
    gradient_norm,
    kmeans_batch,
    mean_binary_entropy,
    modal_select,
    random_scores,
    ranked_batch,
    rare_positives,
    rarity_entropy,
    resolve,
    score_pool,
    select,
    select_batch,
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
    with pytest.raises(ValueError, match="default, random, uncertainty, margin, cardinality"):
        score_pool("entropy", np.zeros((2, 2)))
    for bad in ("random+ranked", "uncertainty+", "uncertainty+top+kmeans", "+kmeans"):
        with pytest.raises(ValueError, match="unknown strategy"):
            resolve(bad)


def test_strategies_are_described_with_their_cost() -> None:
    assert list(SCORERS) == [
        "random",
        "uncertainty",
        "margin",
        "cardinality",
        "adaptive",
        "rarity",
        "decision",
        "badge",
        "positives",
        "typiclust",
        "probcover",
        "anchors",
    ]
    assert resolve("typiclust") == ("typiclust", "typiclust") and resolve("probcover") == ("probcover", "probcover")
    assert "typiclust+kmeans" not in STRATEGIES and "probcover+ranked" not in STRATEGIES
    assert "cardinality+kmeans" in STRATEGIES and "rarity+ranked" in STRATEGIES
    assert {"decision+kmeans", "decision+ranked", "positives+kmeans", "positives+ranked"} <= set(STRATEGIES)
    assert "badge" in STRATEGIES and "badge+kmeans" not in STRATEGIES and "badge+ranked" not in STRATEGIES
    assert resolve("badge") == ("badge", "badge") and resolve("decision") == ("decision", "top")
    assert set(MODAL_STRATEGIES) <= set(STRATEGIES)
    assert all("O(" in description for description in STRATEGIES.values())
    assert resolve("default") == resolve(DEFAULT_STRATEGY)
    assert resolve("margin+ranked") == ("margin", "ranked") and resolve("margin") == ("margin", "top")


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


# ------------------------------------------------------------------------------------ adaptive and rarity


def test_adaptive_combines_separation_margin_and_cardinality_as_li_and_guo() -> None:
    # threshold 0.5: decision values are logits. Mean cardinality 1.
    probs = np.array(
        [
            [0.9, 0.1, 0.1],  # one clear label: separation logit(.9)-logit(.1) = 4.39, inconsistency 0
            [0.55, 0.45, 0.1],  # one label, barely: separation 0.40, inconsistency 0
            [0.9, 0.8, 0.7],  # three labels: separation logit(.7)-(-inf)... no negative -> 1, inconsistency 2
            [0.3, 0.2, 0.1],  # none above: the best counts as predicted, separation logit(.3)-logit(.2)
        ]
    )
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    separation = [logit(0.9) - logit(0.1), logit(0.55) - logit(0.45), 1.0, logit(0.3) - logit(0.2)]
    inconsistency = [0.0, 0.0, 2.0, 1.0]

    for beta in (0.0, 0.5, 1.0):
        scores = adaptive_uncertainty(probs, 0.5, 1.0, beta=beta)
        expected = [
            -beta * math.log(s + 1e-6) + (1 - beta) * math.log(c + 1e-6)
            for s, c in zip(separation, inconsistency, strict=True)
        ]
        np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert list(select_top(adaptive_uncertainty(probs, 0.5, 1.0, beta=1.0), 4)) == [1, 3, 2, 0]  # by separation
    assert list(select_top(adaptive_uncertainty(probs, 0.5, 1.0, beta=0.0), 2)) == [2, 3]
    with pytest.raises(ValueError, match="beta"):
        adaptive_uncertainty(probs, 0.5, 1.0, beta=1.5)


def test_rarity_weighs_uncertainty_about_rare_labels_higher() -> None:
    idx = np.array([[0, 1], [2, 1], [2, -1]])
    probs = np.array([[0.5, 0.0], [0.5, 0.0], [0.5, 0.5]])
    counts = np.array([99, 0, 3])  # label 0 well known, label 2 rare

    scores = rarity_entropy(idx, probs, counts)

    np.testing.assert_allclose(scores, [1.0 / 10.0, 1.0 / 2.0, 1.0 / 2.0])  # the empty slot counts nothing
    assert list(select_top(scores, 1)) in ([1], [2])
    assert scores[0] < scores[1]
    with pytest.raises(ValueError, match="label_counts has 3"):
        rarity_entropy(np.array([[5]]), np.array([[0.5]]), counts)
    with pytest.raises(ValueError, match=r"label ids \(idx\) and the labelled positives"):
        score_pool("rarity", probs)


def test_shortlist_strategies_equal_the_dense_ones_when_the_shortlist_holds_every_label() -> None:
    rng = np.random.default_rng(0)
    dense = rng.random((50, 6))
    order = np.argsort(-dense, axis=1)  # shortlists are sorted best first, as predict_topk returns them
    shortlist = np.take_along_axis(dense, order, axis=1)
    counts = rng.integers(0, 20, size=6)
    identity = np.tile(np.arange(6), (50, 1))

    for name in ("uncertainty", "margin", "cardinality", "adaptive", "rarity", "decision", "badge", "positives"):
        kwargs = {"threshold": 0.4, "mean_cardinality": 2.0, "label_counts": counts, "per_label": {1: 0.2, 4: 0.7}}
        np.testing.assert_allclose(
            score_pool(name, shortlist, idx=order, **kwargs), score_pool(name, dense, idx=identity, **kwargs)
        )


def test_a_short_shortlist_keeps_the_ranking_when_the_rest_is_near_zero() -> None:
    rng = np.random.default_rng(1)
    dense = np.concatenate([rng.random((40, 5)), np.full((40, 995), 1e-9)], axis=1)  # 1,000 labels
    order = np.argsort(-dense, axis=1)[:, :10]
    shortlist = np.take_along_axis(dense, order, axis=1)

    for name in ("margin", "cardinality"):
        assert np.array_equal(
            select_top(score_pool(name, shortlist, threshold=0.5), 10),
            select_top(score_pool(name, dense, threshold=0.5), 10),
        )
    np.testing.assert_array_equal(
        select_top(score_pool("uncertainty", shortlist), 10), select_top(score_pool("uncertainty", dense), 10)
    )


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def decision_pool() -> tuple[np.ndarray, np.ndarray]:
    idx = np.array([[0, 1], [2, 3], [1, -1], [3, 0]])
    # Document 2's empty slot holds 0.5, which would be on the boundary if it were read.
    probs = np.array([[0.6, 0.1], [0.3, 0.2], [0.9, 0.5], [0.15, 0.05]])
    return idx, probs


def test_decision_is_the_logit_distance_to_the_global_threshold() -> None:
    idx, probs = decision_pool()

    scores = decision_margin(idx, probs, threshold=0.5)

    np.testing.assert_allclose(scores, [-logit(0.6), -logit(0.7), -logit(0.9), -logit(0.85)])
    assert list(select_top(scores, 4)) == [0, 1, 3, 2]


def test_decision_reads_each_labels_own_threshold() -> None:
    idx, probs = decision_pool()
    per_label = {3: 0.2, 2: 0.9, 7: 0.01}  # label 3 sits exactly on its threshold in document 1

    scores = decision_margin(idx, probs, threshold=0.5, per_label=per_label)

    np.testing.assert_allclose(scores, [-logit(0.6), 0.0, -logit(0.9), -(logit(0.2) - logit(0.15))], atol=1e-6)
    assert list(select_top(scores, 4)) == [1, 3, 0, 2]
    assert list(select("decision", 1, idx=idx, probs=probs, n_labels=4)) == [0]
    assert list(select("decision", 1, idx=idx, probs=probs, n_labels=4, per_label=per_label)) == [1]
    np.testing.assert_array_equal(score_pool("decision", probs, idx=idx, threshold=0.5, per_label=per_label), scores)


def test_decision_works_in_logit_space_and_scores_empty_shortlists_last() -> None:
    # 0.05 is 0.04 from its threshold 0.01 and 0.45 is 0.05 from 0.5: in probability document 0 is the closer,
    # in logits (how far the model's output must move to flip the decision) document 1 is, by 0.20 to 1.65.
    idx = np.array([[0, -1], [1, -1], [-1, -1]])
    probs = np.array([[0.05, 0.0], [0.45, 0.0], [0.5, 0.5]])

    scores = decision_margin(idx, probs, threshold=0.5, per_label={0: 0.01})

    np.testing.assert_allclose(scores[:2], [-(logit(0.05) - logit(0.01)), -logit(0.55)])
    assert list(select_top(scores, 3)) == [1, 0, 2]
    assert scores[2] == pytest.approx(-2 * logit(1 - 1e-6))
    assert np.isfinite(scores).all()


def test_decision_rejects_bad_input() -> None:
    idx, probs = decision_pool()

    with pytest.raises(ValueError, match=r"decision needs the shortlists' label ids \(idx\)"):
        score_pool("decision", probs)
    with pytest.raises(ValueError, match=r"per_label thresholds must be in \[0, 1\]"):
        decision_margin(idx, probs, per_label={0: 1.5})
    with pytest.raises(ValueError, match="same shape"):
        decision_margin(idx[:, :1], probs)
    with pytest.raises(ValueError, match="integer label ids"):
        decision_margin(idx.astype(float), probs)


def test_positives_prefers_likely_labels_without_positives() -> None:
    idx = np.array([[0, 1], [2, 3], [4, -1]])
    probs = np.array([[0.9, 0.8], [0.6, 0.5], [0.7, 0.9]])  # document 2's empty slot is not read
    counts = np.array([50, 9, 0, 1, 3])  # labels 0 and 1 frequent, 2 never labelled

    scores = rare_positives(idx, probs, counts)

    np.testing.assert_allclose(scores, [0.9 / 51 + 0.8 / 10, 0.6 / 1 + 0.5 / 2, 0.7 / 4])
    assert list(select_top(scores, 3)) == [1, 2, 0]
    assert list(select_top(rare_positives(idx, probs, counts, power=0.0), 1)) == [0]  # no weighting: most positives
    assert list(select("positives", 1, idx=idx, probs=probs, n_labels=5, label_counts=counts)) == [1]


def test_positives_seeks_positives_where_rarity_seeks_uncertainty() -> None:
    idx = np.array([[2], [2]])
    probs = np.array([[0.95], [0.5]])  # sure of the unlabelled label 2 / undecided about it
    counts = np.array([50, 9, 0])

    assert list(select_top(rare_positives(idx, probs, counts), 1)) == [0]
    assert list(select_top(rarity_entropy(idx, probs, counts), 1)) == [1]


def test_positives_needs_label_ids_and_counts() -> None:
    idx = np.array([[0, 1]])
    probs = np.array([[0.5, 0.5]])

    with pytest.raises(ValueError, match=r"positives needs .*label_counts"):
        score_pool("positives", probs, idx=idx)
    with pytest.raises(ValueError, match=r"positives needs the shortlists' label ids"):
        score_pool("positives", probs, label_counts=[1, 1])
    with pytest.raises(ValueError, match="label_counts has 1"):
        rare_positives(idx, probs, [3])
    with pytest.raises(ValueError, match="power"):
        rare_positives(idx, probs, [3, 3], power=-1.0)


# ------------------------------------------------------------------------------------------------------ badge


def badge_pool() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three documents at threshold 0.5 (no label predicted, so r = p): A with the largest gradient, A' a
    near-duplicate of A whose gradient is only a little smaller, B half as large but on other labels."""
    idx = np.array([[0, 1], [0, 1], [2, 3]])
    probs = np.array([[0.4, 0.3], [0.4, 0.29], [0.3, 0.2]])
    embeddings = np.array([[1.0, 0.0], [1.0, 0.05], [1.0, 0.0]])
    return idx, probs, embeddings


def test_gradient_norm_is_the_residual_norm_with_the_rules_thresholds() -> None:
    idx = np.array([[0, 1], [0, -1], [2, 1]])
    probs = np.array([[0.4, 0.3], [0.3, 0.9], [0.8, 0.6]])

    np.testing.assert_allclose(gradient_norm(idx, probs), [0.5, 0.3, math.hypot(0.2, 0.4)])  # empty slot ignored
    per_label = {0: 0.3, 2: 0.9}  # label 0 now predicted at 0.4 (r = -0.6), label 2 no longer at 0.8 (r = 0.8)
    np.testing.assert_allclose(
        gradient_norm(idx, probs, per_label=per_label), [math.hypot(0.6, 0.3), 0.7, math.hypot(0.8, 0.4)]
    )
    np.testing.assert_array_equal(
        score_pool("badge", probs, idx=idx, per_label=per_label), gradient_norm(idx, probs, per_label=per_label)
    )


def test_badge_takes_the_largest_gradient_then_a_distant_one_not_its_near_duplicate() -> None:
    idx, probs, embeddings = badge_pool()
    norms = gradient_norm(idx, probs) * np.linalg.norm(embeddings, axis=1)
    assert list(select_top(norms, 2)) == [0, 1]  # by gradient size alone: A and its near-duplicate

    for seed in range(20):
        assert list(badge_batch(idx, probs, embeddings, 2, seed=seed)) == [0, 2]
        scores = score_pool("badge", probs, idx=idx)
        picks = select_batch("badge", scores, 2, embeddings=embeddings, idx=idx, probs=probs, seed=seed)
        assert list(picks) == [0, 2]
    assert list(select("badge", 2, idx=idx, probs=probs, n_labels=4, embeddings=embeddings)) == [0, 2]
    assert sorted(badge_batch(idx, probs, embeddings, 3)) == [0, 1, 2]
    assert badge_batch(idx, probs, embeddings, 0).shape == (0,)


def test_badge_never_repicks_exact_duplicates_while_others_remain() -> None:
    # Four copies of one gradient and one small, different gradient: the second pick is the different one.
    idx = np.array([[0, 1]] * 4 + [[1, 2]])
    probs = np.array([[0.4, 0.3]] * 4 + [[0.1, 0.1]])
    embeddings = np.array([[0.6, 0.8]] * 4 + [[0.0, 1.0]])

    for seed in range(5):
        picks = badge_batch(idx, probs, embeddings, 3, seed=seed)
        assert int(picks[0]) < 4 and int(picks[1]) == 4 and int(picks[2]) < 4 and picks[2] != picks[0]


def explicit_badge(
    idx: np.ndarray, probs: np.ndarray, x: np.ndarray, n: int, threshold: float, per_label: dict[int, float], seed: int
) -> list[int]:
    """k-means++ seeding on the gradient embeddings built explicitly (N, L·D), as Ash et al. describe it."""
    n_labels = int(idx.max()) + 1
    thresholds = np.array([[per_label.get(int(label), threshold) for label in row] for row in idx])
    r = np.zeros((len(idx), n_labels))
    for row, col in zip(*np.nonzero(idx >= 0), strict=True):
        r[row, idx[row, col]] = probs[row, col] - float(probs[row, col] >= thresholds[row, col])
    g = np.einsum("nl,nd->nld", r, x).reshape(len(idx), -1)  # (N, L·D)
    candidates = select_top((g**2).sum(axis=1), len(idx), seed=seed)
    g = g[candidates]
    rng = np.random.default_rng(seed)
    picks = [0]
    nearest = ((g - g[0]) ** 2).sum(axis=1)
    for _ in range(n - 1):
        weights = np.where(np.isin(np.arange(len(g)), picks), 0.0, nearest)
        pick = int(np.searchsorted(np.cumsum(weights), rng.random() * weights.sum(), side="right"))
        picks.append(pick)
        nearest = np.minimum(nearest, ((g - g[pick]) ** 2).sum(axis=1))
    return [int(candidates[pick]) for pick in picks]


def test_badge_equals_kmeans_plus_plus_on_explicit_gradient_embeddings() -> None:
    rng = np.random.default_rng(5)
    n_docs, n_labels, k = 40, 12, 4
    idx = np.stack([rng.choice(n_labels, size=k, replace=False) for _ in range(n_docs)])  # shared labels, any slot
    idx[rng.random((n_docs, k)) < 0.2] = -1
    probs = rng.random((n_docs, k))
    embeddings = rng.normal(size=(n_docs, 3))
    per_label = {1: 0.2, 5: 0.8, 7: 0.45}

    for seed in range(4):
        expected = explicit_badge(idx, probs, embeddings, 8, 0.4, per_label, seed)
        picks = badge_batch(idx, probs, embeddings, 8, threshold=0.4, per_label=per_label, seed=seed)
        assert list(picks) == expected
        assert len(set(picks.tolist())) == 8


def test_badge_seeds_among_the_largest_gradients_only() -> None:
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 50, size=(3000, 2))
    idx[:, 1] = (idx[:, 0] + 1) % 50  # distinct within a row
    probs = rng.random((3000, 2)) * 0.4  # below the threshold: r = p
    embeddings = rng.normal(size=(3000, 4))
    norms = gradient_norm(idx, probs) * np.linalg.norm(embeddings, axis=1)

    picks = badge_batch(idx, probs, embeddings, 20, seed=1)

    assert len(set(picks.tolist())) == 20
    assert set(picks.tolist()) <= set(select_top(norms, 2000).tolist())
    assert int(picks[0]) == int(np.argmax(norms))


def test_badge_needs_embeddings_and_shortlists() -> None:
    idx, probs, embeddings = badge_pool()
    scores = score_pool("badge", probs, idx=idx)

    with pytest.raises(ValueError, match="badge needs the pool's embeddings"):
        select_batch("badge", scores, 2, idx=idx, probs=probs)
    with pytest.raises(ValueError, match="badge needs the pool's embeddings"):
        select("badge", 2, idx=idx, probs=probs, n_labels=4)
    with pytest.raises(ValueError, match=r"needs the pool's shortlists \(idx, probs\)"):
        select_batch("badge", scores, 2, embeddings=embeddings)
    with pytest.raises(ValueError, match="probs has 3 rows but there are 2 scores"):
        select_batch("badge", scores[:2], 2, embeddings=embeddings, idx=idx, probs=probs)
    with pytest.raises(ValueError, match="must be 2-D with 3 rows"):
        badge_batch(idx, probs, embeddings[:2], 2)
    with pytest.raises(ValueError, match=r"badge needs the shortlists' label ids \(idx\)"):
        score_pool("badge", probs)


# ------------------------------------------------------------------------------------------------ batch rules


def two_groups() -> tuple[np.ndarray, np.ndarray]:
    """Ten near-duplicates with the best scores, then ten spread-out documents scoring a little lower."""
    rng = np.random.default_rng(2)
    duplicates = np.tile([10.0, 0.0, 0.0], (10, 1)) + rng.normal(0, 0.01, (10, 3))
    spread = rng.normal(0, 3.0, (10, 3)) + np.array([0.0, 10.0, 0.0])
    scores = np.concatenate([np.linspace(1.0, 0.95, 10), np.linspace(0.9, 0.85, 10)])
    return scores, np.vstack([duplicates, spread]).astype(np.float32)


def test_kmeans_batch_takes_one_near_duplicate_and_then_diverse_documents() -> None:
    scores, embeddings = two_groups()

    top = select_top(scores, 4)
    diverse = kmeans_batch(scores, embeddings, 4)

    assert set(top) <= set(range(10))  # plain top-n: four near-duplicates
    assert 0 in diverse and sum(int(i) < 10 for i in diverse) == 1  # the best duplicate, once
    assert len(set(diverse)) == 4


def test_the_default_depends_on_the_size_of_the_label_space() -> None:
    from learner.strategies import DEFAULT_STRATEGY_LARGE, LARGE_LABEL_SPACE, default_for

    assert default_for(None) == default_for(28) == default_for(LARGE_LABEL_SPACE) == DEFAULT_STRATEGY
    assert default_for(LARGE_LABEL_SPACE + 1) == default_for(41_218) == DEFAULT_STRATEGY_LARGE == "random+kmeans"
    assert resolve("default", 28) == ("auto", "auto")
    assert resolve("default", 41_218) == ("random", "kmeans")
    assert resolve("margin", 41_218) == ("margin", "top")  # a named strategy is what it says


def test_random_kmeans_is_a_stratified_random_sample_one_per_cluster() -> None:
    # Three tight clusters of 20 documents: a batch of 3 takes exactly one from each, whichever seed.
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8)
    embeddings = np.repeat(centres, 20, axis=0) + rng.normal(0, 0.01, size=(60, 8))
    assert resolve("random+kmeans") == ("random", "kmeans")
    for seed in range(3):
        scores = score_pool("random+kmeans", np.full((60, 2), 0.5), seed=seed)
        picks = select_batch("random+kmeans", scores, 3, embeddings=embeddings, seed=seed)
        assert sorted(int(i) // 20 for i in picks) == [0, 1, 2]


def test_ranked_batch_matches_modal_on_a_small_pool() -> None:
    modal_batch = pytest.importorskip("modAL.batch")
    scores, embeddings = two_groups()
    uncertainty = (scores - scores.min()) / (scores.max() - scores.min())
    labelled = np.array([[10.0, 0.0, 1.0], [0.0, -5.0, 0.0]])

    class Learner:
        X_training = labelled
        on_transformed = False

    expected, _ = modal_batch.ranked_batch(Learner(), embeddings.astype(np.float64), uncertainty, 5, "euclidean", None)
    picks = ranked_batch(scores, embeddings, labelled, 5)

    assert list(picks) == list(expected)
    assert sum(int(i) < 10 for i in picks) <= 2


def test_select_batch_dispatches_and_needs_embeddings_for_diversity() -> None:
    scores, embeddings = two_groups()

    assert list(select_batch("margin", scores, 3)) == list(select_top(scores, 3))
    assert list(select_batch("margin+kmeans", scores, 3, embeddings=embeddings)) == list(
        kmeans_batch(scores, embeddings, 3)
    )
    with pytest.raises(ValueError, match="needs the pool's embeddings"):
        select_batch("margin+ranked", scores, 3)
    with pytest.raises(ValueError, match="must be 2-D with 20 rows"):
        select_batch("margin+kmeans", scores, 3, embeddings=embeddings[:5])


# -------------------------------------------------------------------------------------------------- modAL peers


def test_modal_peers_reproduce_what_modal_gets_wrong() -> None:
    probs = np.array([[0.001, 0.9, 0.9], [0.5, 0.45, 0.55], [0.95, 0.97, 0.9]])
    # min_confidence: the document with a confidently absent label; avg_confidence: the most confident one
    assert list(modal_select("modal_min_confidence", probs, 1)) == [0]
    assert list(modal_select("modal_avg_confidence", probs, 1)) == [2]
    assert list(select_top(score_pool("uncertainty", probs), 1)) == [1]
    idx = np.tile(np.arange(3), (3, 1))
    assert list(select("modal_avg_confidence", 1, idx=idx, probs=probs, n_labels=3)) == [2]
    with pytest.raises(ValueError, match="every label"):
        select("modal_min_confidence", 1, idx=idx[:, :2], probs=probs[:, :2], n_labels=3)
    with pytest.raises(ValueError, match="modAL peer"):
        score_pool("modal_max_score", probs)


def test_select_scores_and_batches_the_whole_pool() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.2], [0.45, 0.0], [0.3, 0.35]])
    idx = np.tile(np.arange(2), (4, 1))

    picks = select("margin", 2, idx=idx, probs=probs, n_labels=2)

    assert list(picks) == [2, 1]  # -0.05, -0.1 (see test_threshold_margin_exact_scores)


def test_coverage_strategies_cover_the_pool_whatever_the_scores() -> None:
    from learner import coverage

    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    pool = np.vstack([centre + rng.normal(0, 0.05, (8, 3)) for centre in centres])  # three tight groups
    labelled = pool[:1] + 0.01  # the first group already holds a labelled document
    scores = rng.random(len(pool))

    picks = select_batch("typiclust", scores, 2, embeddings=pool, labelled_embeddings=labelled, seed=1)

    np.testing.assert_array_equal(picks, coverage.typiclust(pool, labelled, 2, seed=1))
    assert sorted(int(p) // 8 for p in picks) == [1, 2]  # the two uncovered groups, not the labelled one
    assert score_pool("typiclust", np.zeros((4, 2)), seed=3).shape == (4,)
    with pytest.raises(ValueError, match="embeddings"):
        select_batch("probcover", scores, 2)
    covered = select_batch("probcover", scores, 2, embeddings=pool, labelled_embeddings=labelled, n_labels=3, seed=1)
    assert sorted(int(p) // 8 for p in covered) == [1, 2]
    # A given delta is used as it is: one so coarse that the labelled document's ball covers every group leaves
    # nothing to cover, and the picks follow the seeded order instead.
    coarse = select_batch("probcover", scores, 2, embeddings=pool, labelled_embeddings=labelled, delta=1.5, seed=1)
    np.testing.assert_array_equal(coarse, coverage.probcover(pool, labelled, 2, delta=1.5, seed=1))
    assert 0 in [int(p) // 8 for p in coarse]  # a second document of the labelled group: nothing left to cover


def test_auto_covers_first_then_asks_the_chooser_among_its_arms() -> None:
    from learner import chooser
    from learner.strategies import AUTO_ARMS, auto_arm

    assert auto_arm(None, 0, 28, seed=1) == "probcover"
    assert auto_arm({}, chooser.switch_at(28) - 1, 28) == "probcover"
    assert auto_arm(None, chooser.switch_at(28), 28) == AUTO_ARMS[0]  # nothing learnt: the untried arms in order
    state = chooser.ChooserState()
    for arm in AUTO_ARMS:  # every arm tried once; badge's batch brought by far the most rare positives
        state = chooser.update(state, arm, 5.0 if arm == "badge" else 0.1, discount=1.0)
    picks = [auto_arm(state.to_dict(), 500, 28, seed=seed) for seed in range(20)]
    assert picks.count("badge") >= 15
    with pytest.raises(ValueError, match="auto_arm"):
        score_pool("auto", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="auto_arm"):
        select_batch("auto", np.zeros(2), 1)


def test_anchors_pick_through_the_label_names_whatever_the_scores() -> None:
    from learner import coverage

    docs = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    vectors, counts = np.eye(2), np.array([3, 0])  # label 1 has no positive yet
    scores = np.array([9.0, 0.0, 0.0, 0.0])  # ignored

    picks = select_batch("anchors", scores, 2, embeddings=docs, label_vectors=vectors, label_counts=counts, seed=1)

    assert picks.tolist() == [1, 0]  # label 1's nearest document first, then label 0's
    np.testing.assert_array_equal(picks, coverage.label_anchors(docs, vectors, counts, 2, seed=1))
    assert resolve("anchors") == ("anchors", "anchors") and "anchors" in STRATEGIES
    assert score_pool("anchors", np.zeros((4, 2)), seed=3).shape == (4,)
    with pytest.raises(ValueError, match="label-name vectors"):
        select_batch("anchors", scores, 2, embeddings=docs)
