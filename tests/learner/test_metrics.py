from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from learner.metrics import (
    macro_f1,
    micro_f1,
    ndcg_at_k,
    precision_at_k,
    propensities,
    psp_at_k,
    ranking_report,
    recall_at_k,
)

Y_TRUE = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]])
Y_PRED = np.array([[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]])
# label 0: tp 2, true 2, pred 2 -> F1 1;  label 1: tp 1, true 1, pred 2 -> 2/3;
# label 2: tp 0, true 1, pred 0 -> 0;     label 3: absent from Y_TRUE (predicted once) -> left out.
# pooled: tp 3, fp 2, fn 1 -> micro-F1 = 6 / 9.


def test_micro_f1_pools_every_decision() -> None:
    assert micro_f1(Y_TRUE, Y_PRED) == pytest.approx(6 / 9)


def test_macro_f1_averages_over_labels_present_in_y_true() -> None:
    assert macro_f1(Y_TRUE, Y_PRED) == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_sparse_bool_and_dense_inputs_agree() -> None:
    for true, pred in [
        (sp.csr_matrix(Y_TRUE), sp.csr_matrix(Y_PRED)),
        (Y_TRUE.astype(bool), Y_PRED.astype(np.float32)),
        (sp.csr_matrix(Y_TRUE), Y_PRED.astype(bool)),
    ]:
        assert micro_f1(true, pred) == pytest.approx(6 / 9)
        assert macro_f1(true, pred) == pytest.approx(5 / 9)


def test_perfect_and_empty_predictions() -> None:
    assert micro_f1(Y_TRUE, Y_TRUE) == 1.0
    assert macro_f1(Y_TRUE, Y_TRUE) == 1.0
    assert micro_f1(Y_TRUE, np.zeros_like(Y_TRUE)) == 0.0
    assert micro_f1(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0  # nothing to score
    assert macro_f1(np.zeros((2, 3)), np.ones((2, 3))) == 0.0  # no label present


def test_precision_at_k_hand_computed() -> None:
    top = np.array([[0, 1, 3], [2, 1, 0], [0, 3, 2]])

    assert precision_at_k(Y_TRUE, top, 1) == pytest.approx((1 + 0 + 1) / 3)
    assert precision_at_k(Y_TRUE, top, 2) == pytest.approx((1 + 1 + 1) / 6)
    assert precision_at_k(sp.csr_matrix(Y_TRUE), top, 3) == pytest.approx((1 + 1 + 1) / 9)
    assert isinstance(precision_at_k(Y_TRUE, top, 1), float)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: micro_f1(Y_TRUE, Y_PRED[:2]), "shape"),
        (lambda: micro_f1(Y_TRUE * 2, Y_PRED), "only 0 and 1"),
        (lambda: macro_f1(np.zeros((0, 3)), np.zeros((0, 3))), "no documents"),
        (lambda: precision_at_k(Y_TRUE, np.zeros((3, 1), dtype=int), 2), "needs at least 2"),
        (lambda: precision_at_k(Y_TRUE, np.zeros((2, 2), dtype=int), 1), "topk_indices must have shape"),
        (lambda: precision_at_k(Y_TRUE, np.full((3, 1), 9), 1), r"label indices in \[0, 4\)"),
        (lambda: precision_at_k(Y_TRUE, np.zeros((3, 1), dtype=int), 0), "k must be a positive integer"),
        (lambda: ndcg_at_k(Y_TRUE, np.full((3, 1), -2), 1), r"label indices in \[0, 4\) or -1"),
        (lambda: ndcg_at_k(Y_TRUE, TOP.astype(float), 1), "integer label indices"),
        (lambda: recall_at_k(Y_TRUE, np.array([[0, 0], [1, 2], [0, 1]]), 2), "row 0 lists label 0 more than once"),
        (lambda: recall_at_k(Y_TRUE, TOP, 2.0), "k must be a positive integer"),  # type: ignore[arg-type]
        (lambda: psp_at_k(Y_TRUE, TOP, 1, np.ones(3)), r"propensities must have shape \(4,\)"),
        (lambda: psp_at_k(Y_TRUE, TOP, 1, np.array([0.5, 0.0, 1.0, 1.0])), "finite and positive"),
        (lambda: propensities([1, 2], 2), "n_train must be an integer >= 3"),
        (lambda: propensities([5, 2], 4), "exceeds n_train"),
        (lambda: propensities([-1, 2], 10), "non-negative"),
        (lambda: propensities([[1, 2]], 10), "1-D"),
        (lambda: propensities([1, 2], 10, B=0.0), "B must be a positive"),
        (lambda: ranking_report(Y_TRUE, TOP, ks=()), "ks must be a non-empty sequence"),
        (lambda: ranking_report(Y_TRUE, TOP, ks=(1, 5)), "needs at least 5"),
    ],
)
def test_bad_input_raises_value_error(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- ranking metrics
# The same truth as above, ranked: TOP[i] lists the labels of document i, best first.
TOP = np.array([[0, 1, 3], [2, 1, 0], [0, 3, 2]])
# Hits (1 where the ranked label is true):  doc 0: [1, 0, 0]  doc 1: [0, 1, 0]  doc 2: [1, 0, 0]
# Positives per document: 2, 1, 1.
LOG2_3 = np.log2(3.0)  # the discount of rank 2 is 1 / log2(3) = 0.6309


def test_ndcg_at_k_hand_computed() -> None:
    # k = 1: DCG = first hit; ideal 1 for every document -> (1 + 0 + 1) / 3.
    assert ndcg_at_k(Y_TRUE, TOP, 1) == pytest.approx(2 / 3)
    # k = 3: doc 0: DCG 1, ideal over min(3, 2) = 2 ranks: 1 + 1/log2(3) -> 1 / 1.6309 = 0.6131
    #        doc 1: DCG 1/log2(3) (hit at rank 2), ideal 1 -> 0.6309
    #        doc 2: DCG 1, ideal 1 -> 1
    expected = (1 / (1 + 1 / LOG2_3) + 1 / LOG2_3 + 1) / 3  # 0.7480
    assert ndcg_at_k(Y_TRUE, TOP, 3) == pytest.approx(expected)
    assert ndcg_at_k(sp.csr_matrix(Y_TRUE), TOP, 3) == pytest.approx(expected)
    assert isinstance(ndcg_at_k(Y_TRUE, TOP, 3), float)


def test_recall_at_k_hand_computed() -> None:
    # k = 1: doc 0 finds 1 of 2, doc 1 0 of 1, doc 2 1 of 1 -> (0.5 + 0 + 1) / 3
    assert recall_at_k(Y_TRUE, TOP, 1) == pytest.approx(0.5)
    # k = 2: doc 0 1 of 2, doc 1 1 of 1, doc 2 1 of 1 -> (0.5 + 1 + 1) / 3
    assert recall_at_k(Y_TRUE, TOP, 2) == pytest.approx(2.5 / 3)
    assert recall_at_k(sp.csr_matrix(Y_TRUE), TOP, 3) == pytest.approx(2.5 / 3)


def test_documents_without_positives_count_zero_for_p_and_ndcg_and_are_left_out_of_recall() -> None:
    y = np.vstack([Y_TRUE, np.zeros((1, 4), dtype=int)])  # a fourth document with no label
    top = np.vstack([TOP, [[0, 1, 2]]])

    assert precision_at_k(y, top, 1) == pytest.approx(2 / 4)  # (1 + 0 + 1 + 0) / 4
    assert ndcg_at_k(y, top, 1) == pytest.approx(2 / 4)  # the empty document contributes 0
    assert recall_at_k(y, top, 1) == pytest.approx(0.5)  # mean over the 3 documents with positives, unchanged
    assert recall_at_k(np.zeros((2, 4)), np.zeros((2, 1), dtype=int), 1) == 0.0
    assert ndcg_at_k(np.zeros((2, 4)), np.zeros((2, 1), dtype=int), 1) == 0.0


def test_padding_is_a_miss_and_k_may_exceed_the_number_of_labels() -> None:
    # Two labels, both true; the model can rank only 2, the rest of the top-5 is padding.
    y = np.array([[1, 1], [0, 1]])
    top = np.array([[1, 0, -1, -1, -1], [0, -1, -1, -1, -1]])

    # P@5: doc 0 2 hits / 5, doc 1 0 hits / 5 -> (0.4 + 0) / 2
    assert precision_at_k(y, top, 5) == pytest.approx(0.2)
    # nDCG@5: doc 0 DCG 1 + 1/log2(3) = ideal over min(5, 2) ranks -> 1; doc 1 DCG 0 -> 0
    assert ndcg_at_k(y, top, 5) == pytest.approx(0.5)
    assert recall_at_k(y, top, 5) == pytest.approx(0.5)  # (2/2 + 0/1) / 2
    # PSP@5 with p = [0.5, 0.25]: found 2 + 4 = 6 (doc 0); best 6 (doc 0) + 4 (doc 1) = 10
    assert psp_at_k(y, top, 5, np.array([0.5, 0.25])) == pytest.approx(0.6)
    # A padded slot may be anywhere and repeats freely.
    assert precision_at_k(y, np.array([[-1, 1], [-1, -1]]), 2) == pytest.approx(0.25)


def test_propensities_hand_computed() -> None:
    # N = 100, A = 0.55, B = 1.5: C = (ln 100 - 1) * 2.5^0.55 = 3.60517 * 1.65528 = 5.96750
    # N_l = 0:  (0 + 1.5)^-0.55 = 0.800110  -> p = 1 / (1 + 5.96750 * 0.800110) = 1 / 5.77466 = 0.173170
    # N_l = 10: (11.5)^-0.55   = 0.260985  -> p = 1 / (1 + 1.557436) = 0.391017
    # N_l = 99: (100.5)^-0.55  = 0.0792152 -> p = 1 / (1 + 0.472717) = 0.679017
    p = propensities(np.array([0, 10, 99]), 100)

    assert p == pytest.approx([0.173170, 0.391017, 0.679017], abs=1e-6)
    assert p.dtype == np.float64
    # Other A and B: N = 1000, A = 0.5, B = 0.4, N_l = 4:
    # C = (ln 1000 - 1) * 1.4^0.5 = 5.907755 * 1.183216 = 6.990185; (4.4)^-0.5 = 0.476731
    # p = 1 / (1 + 6.990185 * 0.476731) = 1 / 4.332438 = 0.230817
    assert propensities([4], 1000, A=0.5, B=0.4) == pytest.approx([0.230817], abs=1e-6)


def test_psp_at_k_hand_computed() -> None:
    p = np.array([0.5, 0.25, 1.0, 0.2])  # 1/p = [2, 4, 1, 5]
    # k = 1: found: doc 0 label 0 -> 2, doc 1 label 2 (miss) -> 0, doc 2 label 0 -> 2; sum 4
    #        best:  doc 0 max(2, 1) = 2, doc 1 4, doc 2 2; sum 8
    assert psp_at_k(Y_TRUE, TOP, 1, p, normalised=False) == pytest.approx(4 / 3)  # 4 / (3 docs * k 1)
    assert psp_at_k(Y_TRUE, TOP, 1, p) == pytest.approx(4 / 8)
    # k = 3: found: doc 0 label 0 -> 2, doc 1 label 1 -> 4, doc 2 label 0 -> 2; sum 8
    #        best:  doc 0 2 + 1 = 3, doc 1 4, doc 2 2; sum 9
    assert psp_at_k(Y_TRUE, TOP, 3, p, normalised=False) == pytest.approx(8 / 9)
    assert psp_at_k(sp.csr_matrix(Y_TRUE), TOP, 3, p) == pytest.approx(8 / 9)


def test_psp_normaliser_ranks_the_true_labels_by_inverse_propensity() -> None:
    y = np.array([[1, 0, 1, 0]])  # true labels 0 (1/p = 2) and 2 (1/p = 1)
    p = np.array([0.5, 0.25, 1.0, 0.2])

    assert psp_at_k(y, np.array([[0]]), 1, p) == pytest.approx(1.0)  # the rarer true label: the best there is
    assert psp_at_k(y, np.array([[2]]), 1, p) == pytest.approx(0.5)  # the common one: 1 of the best 2
    assert psp_at_k(y, np.array([[1]]), 1, p) == 0.0  # a rare but wrong label earns nothing
    assert psp_at_k(np.zeros((1, 4)), np.array([[1]]), 1, p) == 0.0  # no positives anywhere


def test_ranking_report_keys_and_values() -> None:
    p = np.array([0.5, 0.25, 1.0, 0.2])
    top = np.hstack([TOP, np.full((3, 2), -1)])  # (3, 5): padded to k = 5

    report = ranking_report(Y_TRUE, top, propensities=p)

    assert list(report) == [
        *("P@1", "P@3", "P@5"),
        *("nDCG@1", "nDCG@3", "nDCG@5"),
        *("PSP@1", "PSP@3", "PSP@5"),
        *("R@1", "R@3", "R@5"),
    ]
    assert all(type(value) is float for value in report.values())
    assert report["P@5"] == pytest.approx(3 / 15)
    assert report["nDCG@5"] == pytest.approx(ndcg_at_k(Y_TRUE, TOP, 3))  # padding adds nothing
    assert report["PSP@3"] == pytest.approx(8 / 9)
    assert report["R@1"] == pytest.approx(0.5)
    assert "PSP@5" not in ranking_report(Y_TRUE, top)
    assert list(ranking_report(Y_TRUE, top, ks=[2])) == ["P@2", "nDCG@2", "R@2"]


def _reference_ranking(y: np.ndarray, top: np.ndarray, k: int) -> tuple[float, float, float]:
    """P@k, nDCG@k and Recall@k written out as plain loops over documents and ranks."""
    p_sum = ndcg_sum = recall_sum = 0.0
    n_with_positives = 0
    for i in range(y.shape[0]):
        positives = {j for j in range(y.shape[1]) if y[i, j] == 1}
        hits = [1.0 if top[i, r] != -1 and int(top[i, r]) in positives else 0.0 for r in range(k)]
        p_sum += sum(hits) / k
        dcg = sum(hit / np.log2(r + 2) for r, hit in enumerate(hits))
        ideal = sum(1 / np.log2(r + 2) for r in range(min(k, len(positives))))
        ndcg_sum += dcg / ideal if ideal else 0.0
        if positives:
            n_with_positives += 1
            recall_sum += sum(hits) / len(positives)
    n = y.shape[0]
    return p_sum / n, ndcg_sum / n, recall_sum / n_with_positives


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_agree_with_a_reference_loop_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_docs, n_labels = 60, 12
    y = (rng.random((n_docs, n_labels)) < 0.15).astype(np.int64)
    y[:3] = 0  # some documents without positives
    top = np.argsort(-rng.random((n_docs, n_labels)), axis=1)[:, :7]  # distinct labels per row
    top[rng.random((n_docs, 7)) < 0.1] = -1  # some padding

    for k in (1, 3, 5, 7):
        p_ref, ndcg_ref, recall_ref = _reference_ranking(y, top, k)
        for truth in (y, sp.csr_matrix(y), y.astype(bool)):
            assert precision_at_k(truth, top, k) == pytest.approx(p_ref)
            assert ndcg_at_k(truth, top, k) == pytest.approx(ndcg_ref)
            assert recall_at_k(truth, top, k) == pytest.approx(recall_ref)


def test_perfect_ranking_scores_one() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((40, 9)) < 0.3).astype(np.int64)
    y[:, 0] = 1  # every document has a positive
    p = propensities(y.sum(axis=0), 40)
    # Rank each document's true labels first, rarest (largest 1/p) first, then the rest.
    top = np.argsort(-(y / p), axis=1, kind="stable")

    for k in (1, 3, 5):
        assert ndcg_at_k(y, top, k) == pytest.approx(1.0)
        assert psp_at_k(y, top, k, p) == pytest.approx(1.0)
        assert recall_at_k(y, top, 9) == pytest.approx(1.0)
