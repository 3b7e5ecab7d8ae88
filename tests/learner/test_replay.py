"""learner.replay: labels a project's picks saved against random picks, cross-fitted on its evaluation set."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import scipy.sparse as sp

from learner import metrics
from learner.replay import Labelled, estimate, picks_grid, random_grid, weighted_macro_f1, weighted_micro_f1

# A designed pool of 400 documents in separable clusters: 280 of them (70 %) are variations of one dull document
# without any label, the other 120 fall evenly into five clusters with fixed label sets. Random picks spend most of
# their labels on the dull cluster; a strategy that covers the labelled clusters early learns every label from a
# few documents. The evaluation set is a uniform random sample of the same pool (the first 80 of a shuffled pool),
# so the design is what a project would see.
LABEL_SETS = [[], [0], [1], [2], [0, 3], [1, 2]]
LABELS = [f"label-{j}" for j in range(4)]
EMBEDDINGS_ONLY = {"features": "embeddings"}
N_EVAL = 80


def _pool(seed: int = 0, *, noise: float = 0.8, dim: int = 16) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(LABEL_SETS), dim)) * 3.0
    cluster = np.array([0] * 280 + [c for c in range(1, len(LABEL_SETS)) for _ in range(24)])
    cluster = cluster[rng.permutation(len(cluster))]
    X = (centers[cluster] + rng.normal(scale=noise, size=(len(cluster), dim))).astype(np.float32)
    Y = np.zeros((len(cluster), len(LABELS)), dtype=np.float32)
    for i, c in enumerate(cluster):
        Y[i, LABEL_SETS[c]] = 1.0
    return X, sp.csr_matrix(Y), cluster


def _by_cluster(cluster: np.ndarray) -> dict[int, list[int]]:
    rest = range(N_EVAL, len(cluster))  # the picks come from the pool outside the evaluation set
    return {c: [i for i in rest if cluster[i] == c] for c in range(len(LABEL_SETS))}


def _informative_picks(cluster: np.ndarray, n: int = 40, dull: int = 8) -> np.ndarray:
    """A few dull documents, then the labelled clusters in turn (what a good strategy does)."""
    by = _by_cluster(cluster)
    picks = by[0][:dull]
    for k in range(n):
        for c in range(1, len(LABEL_SETS)):
            if len(picks) < n:
                picks.append(by[c][k])
    return np.array(picks)


def _one_label_picks(cluster: np.ndarray) -> np.ndarray:
    """A strategy stuck on one label: label-0's cluster and dull documents, nothing else."""
    by = _by_cluster(cluster)
    return np.array([i for pair in zip(by[1][:15], by[0][:15], strict=True) for i in pair])


def _estimate(picks: np.ndarray, seed: int = 0, **kwargs) -> dict:
    X, Y, _ = _pool(seed)
    evaluation = np.arange(N_EVAL)
    return estimate(
        picks=Labelled(Y[picks], embeddings=X[picks]),
        evaluation=Labelled(Y[evaluation], embeddings=X[evaluation]),
        labels=LABELS,
        config=EMBEDDINGS_ONLY,
        strategy="margin+kmeans",
        **kwargs,
    )


@pytest.fixture(scope="module")
def informative() -> dict:
    return _estimate(_informative_picks(_pool(0)[2]))


def test_picks_that_cover_the_labels_save_labels_with_an_interval_below_one(informative) -> None:
    result = informative

    assert result["verdict"] == "saves"
    assert result["favoured"] == "margin+kmeans"
    ratio = result["ratio"]
    assert ratio["value"] < 1 and ratio["high"] is not None and ratio["high"] < 1
    assert ratio["low"] <= ratio["value"] <= ratio["high"]
    assert ratio["never"] == 0.0
    assert result["n_random"] == N_EVAL // 2 and result["evaluation_documents"] == N_EVAL and result["picks"] == 40
    assert result["labels_picks"] == pytest.approx(ratio["value"] * result["n_random"], abs=0.1)
    assert result["summary"].startswith(f"To reach the micro-F1 that {N_EVAL // 2} random picks reach")
    assert f"{ratio['value']:.2f}x, 95 % interval {ratio['low']:.2f}–{ratio['high']:.2f}" in result["summary"]
    json.dumps(result)  # stored as JSON: plain types only


def test_the_curves_have_intervals_around_their_values_and_the_target_is_random_at_its_end(informative) -> None:
    result = informative
    random_curve, picks_curve = result["curves"]["random"], result["curves"]["picks"]

    assert [p["n"] for p in random_curve] == result["sizes"]["random"] == random_grid(N_EVAL // 2)
    assert [p["n"] for p in picks_curve] == result["sizes"]["picks"]
    assert all(p["low"] <= p["value"] <= p["high"] for p in random_curve + picks_curve)
    assert result["target"] == pytest.approx(random_curve[-1]["value"], abs=1e-4)
    # the picks reach it before random: the picks curve is above random's at the random arm's last size
    assert picks_curve[-1]["value"] > random_curve[-1]["value"]
    macro = result["macro_f1"]
    assert macro["ratio"]["low"] <= macro["ratio"]["value"] <= macro["ratio"]["high"]
    assert macro["curves"]["random"][-1]["value"] == pytest.approx(macro["target"], abs=1e-4)


def test_picks_of_one_label_cost_labels_and_random_is_favoured() -> None:
    result = _estimate(_one_label_picks(_pool(0)[2]))

    assert result["verdict"] == "costs"
    assert result["favoured"] == "random"
    assert result["labels_picks"] is None  # never reached with every pick
    assert result["ratio"]["value"] is None and result["ratio"]["never"] > 0.9
    assert result["ratio"]["low"] is None or result["ratio"]["low"] > 1
    assert result["picks_max"] == 30 and result["sizes"]["picks"][-1] == 30
    assert "needed more than the 30 labels they have" in result["summary"]


def test_too_few_evaluation_documents_or_picks_say_what_is_missing() -> None:
    X, Y, cluster = _pool(0)
    picks = _informative_picks(cluster, n=12, dull=2)
    result = estimate(
        picks=Labelled(Y[picks], embeddings=X[picks]),
        evaluation=Labelled(Y[:15], embeddings=X[:15]),
        labels=LABELS,
        config=EMBEDDINGS_ONLY,
    )

    assert result["verdict"] == "not_enough_data" and result["favoured"] is None
    assert "at least 20 labelled evaluation documents (has 15)" in result["reason"]
    assert "at least 20 labelled documents picked by the strategy (has 12)" in result["reason"]
    assert "ratio" not in result and result["caveats"]


def test_the_same_inputs_give_the_same_estimate_and_progress_reaches_the_end() -> None:
    reports: list[float] = []
    picks = _informative_picks(_pool(1)[2])
    first = _estimate(picks, seed=1, orders=1, n_boot=200, on_progress=reports.append)
    second = _estimate(picks, seed=1, orders=1, n_boot=200)

    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in second.items() if k != "seconds"}
    assert reports[-1] == pytest.approx(1.0) and reports == sorted(reports)
    assert len(reports) == first["models"] == 2 * 1 * len(first["sizes"]["random"]) + len(first["sizes"]["picks"])


def test_bad_inputs_are_refused_with_a_clear_message() -> None:
    _, Y, cluster = _pool(0)
    texts = [f"document {i} of cluster {c}" for i, c in enumerate(cluster)]
    with pytest.raises(ValueError, match="columns for 4 labels"):
        estimate(
            picks=Labelled(Y[:30, :3], texts=texts[:30]),
            evaluation=Labelled(Y[30:60], texts=texts[30:60]),
            labels=LABELS,
            config={"features": "tfidf"},
        )
    with pytest.raises(ValueError, match="need the documents' embeddings"):
        estimate(
            picks=Labelled(Y[100:130], texts=texts[100:130]),
            evaluation=Labelled(Y[:30], texts=texts[:30]),
            labels=LABELS,
            config=EMBEDDINGS_ONLY,
        )
    with pytest.raises(ValueError, match="only 0 and 1"):
        Labelled(np.array([[2.0, 0.0, 0.0, 0.0]]), texts=texts[:1])
    with pytest.raises(ValueError, match="2 texts but 1 rows"):
        Labelled(Y[:1], texts=texts[:2])


def test_the_grids() -> None:
    assert random_grid(40) == [10, 20, 40]
    assert random_grid(100) == [10, 20, 40, 100]
    assert random_grid(10) == [3, 7, 10]  # three sizes at least
    assert random_grid(25) == [8, 17, 25]
    assert picks_grid([10, 20, 40], 40) == [10, 20, 40]
    assert picks_grid([10, 20, 40], 30) == [10, 20, 30]  # fewer picks than the random arm has
    assert picks_grid([10, 20, 40], 44) == [10, 20, 40, 44]
    beyond = picks_grid([10, 20, 40], 2000)
    assert beyond[:3] == [10, 20, 40] and beyond[-1] == 2000 and len(beyond) == 3 + 4
    assert all(b / a >= 1.5 for a, b in itertools.pairwise(beyond[2:]))


def test_bootstrap_counts_equal_the_metrics_on_the_resampled_documents() -> None:
    rng = np.random.default_rng(3)
    true = sp.csr_matrix((rng.random((12, 6)) < 0.3).astype(np.float32))
    pred = sp.csr_matrix((rng.random((12, 6)) < 0.3).astype(np.float32))
    draw = rng.multinomial(12, np.full(12, 1 / 12))  # how often each document was drawn
    weights = np.vstack([np.ones(12), draw]).astype(np.float64)
    rows = np.repeat(np.arange(12), draw)
    columns = np.flatnonzero(np.asarray(true.sum(axis=0)).ravel() > 0)

    micro = weighted_micro_f1(true, pred, weights)
    macro = weighted_macro_f1(true, pred, weights, columns)

    assert micro[0] == pytest.approx(metrics.micro_f1(true, pred))
    assert micro[1] == pytest.approx(metrics.micro_f1(true[rows], pred[rows]))
    assert macro[0] == pytest.approx(metrics.macro_f1(true, pred))
    assert macro[1] == pytest.approx(metrics.macro_f1(true[rows], pred[rows]))
