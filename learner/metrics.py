"""Multi-label metrics with the definitions of SCIENCE.md §5 (numpy and scipy only).

Truth and decisions are (N, L) 0/1 matrices, dense numpy arrays (bool or numeric) or scipy sparse
matrices. Ranking metrics take ``topk_indices``, an (N, >= k) integer array of label indices, best first
(e.g. from ``FastTier.predict_topk``); only its first k columns are read.

Conventions (state them with every reported number):

- ``-1`` in ``topk_indices`` means "no prediction" (padding, e.g. when a model ranks fewer than k labels
  because L < k). A padded slot is a miss; the divisor of P@k and PSP@k stays k. A label may appear at
  most once among a row's first k entries.
- P@k and nDCG@k average over all N documents; a document without positives contributes 0.
- Recall@k averages over the documents with at least one positive (recall is undefined without
  positives); it is 0.0 when no document has a positive.
- PSP@k uses the propensities of Jain et al. (2016) (``propensities``); the normalised value divides the
  mean PSP@k by the mean of the best achievable PSP@k (each document's true labels ranked by 1/p_l), as
  the published tables do (a ratio of means, not a mean of ratios).
- F1 is 0.0 when there is nothing to score (no true and no predicted positives), as in scikit-learn's
  ``zero_division=0``; macro-F1 averages over the labels present in ``Y_true``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "PAD",
    "best_weights",
    "macro_f1",
    "micro_f1",
    "ndcg_at_k",
    "precision_at_k",
    "propensities",
    "psp_at_k",
    "ranked_hits",
    "ranking_report",
    "recall_at_k",
]

PAD = -1
"""The value of a ``topk_indices`` slot that holds no prediction."""


def _binary_csr(name: str, matrix: Any) -> sp.csr_matrix:
    """Validate a 0/1 matrix and return it as CSR with float64 data."""
    if sp.issparse(matrix):
        csr = sp.csr_matrix(matrix, dtype=np.float64)
        csr.eliminate_zeros()
        values = csr.data
    else:
        array = np.asarray(matrix)
        if array.ndim != 2:
            raise ValueError(f"{name} must be 2-D (N, L); got shape {array.shape}")
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric or bool; got dtype {array.dtype}")
        csr = sp.csr_matrix(array.astype(np.float64))
        values = csr.data
    if csr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, L); got shape {csr.shape}")
    if values.size and not np.all(values == 1.0):
        raise ValueError(f"{name} must contain only 0 and 1")
    return csr


def _pair(y_true: Any, y_pred: Any) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    true = _binary_csr("Y_true", y_true)
    pred = _binary_csr("Y_pred", y_pred)
    if true.shape != pred.shape:
        raise ValueError(f"Y_true shape {true.shape} != Y_pred shape {pred.shape}")
    if true.shape[0] == 0:
        raise ValueError("Y_true has no documents")
    return true, pred


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    return int(k)


def _ranking_inputs(Y_true: Any, topk_indices: Any, k: Any) -> tuple[sp.csr_matrix, np.ndarray, int]:
    """Validate (Y_true (N, L), topk_indices (N, >= k), k); return (truth CSR, first k columns (N, k) int64, k)."""
    k = _check_k(k)
    true = _binary_csr("Y_true", Y_true)
    n_docs, n_labels = true.shape
    indices = np.asarray(topk_indices)
    if indices.ndim != 2 or indices.shape[0] != n_docs:
        raise ValueError(f"topk_indices must have shape ({n_docs}, >= {k}); got {indices.shape}")
    if indices.shape[1] < k:
        raise ValueError(
            f"topk_indices has {indices.shape[1]} columns; @{k} needs at least {k} (pad with {PAD} for no prediction)"
        )
    if n_docs == 0:
        raise ValueError("Y_true has no documents")
    top = indices[:, :k]
    if top.dtype.kind not in "iu" or (top.size and (top.min() < PAD or top.max() >= n_labels)):
        raise ValueError(f"topk_indices must be integer label indices in [0, {n_labels}) or {PAD} (no prediction)")
    top = top.astype(np.int64, copy=False)
    if k > 1:
        ordered = np.sort(top, axis=1)  # (N, k)
        repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != PAD)  # (N, k - 1)
        if repeated.any():
            row, col = np.argwhere(repeated)[0]
            raise ValueError(
                f"topk_indices row {row} lists label {ordered[row, col + 1]} more than once in its first {k} entries"
            )
    return true, top, k


def ranked_hits(true: sp.csr_matrix, top: np.ndarray) -> np.ndarray:
    """(N, k) float64: 1.0 where the ranked label is a true label of its document, 0.0 otherwise (and at padding)."""
    n_docs, k = top.shape
    valid = top != PAD  # (N, k)
    rows = np.repeat(np.arange(n_docs), k)
    cols = np.where(valid, top, 0).ravel()
    hits = np.asarray(true[rows, cols]).reshape(n_docs, k)  # (N, k)
    return hits * valid


def _discounts(k: int) -> np.ndarray:
    """1 / log2(r + 1) for ranks r = 1..k, shape (k,)."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _precision(hits: np.ndarray, k: int) -> float:
    return float(hits[:, :k].sum() / (hits.shape[0] * k))


def _ndcg(true: sp.csr_matrix, hits: np.ndarray, k: int) -> float:
    discounts = _discounts(k)  # (k,)
    dcg = hits[:, :k] @ discounts  # (N,)
    n_pos = np.minimum(np.diff(true.indptr), k)  # (N,)
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[n_pos]  # (N,)
    per_doc = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)  # (N,)
    return float(per_doc.mean())


def _recall(true: sp.csr_matrix, hits: np.ndarray, k: int) -> float:
    n_pos = np.diff(true.indptr)  # (N,)
    present = n_pos > 0
    if not present.any():
        return 0.0
    found = hits[:, :k].sum(axis=1)  # (N,)
    return float((found[present] / n_pos[present]).mean())


def _psp(
    true: sp.csr_matrix, top: np.ndarray, hits: np.ndarray, k: int, inverse: np.ndarray, normalised: bool
) -> float:
    gains = hits[:, :k] * inverse[np.where(top[:, :k] == PAD, 0, top[:, :k])]  # (N, k)
    score = float(gains.sum())
    if not normalised:
        return score / (top.shape[0] * k)
    best = float(best_weights(true, inverse, k).sum())
    return min(score / best, 1.0) if best > 0 else 0.0  # min: the two sums round differently at a perfect ranking


def precision_at_k(Y_true: Any, topk_indices: np.ndarray, k: int) -> float:
    """P@k = mean over documents of (1/k) * sum of y_l over the first k predicted labels.

    Y_true (N, L) 0/1 (dense or scipy sparse); topk_indices (N, >= k) label indices, best first, ``-1``
    for "no prediction" (a miss). Every document counts, one without positives scores 0. Returns a float
    in [0, 1]. Raises ``ValueError`` on a bad k, shape, index or a label repeated within a row's first k.
    """
    true, top, k = _ranking_inputs(Y_true, topk_indices, k)
    return _precision(ranked_hits(true, top), k)


def ndcg_at_k(Y_true: Any, topk_indices: np.ndarray, k: int) -> float:
    """nDCG@k = mean over documents of DCG@k / ideal DCG@k.

    DCG@k = sum over ranks r = 1..k of y_(r) / log2(r + 1); the ideal puts the document's positives
    first, i.e. sum over r = 1..min(k, #positives) of 1 / log2(r + 1). A document without positives
    contributes 0 (and still counts in the mean over N). ``-1`` in ``topk_indices`` is a miss.
    Shapes and errors as ``precision_at_k``. Returns a float in [0, 1].
    """
    true, top, k = _ranking_inputs(Y_true, topk_indices, k)
    return _ndcg(true, ranked_hits(true, top), k)


def recall_at_k(Y_true: Any, topk_indices: np.ndarray, k: int) -> float:
    """Recall@k = mean over documents of |top-k ∩ positives| / |positives|.

    Averaged over the documents with at least one positive only: recall is undefined for a document
    without positives, which is left out; 0.0 when no document has a positive. ``-1`` is a miss.
    Shapes and errors as ``precision_at_k``. Returns a float in [0, 1].
    """
    true, top, k = _ranking_inputs(Y_true, topk_indices, k)
    return _recall(true, ranked_hits(true, top), k)


def propensities(label_counts: Any, n_train: int, A: float = 0.55, B: float = 1.5) -> np.ndarray:
    """Label propensities of Jain et al. (2016): p_l = 1 / (1 + C (N_l + B)^-A), C = (ln N - 1)(B + 1)^A.

    ``label_counts`` (L,) are the training positives N_l of each label (0 for a label unseen in training),
    ``n_train`` the number N of training documents. Returns float64 (L,) in (0, 1); rarer labels get
    smaller propensities. Raises ``ValueError`` on negative or non-finite counts, a count above
    ``n_train``, ``n_train < 3`` (C must be positive: ln N > 1), or A <= 0, B <= 0.
    """
    counts = np.asarray(label_counts)
    if counts.ndim != 1:
        raise ValueError(f"label_counts must be 1-D (L,); got shape {counts.shape}")
    if counts.dtype.kind not in "iuf":
        raise ValueError(f"label_counts must be numeric; got dtype {counts.dtype}")
    counts = counts.astype(np.float64)
    if not np.isfinite(counts).all() or (counts.size and counts.min() < 0):
        raise ValueError("label_counts must be finite and non-negative")
    if isinstance(n_train, bool) or not isinstance(n_train, int | np.integer) or n_train < 3:
        raise ValueError(f"n_train must be an integer >= 3 (C = (ln N - 1)(B + 1)^A must be positive); got {n_train!r}")
    if counts.size and counts.max() > n_train:
        raise ValueError(f"a label count ({counts.max():g}) exceeds n_train ({n_train})")
    for name, value in (("A", A), ("B", B)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < float("inf"):
            raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    c = (np.log(n_train) - 1.0) * (B + 1.0) ** A
    return 1.0 / (1.0 + c * (counts + B) ** (-A))


def _inverse_propensities(values: Any, n_labels: int) -> np.ndarray:
    """Validate propensities (L,) and return 1 / p_l, float64 (L,)."""
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != n_labels:
        raise ValueError(f"propensities must have shape ({n_labels},); got {array.shape}")
    if array.dtype.kind not in "iuf":
        raise ValueError(f"propensities must be numeric; got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all() or (array.size and array.min() <= 0.0):
        raise ValueError("propensities must be finite and positive")
    return 1.0 / array


def best_weights(true: sp.csr_matrix, weights: np.ndarray, k: int) -> np.ndarray:
    """Per document (N,): the sum of the k largest ``weights`` (L,) among its true labels."""
    rows = np.repeat(np.arange(true.shape[0]), np.diff(true.indptr))  # (nnz,)
    values = weights[true.indices]  # (nnz,)
    order = np.lexsort((-values, rows))  # by row, then by weight descending
    rank = np.arange(order.size) - true.indptr[rows[order]]  # position within the row
    keep = order[rank < k]
    return np.bincount(rows[keep], weights=values[keep], minlength=true.shape[0])


def psp_at_k(
    Y_true: Any,
    topk_indices: np.ndarray,
    k: int,
    propensities: Any,
    normalised: bool = True,
) -> float:
    """Propensity-scored precision PSP@k = mean over documents of (1/k) * sum over the top k of y_l / p_l.

    ``propensities`` (L,) positive, e.g. from ``learner.metrics.propensities`` on the training counts.
    With ``normalised=True`` (the default, and what the published tables report) the mean PSP@k is
    divided by the mean of the best achievable PSP@k, obtained by ranking each document's true labels by
    1/p_l; the result is in [0, 1], and 0.0 when no document has a positive. ``normalised=False`` gives
    the raw mean, which is >= 0 and unbounded. ``-1`` is a miss. Errors as ``precision_at_k``, plus a
    ``ValueError`` on propensities of the wrong shape or not finite and positive.
    """
    true, top, k = _ranking_inputs(Y_true, topk_indices, k)
    inverse = _inverse_propensities(propensities, true.shape[1])
    return _psp(true, top, ranked_hits(true, top), k, inverse, normalised)


def ranking_report(
    Y_true: Any,
    topk_indices: np.ndarray,
    *,
    ks: Sequence[int] = (1, 3, 5),
    propensities: Any = None,
) -> dict[str, float]:
    """Every ranking metric at every k in ``ks``, as Python floats, in one pass over the data.

    For ``ks=(1, 3, 5)`` the keys are P@1, P@3, P@5, nDCG@1, nDCG@3, nDCG@5, PSP@1, PSP@3, PSP@5, R@1,
    R@3, R@5, in that order (grouped by metric, k ascending). PSP@k (normalised) is present only when
    ``propensities`` (L,) is given. ``topk_indices`` needs at least max(ks) columns. Conventions as in the
    module docstring; raises ``ValueError`` like the single metrics, or on an empty or non-integer ``ks``.
    """
    if isinstance(ks, str | bytes | int | np.integer) or not isinstance(ks, Sequence) or not ks:
        raise ValueError(f"ks must be a non-empty sequence of positive integers; got {ks!r}")
    checked = sorted({_check_k(k) for k in ks})
    true, top, _ = _ranking_inputs(Y_true, topk_indices, checked[-1])
    hits = ranked_hits(true, top)  # (N, max k)
    report = {f"P@{k}": _precision(hits, k) for k in checked}
    report.update({f"nDCG@{k}": _ndcg(true, hits, k) for k in checked})
    if propensities is not None:
        inverse = _inverse_propensities(propensities, true.shape[1])
        report.update({f"PSP@{k}": _psp(true, top, hits, k, inverse, True) for k in checked})
    report.update({f"R@{k}": _recall(true, hits, k) for k in checked})
    return report


def micro_f1(Y_true: Any, Y_pred: Any) -> float:
    """Micro-averaged F1: pools every (document, label) decision; 2TP / (2TP + FP + FN)."""
    true, pred = _pair(Y_true, Y_pred)
    tp = float(true.multiply(pred).sum())
    fp = float(pred.sum()) - tp
    fn = float(true.sum()) - tp
    denominator = 2.0 * tp + fp + fn
    return 2.0 * tp / denominator if denominator > 0 else 0.0


def micro_precision(Y_true: Any, Y_pred: Any) -> float:
    """Micro-averaged precision: of every (document, label) decision made, the share that is a true label;
    TP / (TP + FP). Returns 0.0 when nothing was decided."""
    true, pred = _pair(Y_true, Y_pred)
    decided = float(pred.sum())
    return float(true.multiply(pred).sum()) / decided if decided > 0 else 0.0


def macro_f1(Y_true: Any, Y_pred: Any) -> float:
    """Macro-averaged F1: the mean of per-label F1 over the labels present in ``Y_true``.

    Labels with no true positive in ``Y_true`` are left out of the average (their F1 is undefined
    without positives), as SCIENCE.md §5 asks. Returns 0.0 when no label is present.
    """
    true, pred = _pair(Y_true, Y_pred)
    tp = np.asarray(true.multiply(pred).sum(axis=0)).ravel()  # (L,)
    n_true = np.asarray(true.sum(axis=0)).ravel()  # (L,)
    n_pred = np.asarray(pred.sum(axis=0)).ravel()  # (L,)
    present = n_true > 0
    if not present.any():
        return 0.0
    f1 = 2.0 * tp[present] / (n_true[present] + n_pred[present])
    return float(f1.mean())
