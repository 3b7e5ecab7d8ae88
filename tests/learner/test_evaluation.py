"""learner.evaluation: metrics of a small evaluation set with bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from learner import metrics
from learner.evaluation import evaluate

# Three documents, labels a, b, c (columns 0, 1, 2).
Y_TRUE = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 0]])
Y_PRED = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]])
TOPK = np.array([[0, 2, 1, -1, -1], [2, 1, 0, -1, -1], [1, 0, 2, -1, -1]])


def test_values_equal_a_hand_computed_case():
    result = evaluate(Y_TRUE, Y_PRED, TOPK, labels=["a", "b", "c"], n_boot=200)
    values = {name: m["value"] for name, m in result["metrics"].items()}
    # TP 2, FP 1, FN 2 -> 4 / 7; per label F1 a 2/3, b 0, c 1 -> 5/9.
    assert values["micro_f1"] == pytest.approx(4 / 7, abs=1e-5)
    assert values["macro_f1"] == pytest.approx(5 / 9, abs=1e-5)
    assert values["P@1"] == pytest.approx(2 / 3, abs=1e-5)
    assert values["P@3"] == pytest.approx(4 / 9, abs=1e-5)
    assert values["P@5"] == pytest.approx(4 / 15, abs=1e-5)
    ndcg = ((1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3)) + 1 + 1 / np.log2(3)) / 3
    assert values["nDCG@5"] == pytest.approx(ndcg, abs=1e-5)
    assert [(x["label"], x["support"], x["f1"]) for x in result["per_label"]] == [
        ("a", 2, pytest.approx(2 / 3, abs=1e-5)),
        ("b", 1, 0.0),
        ("c", 1, 1.0),
    ]
    assert result["n_documents"] == 3 and result["n_boot"] == 200


def test_psp_matches_the_metrics_module():
    propensities = metrics.propensities(np.array([50, 3, 10]), 100)
    result = evaluate(Y_TRUE, Y_PRED, TOPK, propensities=propensities, n_boot=100)
    expected = metrics.psp_at_k(Y_TRUE, TOPK, 5, propensities)
    assert result["metrics"]["PSP@5"]["value"] == pytest.approx(expected, abs=1e-5)


def test_identical_documents_have_no_uncertainty():
    Y = np.tile([[1, 0, 1]], (20, 1))
    P = np.tile([[1, 1, 0]], (20, 1))
    top = np.tile([[0, 1, 2, -1, -1]], (20, 1))
    for m in evaluate(Y, P, top, n_boot=50)["metrics"].values():
        assert m["low"] == m["value"] == m["high"]


def _random_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 8)) < 0.3).astype(int)
    noise = rng.random((n, 8)) < 0.2
    P = np.where(noise, 1 - Y, Y)
    top = np.argsort(-(Y + rng.random((n, 8))), axis=1)[:, :5]
    return Y, P, top


def test_intervals_cover_the_value_and_shrink_with_more_documents():
    widths = {}
    for n in (50, 800):
        result = evaluate(*_random_set(n, seed=n), n_boot=500)
        for m in result["metrics"].values():
            assert m["low"] <= m["value"] <= m["high"]
        micro = result["metrics"]["micro_f1"]
        widths[n] = micro["high"] - micro["low"]
    # sqrt(800 / 50) = 4: the interval is roughly four times narrower.
    assert 2.5 < widths[50] / widths[800] < 6.5


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="topk must have shape"):
        evaluate(Y_TRUE, Y_PRED, TOPK[:, :3])
    with pytest.raises(ValueError, match="Y_pred has shape"):
        evaluate(Y_TRUE, Y_PRED[:2], TOPK)
    with pytest.raises(ValueError, match="n_boot"):
        evaluate(Y_TRUE, Y_PRED, TOPK, n_boot=1)
