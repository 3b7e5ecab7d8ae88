"""Multi-label query strategies (SCIENCE.md §4): pure functions of model outputs, one score per document.

A higher score means "label this document first". Scoring is separate from selection
(``select_top``, seeded tie-breaks), and ``cold_start`` picks diverse, representative documents when
there is no model yet. numpy (and scikit-learn's k-means for ``cold_start``) only: no torch.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

__all__ = [
    "STRATEGIES",
    "cardinality_inconsistency",
    "cold_start",
    "mean_binary_entropy",
    "random_scores",
    "score_pool",
    "select_top",
    "threshold_margin",
]

logger = logging.getLogger(__name__)

STRATEGIES: dict[str, str] = {
    "random": "uniform random scores, the baseline every strategy must beat; O(N)",
    "uncertainty": "mean over labels of the binary entropy of p_l (most uncertain first); O(N·L)",
    "margin": "closeness of the most uncertain label to the threshold, -min_l |p_l - t|; O(N·L)",
    "cardinality": "|#labels with p_l >= t - mean #labels per document| (label-count surprise); O(N·L)",
}

COLD_START_FIT_SAMPLE = 20_000


def _check_probs(probs: Any) -> np.ndarray:
    array = np.asarray(probs, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, L); got shape {array.shape}")
    if array.shape[1] == 0:
        raise ValueError("probs has no label columns")
    if not np.isfinite(array).all():
        raise ValueError("probs contains NaN or infinite values")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise ValueError("probs must lie in [0, 1]")
    return array


def _check_threshold(threshold: float) -> float:
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1); got {threshold}")
    return float(threshold)


def random_scores(n: int, seed: int) -> np.ndarray:
    """(n,) uniform random scores in [0, 1), reproducible for a seed."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    return np.random.default_rng(seed).random(int(n))


def mean_binary_entropy(probs: np.ndarray) -> np.ndarray:
    """(N,) mean over labels of H(p) = -p log2 p - (1-p) log2 (1-p), in bits (1 at p = 0.5, 0 at 0 and 1).

    probs (N, L) in [0, 1]. Sigmoid outputs are independent per label, so uncertainty is per label and
    then averaged; entropy over the row as if it were a distribution would be wrong.
    """
    p = _check_probs(probs)
    q = 1.0 - p
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0) - np.where(q > 0, q * np.log2(q), 0.0)  # (N, L)
    return h.mean(axis=1)


def threshold_margin(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(N,) ``-min_l |p_l - threshold|``: highest for the document with a label closest to the threshold.

    probs (N, L) in [0, 1].
    """
    p = _check_probs(probs)
    return -np.abs(p - _check_threshold(threshold)).min(axis=1)


def cardinality_inconsistency(probs: np.ndarray, threshold: float, mean_cardinality: float) -> np.ndarray:
    """(N,) ``|#labels with p_l >= threshold - mean_cardinality|``.

    probs (N, L) in [0, 1]; ``mean_cardinality`` is the mean number of labels per labelled document.
    A document predicted with far more or fewer labels than usual is probably mis-predicted.
    """
    p = _check_probs(probs)
    cut = _check_threshold(threshold)
    if not np.isfinite(mean_cardinality) or mean_cardinality < 0:
        raise ValueError(f"mean_cardinality must be a finite number >= 0; got {mean_cardinality}")
    predicted = (p >= cut).sum(axis=1)  # (N,)
    return np.abs(predicted - float(mean_cardinality))


def score_pool(
    strategy: str,
    probs: np.ndarray,
    *,
    threshold: float = 0.5,
    mean_cardinality: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Score every document of the pool (probs (N, L)) with the named strategy; returns (N,).

    Valid names are the keys of ``STRATEGIES``; anything else raises ``ValueError`` listing them.
    """
    if strategy == "random":
        return random_scores(_check_probs(probs).shape[0], seed)
    if strategy == "uncertainty":
        return mean_binary_entropy(probs)
    if strategy == "margin":
        return threshold_margin(probs, threshold)
    if strategy == "cardinality":
        return cardinality_inconsistency(probs, threshold, mean_cardinality)
    raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")


def select_top(scores: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices (int64) of the ``n`` highest scores, best first; ``n`` is clipped to N.

    Equal scores are ordered by a shuffle seeded with ``seed``: deterministic for a seed, and not biased
    towards the start of the pool.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be 1-D (N,); got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("scores contains NaN")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    shuffled = np.random.default_rng(seed).permutation(values.shape[0])  # (N,)
    order = shuffled[np.argsort(-values[shuffled], kind="stable")]  # (N,)
    return order[: int(n)].astype(np.int64)


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (N, 1)
    return x / np.where(norms > 0, norms, 1.0)


def cold_start(embeddings: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct document indices (int64) that are diverse and representative: the first batch to label.

    k-means with ``n`` clusters on the L2-normalised embeddings (N, D) (fitted on a seeded sample of at
    most 20,000 documents, then every document is assigned), and for each cluster the document nearest
    its centroid, biggest clusters first. When duplicates leave fewer distinct points than ``n``, the
    rest is filled farthest-first (each new pick the document farthest from all picks so far). Returns
    every index when N <= n.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, D); got shape {x.shape}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("embeddings contains NaN or infinite values")
    n_docs = x.shape[0]
    n = int(n)
    if n_docs <= n:
        return np.arange(n_docs, dtype=np.int64)
    if n == 0:
        return np.empty(0, dtype=np.int64)

    x = _normalise_rows(x)
    rng = np.random.default_rng(seed)
    sample_size = min(n_docs, max(COLD_START_FIT_SAMPLE, 2 * n))
    sample = np.sort(rng.choice(n_docs, size=sample_size, replace=False)) if sample_size < n_docs else None
    fit_data = x if sample is None else x[sample]
    kmeans = KMeans(n_clusters=n, n_init=1, max_iter=100, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "fewer distinct clusters than n_clusters" on duplicated data
        kmeans.fit(fit_data)
    centers = kmeans.cluster_centers_.astype(np.float32)  # (n, D)

    # Assign every document to its nearest centre, in blocks to bound memory.
    assignment = np.empty(n_docs, dtype=np.int64)  # (N,)
    distance = np.empty(n_docs, dtype=np.float32)  # (N,)
    center_sq = (centers**2).sum(axis=1)  # (n,)
    for start in range(0, n_docs, 8192):
        block = x[start : start + 8192]  # (b, D)
        d2 = (block**2).sum(axis=1, keepdims=True) - 2.0 * block @ centers.T + center_sq  # (b, n)
        assignment[start : start + len(block)] = d2.argmin(axis=1)
        distance[start : start + len(block)] = d2.min(axis=1)

    sizes = np.bincount(assignment, minlength=n)  # (n,)
    picks: list[int] = []
    for cluster in np.argsort(-sizes, kind="stable"):
        if sizes[cluster] == 0:
            continue
        members = np.flatnonzero(assignment == cluster)
        picks.append(int(members[np.argmin(distance[members])]))
    if len(picks) < n:
        picks.extend(_farthest_first(x, picks, n - len(picks), rng))
    return np.asarray(picks, dtype=np.int64)


def _farthest_first(x: np.ndarray, picked: list[int], count: int, rng: np.random.Generator) -> list[int]:
    """Greedy k-center fill: ``count`` more indices, each the farthest from everything picked so far.

    Ties (e.g. among duplicates) are broken by a seeded random order.
    """
    order = rng.permutation(x.shape[0])  # (N,)
    xo = x[order]  # (N, D)
    nearest = np.full(x.shape[0], np.inf, dtype=np.float64)  # (N,) distance to the nearest pick
    taken = np.zeros(x.shape[0], dtype=bool)
    position = np.empty(x.shape[0], dtype=np.int64)
    position[order] = np.arange(x.shape[0])
    for index in picked:
        nearest = np.minimum(nearest, ((xo - x[index]) ** 2).sum(axis=1))
        taken[position[index]] = True
    extra: list[int] = []
    for _ in range(count):
        candidates = np.where(taken, -1.0, nearest)
        best = int(np.argmax(candidates))  # first in the seeded order among equals
        extra.append(int(order[best]))
        taken[best] = True
        nearest = np.minimum(nearest, ((xo - xo[best]) ** 2).sum(axis=1))
    return extra
