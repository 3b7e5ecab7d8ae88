from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from learner import coverage
from learner.coverage import label_anchors, probcover, probcover_delta, typicality, typiclust


def on_circle(angles: list[float] | np.ndarray) -> np.ndarray:
    """(N, 2) unit vectors at the given angles (radians): cosine distance = 1 - cos(angle difference)."""
    a = np.asarray(angles, dtype=np.float64)
    return np.stack([np.cos(a), np.sin(a)], axis=1)


# Offsets (in 0.01 rad) that grow outwards: a group's middle point is its unique most typical one.
SPREAD = [0, 1, -1, 3, -3, 6, -6, 10, -10, 15, -15]
GROUP_CENTRES = [0.0, 2.1, 4.2]  # 120 degrees apart
GROUP_SIZES = [11, 9, 7]  # A, B, C: all bigger than TypiClust's minimum cluster size (5)


def three_groups() -> tuple[np.ndarray, np.ndarray, list[int]]:
    """27 points in three tight groups of 11, 9 and 7 on the unit circle, shuffled.

    Returns the points (27, 2), each point's group (27,), and the index of each group's middle point.
    """
    angles = np.concatenate(
        [[c + 0.01 * o for o in SPREAD[:size]] for c, size in zip(GROUP_CENTRES, GROUP_SIZES, strict=True)]
    )
    group = np.repeat(np.arange(3), GROUP_SIZES)
    order = np.random.default_rng(5).permutation(len(angles))
    angles, group = angles[order], group[order]
    middles = [int(np.flatnonzero(np.isclose(angles, c))[0]) for c in GROUP_CENTRES]
    return on_circle(angles), group, middles


# ---------------------------------------------------------------------------------------------------- typicality
def test_typicality_is_one_over_the_mean_cosine_distance_to_the_nearest_others() -> None:
    x = on_circle([0.0, 0.1, -0.1, 0.3])

    values = typicality(x, knn=2)

    d = {a: 1.0 - math.cos(a) for a in (0.1, 0.2, 0.3, 0.4)}
    expected = [1 / d[0.1], 2 / (d[0.1] + d[0.2]), 2 / (d[0.1] + d[0.2]), 2 / (d[0.2] + d[0.3])]
    np.testing.assert_allclose(values, expected, rtol=1e-3)
    assert int(np.argmax(values)) == 0


def test_typicality_of_a_lone_point_or_an_exact_duplicate_is_infinite() -> None:
    assert typicality(on_circle([1.0]))[0] == np.inf
    assert np.isinf(typicality(on_circle([0.5, 0.5, 1.5]), knn=1)[:2]).all()


def test_typicality_scales_rows_to_unit_length() -> None:
    x = on_circle([0.0, 0.1, -0.1, 0.3])

    np.testing.assert_allclose(typicality(x * [[3.0], [0.5], [2.0], [7.0]], knn=2), typicality(x, knn=2), rtol=1e-5)


# ----------------------------------------------------------------------------------------------------- typiclust
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_typiclust_takes_the_middle_of_the_biggest_uncovered_group_first(seed: int) -> None:
    x, _, (a, b, c) = three_groups()

    picks = typiclust(x, None, 3, seed=seed, knn=2)

    assert picks.dtype == np.int64
    assert picks.tolist() == [a, b, c]


@pytest.mark.parametrize(("labelled_angle", "expected_groups"), [(0.02, (1, 2)), (4.19, (0, 1)), (2.12, (0, 2))])
def test_typiclust_skips_a_group_already_covered_by_a_labelled_document(
    labelled_angle: float, expected_groups: tuple[int, int]
) -> None:
    x, _, middles = three_groups()

    picks = typiclust(x, on_circle([labelled_angle]), 2, knn=2)

    assert picks.tolist() == [middles[g] for g in expected_groups]


def test_typiclust_never_takes_two_from_a_group_before_every_group_has_one() -> None:
    x, group, middles = three_groups()

    picks = typiclust(x, None, 9, knn=2, max_clusters=3)

    assert group[picks].tolist() == [0, 1, 2] * 3
    assert picks[:3].tolist() == middles
    assert len(set(picks.tolist())) == 9


def test_typiclust_leaves_tiny_clusters_until_the_others_are_empty() -> None:
    x, group, middles = three_groups()
    outliers = on_circle([5.5, 5.51, 5.49])  # a group of 3 <= min_cluster_size
    pool = np.concatenate([x, outliers])
    labelled = on_circle([0.02, 2.12, 4.19])  # one labelled document in each of A, B, C

    default = typiclust(pool, labelled, 4, knn=2, max_clusters=4)
    without_minimum = typiclust(pool, labelled, 4, knn=2, max_clusters=4, min_cluster_size=0)

    assert default[:3].tolist() == middles
    assert group[default[3]] == 0  # the biggest group again, not the outliers
    assert without_minimum.tolist() == [len(x), *middles]  # the outliers' middle first: no labelled document there


def test_typiclust_returns_every_index_when_the_pool_is_not_bigger_than_n() -> None:
    x, _, _ = three_groups()

    assert typiclust(x, None, 27).tolist() == list(range(27))
    assert typiclust(x, None, 0).tolist() == []


def test_typiclust_samples_large_pools_deterministically(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coverage, "FIT_SAMPLE", 300)
    monkeypatch.setattr(coverage, "TYPICALITY_SAMPLE", 50)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8)).astype(np.float32)
    labelled = rng.normal(size=(30, 8))

    first = typiclust(x, labelled, 40, seed=3)
    again = typiclust(x, labelled, 40, seed=3)
    other = typiclust(x, labelled, 40, seed=4)

    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()
    assert len(set(first.tolist())) == 40
    assert first.min() >= 0 and first.max() < 2000


@pytest.mark.parametrize(
    ("embeddings", "labelled", "n", "message"),
    [
        (np.ones(4), None, 1, "2-D"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), None, 1, "NaN"),
        (np.eye(3), np.ones((1, 2)), 1, "3 columns"),
        (np.eye(3), None, -1, "non-negative"),
        (np.eye(3), None, 1.5, "non-negative"),
    ],
)
def test_typiclust_rejects_bad_input(embeddings: np.ndarray, labelled: np.ndarray | None, n: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        typiclust(embeddings, labelled, n)


# ----------------------------------------------------------------------------------------------------- probcover
# Radius 0.1 rad: A's middle covers its 5 points, B's middle its 3, C's two points each cover both, D is alone.
RADIUS = 0.1
DELTA = 1.0 - math.cos(RADIUS)
REGIONS = {
    "A": [0.0, 0.04, -0.04, 0.08, -0.08],
    "B": [1.0, 1.06, 0.94],
    "C": [2.0, 2.06],
    "D": [3.0],
}


def regions() -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """11 points in four regions (shuffled): points (11, 2), each point's angle, the index of each region's
    best ball (A's and B's middles, D's only point)."""
    angles = np.array([a for values in REGIONS.values() for a in values])
    angles = angles[np.random.default_rng(7).permutation(len(angles))]
    where = {name: int(np.flatnonzero(np.isclose(angles, value))[0]) for name, value in (("A", 0.0), ("B", 1.0))}
    where["D"] = int(np.flatnonzero(np.isclose(angles, 3.0))[0])
    return on_circle(angles), angles, where


def test_probcover_picks_the_ball_covering_most_then_the_next_uncovered_region() -> None:
    x, angles, where = regions()

    picks = probcover(x, None, 4, delta=DELTA)

    assert picks.dtype == np.int64
    assert picks[:2].tolist() == [where["A"], where["B"]]
    assert round(float(angles[picks[2]]), 2) in REGIONS["C"]
    assert picks[3] == where["D"]


def test_probcover_breaks_ties_by_a_seeded_order() -> None:
    x, angles, _ = regions()

    third = {seed: round(float(angles[probcover(x, None, 3, delta=DELTA, seed=seed)[2]]), 2) for seed in range(12)}

    assert set(third.values()) == set(REGIONS["C"])  # both of C's equal balls get picked, depending on the seed
    assert third == {seed: round(float(angles[probcover(x, None, 3, delta=DELTA, seed=seed)[2]]), 2) for seed in third}


def test_probcover_skips_a_region_covered_by_a_labelled_document() -> None:
    x, angles, where = regions()

    picks = probcover(x, on_circle([1.01]), 3, delta=DELTA)

    assert picks[0] == where["A"]
    assert round(float(angles[picks[1]]), 2) in REGIONS["C"]
    assert picks[2] == where["D"]


def test_probcover_counts_only_uncovered_documents_in_a_ball() -> None:
    x, _, where = regions()

    # 0.07 rad covers A's 0, 0.04 and 0.08: A's best ball now holds 2 uncovered points, B's middle 3.
    picks = probcover(x, on_circle([0.07]), 1, delta=DELTA)

    assert picks.tolist() == [where["B"]]


@pytest.mark.parametrize("with_labelled", [False, True])
def test_probcover_each_pick_covers_as_many_uncovered_documents_as_the_best_ball(with_labelled: bool) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 3))
    labelled = rng.normal(size=(10, 3)) if with_labelled else None
    delta = 0.2  # balls of about 30 of the 300 documents, overlapping a lot
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    ball = (unit @ unit.T) >= 1 - delta  # (N, N) dense reference
    uncovered = np.ones(len(x), dtype=bool)
    if labelled is not None:
        known = labelled / np.linalg.norm(labelled, axis=1, keepdims=True)
        uncovered &= ~((known @ unit.T) >= 1 - delta).any(axis=0)

    picks = probcover(x, labelled, 40, delta=delta)

    gains = []
    for pick in picks:
        gain = ball.astype(int) @ uncovered.astype(int)  # (N,) uncovered documents in each ball now
        assert gain[pick] == gain.max()
        gains.append(int(gain[pick]))
        uncovered &= ~ball[pick]
    assert gains[0] > 5 and gains == sorted(gains, reverse=True)


def test_probcover_fills_in_seeded_order_once_everything_is_covered() -> None:
    x, _, where = regions()

    picks = probcover(x, None, 8, delta=DELTA, seed=1)

    assert picks[[0, 1, 3]].tolist() == [where["A"], where["B"], where["D"]]
    assert len(set(picks.tolist())) == 8
    assert picks.tolist() == probcover(x, None, 8, delta=DELTA, seed=1).tolist()


def test_probcover_returns_every_index_when_the_pool_is_not_bigger_than_n() -> None:
    x, _, _ = regions()

    assert probcover(x, None, 11, delta=DELTA).tolist() == list(range(11))
    assert probcover(x, None, 0, delta=DELTA).tolist() == []


def test_ball_graph_keeps_at_most_the_nearest_max_neighbours_and_itself() -> None:
    x = on_circle([0.0, 0.01, 0.03, 0.06, 2.0])

    full = coverage._ball_graph(x.astype(np.float32), DELTA, 10)
    capped = coverage._ball_graph(x.astype(np.float32), DELTA, 2)

    assert [sorted(full[i].indices.tolist()) for i in range(5)] == [[0, 1, 2, 3]] * 4 + [[4]]
    assert [sorted(capped[i].indices.tolist()) for i in range(5)] == [[0, 1], [0, 1], [1, 2], [2, 3], [4]]


def test_probcover_is_unchanged_by_a_cap_that_no_ball_reaches() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    delta = 0.05
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    biggest_ball = int(((unit @ unit.T) >= 1 - delta).sum(axis=1).max())

    assert probcover(x, None, 30, delta=delta, max_neighbours=biggest_ball).tolist() == (
        probcover(x, None, 30, delta=delta, max_neighbours=10_000).tolist()
    )
    assert probcover(x, None, 30, delta=delta, max_neighbours=2).tolist() != (
        probcover(x, None, 30, delta=delta).tolist()
    )


def test_probcover_samples_large_pools_deterministically(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coverage, "PROBCOVER_SAMPLE", 300)
    x = np.random.default_rng(2).normal(size=(3000, 4))

    picks = probcover(x, x[:5], 50, delta=0.1, seed=2)

    assert picks.tolist() == probcover(x, x[:5], 50, delta=0.1, seed=2).tolist()
    assert len(set(picks.tolist())) == 50
    assert picks.min() >= 0 and picks.max() < 3000


@pytest.mark.parametrize(("delta", "n", "message"), [(-0.1, 1, "delta"), (2.5, 1, "delta"), (0.1, -2, "n must")])
def test_probcover_rejects_bad_input(delta: float, n: int, message: str) -> None:
    x, _, _ = regions()

    with pytest.raises(ValueError, match=message):
        probcover(x, None, n, delta=delta)


# ----------------------------------------------------------------------------------------------- probcover_delta
def separated_clusters() -> np.ndarray:
    """15 points: three clusters of 5 at 0, 0.5 and 1.0 rad, each spread over +-0.04 rad.

    Facing edges of neighbouring clusters are 0.42 rad apart (cosine distance 0.0869), the next pairs 0.44
    (0.0952); within a cluster points are at most 0.08 rad apart (0.0032).
    """
    offsets = [0.0, 0.02, -0.02, 0.04, -0.04]
    angles = np.array([c + o for c in (0.0, 0.5, 1.0) for o in offsets])
    return on_circle(angles[np.random.default_rng(3).permutation(len(angles))])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probcover_delta_is_the_largest_candidate_below_the_gap_between_clusters(seed: int) -> None:
    x = separated_clusters()

    delta = probcover_delta(x, n_clusters=3, seed=seed)

    assert delta == 0.08  # every ball pure; at 0.09 the 4 facing edge points (11 / 15 pure) are not
    assert 1 - math.cos(0.08) <= delta < 1 - math.cos(0.42)


def test_probcover_delta_follows_the_purity_share() -> None:
    x = separated_clusters()

    assert probcover_delta(x, n_clusters=3, purity=0.7) == 0.09  # 11 / 15 pure at 0.09, 7 / 15 at 0.10
    assert probcover_delta(x, n_clusters=3, purity=0.4) == 0.10


def test_probcover_delta_with_that_delta_picks_one_point_per_cluster_first() -> None:
    x = separated_clusters()
    cluster = np.round(np.arctan2(x[:, 1], x[:, 0]) * 2).astype(int)  # 0, 1, 2

    picks = probcover(x, None, 3, delta=probcover_delta(x, n_clusters=3))

    assert sorted(cluster[picks].tolist()) == [0, 1, 2]


def test_probcover_delta_falls_back_to_the_smallest_candidate(caplog: pytest.LogCaptureFixture) -> None:
    x = on_circle(np.linspace(0.0, 1.0, 20))  # one arc cut in two: every wide ball crosses the cut

    with caplog.at_level(logging.WARNING, logger="learner.coverage"):
        delta = probcover_delta(x, n_clusters=2, candidates=[0.6, 0.5])

    assert delta == 0.5
    assert "no delta candidate" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_clusters": 16}, "n_clusters"),
        ({"n_clusters": 0}, "n_clusters"),
        ({"n_clusters": 2, "purity": 0.0}, "purity"),
        ({"n_clusters": 2, "candidates": []}, "candidates"),
        ({"n_clusters": 2, "candidates": [0.1, 3.0]}, "delta"),
    ],
)
def test_probcover_delta_rejects_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        probcover_delta(separated_clusters(), **kwargs)


# --------------------------------------------------------------------------------------------------- label anchors
def anchor_pool() -> tuple[np.ndarray, np.ndarray]:
    """Six documents in 3-D and three label vectors on the axes: each label has a nearest and a second document."""
    docs = np.array(
        [
            [0.9, 0.1, 0.0],  # 0: label 0's nearest
            [0.7, 0.3, 0.0],  # 1: label 0's second
            [0.1, 0.9, 0.0],  # 2: label 1's nearest
            [0.3, 0.7, 0.1],  # 3: label 1's second
            [0.0, 0.2, 0.9],  # 4: label 2's nearest
            [0.2, 0.1, 0.6],  # 5: label 2's second
        ]
    )
    return docs, np.eye(3)


def test_label_anchors_seek_the_rarest_labels_first_through_their_names() -> None:
    docs, labels = anchor_pool()

    # Label 2 has no positive, label 0 one, label 1 five: label 2's nearest document first, then label 0's.
    assert label_anchors(docs, labels, [1, 5, 0], 2).tolist() == [4, 0]
    # More picks than labels: a second round, each label's next most similar document.
    assert label_anchors(docs, labels, [1, 5, 0], 5).tolist() == [4, 0, 2, 5, 1]
    # A label without a vector (zero row) gets nothing, however rare.
    no_vector = labels.copy()
    no_vector[2] = 0.0
    assert label_anchors(docs, no_vector, [1, 5, 0], 2).tolist() == [0, 2]


def test_label_anchors_edge_cases_and_bad_input() -> None:
    docs, labels = anchor_pool()

    assert label_anchors(docs, labels, [0, 0, 0], 6).tolist() == list(range(6))  # the whole pool
    assert label_anchors(docs, labels, [0, 0, 0], 0).tolist() == []
    assert label_anchors(docs, np.zeros((3, 3)), [0, 0, 0], 2).tolist() == []  # no label has a vector
    ties = {tuple(label_anchors(docs, labels, [0, 0, 0], 3, seed=seed).tolist()) for seed in range(10)}
    assert all(sorted(picks) == [0, 2, 4] for picks in ties) and len(ties) > 1  # ties: a seeded label order
    with pytest.raises(ValueError, match="label_vectors"):
        label_anchors(docs, np.eye(4), [0, 0, 0, 0], 2)
    with pytest.raises(ValueError, match="label_counts"):
        label_anchors(docs, labels, [0, -1, 0], 2)
    with pytest.raises(ValueError, match="label_counts"):
        label_anchors(docs, labels, [0, 0], 2)


def test_label_anchors_with_the_bundled_encoder_find_the_document_that_names_a_rare_label() -> None:
    from learner.config import EncoderConfig
    from learner.encoder import Encoder

    encoder = Encoder.load(EncoderConfig(device="cpu"))
    labels = ["joy", "anger", "disgust", "fear"]
    texts = [
        "What a happy day, I am full of joy.",
        "I am furious, this makes me so angry.",
        "We walked along the beach in the afternoon.",
        "That meal was disgusting, utterly gross and revolting.",
        "The train was late again this morning.",
    ]
    # disgust has no positive yet, the others several: its document comes first, then fear's best guess.
    picks = label_anchors(encoder.encode(texts), encoder.encode(labels), [5, 3, 0, 2], 1)
    assert texts[int(picks[0])].startswith("That meal was disgusting")
