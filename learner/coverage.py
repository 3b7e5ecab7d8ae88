"""Coverage picks for the low-budget phase (SCIENCE.md §8): TypiClust and ProbCover on document embeddings.

With a few dozen labelled documents, uncertainty sampling loses to random picks, while picking typical, diverse
documents wins (Hacohen et al. 2022, "Active learning on a budget": TypiClust; Yehuda et al. 2022, "Active
learning through a covering lens": ProbCover). Both work on the pool's L2-normalised embeddings (N, D) and the
already labelled documents' embeddings (M, D), and need no model:

- ``typiclust``: k-means into |labelled| + n clusters; pick by pick, the largest cluster with the fewest
  labelled and picked members gives its most ``typicality`` document (the densest: 1 / mean cosine distance to
  its ``knn`` nearest neighbours within the cluster).
- ``probcover``: the δ-ball graph (cosine distance <= δ); documents within δ of a labelled one are covered;
  each pick is the document whose ball covers the most uncovered ones (greedy max coverage).
- ``probcover_delta``: ProbCover's δ without labels: the largest candidate whose balls are pure (one k-means
  cluster) for at least ``purity`` of the documents.

Everything is sized for a pool of 100,000 x 384: k-means is fitted on a seeded sample and every document
assigned in blocks, typicality is computed within one cluster at a time (on a seeded sample of at most
``TYPICALITY_SAMPLE`` members), and ProbCover's graph lives on a seeded sample of at most ``PROBCOVER_SAMPLE``
documents with at most ``MAX_NEIGHBOURS`` per ball; no N x N matrix is ever built. numpy, scipy and
scikit-learn's k-means only.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DELTA_CANDIDATES",
    "FIT_SAMPLE",
    "MAX_NEIGHBOURS",
    "PROBCOVER_SAMPLE",
    "PURITY",
    "TYPICALITY_SAMPLE",
    "TYPICLUST_KNN",
    "TYPICLUST_MAX_CLUSTERS",
    "TYPICLUST_MIN_CLUSTER_SIZE",
    "label_anchors",
    "probcover",
    "probcover_delta",
    "typicality",
    "typiclust",
]

logger = logging.getLogger(__name__)

# TypiClust's constants, as its authors' code has them (avihu111/TypiClust, typiclust.py).
TYPICLUST_KNN = 20  # neighbours in the typicality estimate (fewer in small clusters: half the cluster at most)
TYPICLUST_MAX_CLUSTERS = 500  # k-means clusters at most, however many documents are labelled
TYPICLUST_MIN_CLUSTER_SIZE = 5  # clusters of <= 5 documents (outliers) give picks only once the others are empty
FIT_SAMPLE = 20_000  # k-means is fitted on a seeded sample of at most this many documents, then all are assigned
TYPICALITY_SAMPLE = 2_000  # a bigger cluster's typicality is computed on a seeded sample of its members
# KMeans (n_init=1) up to this many clusters, MiniBatchKMeans above (as TypiClust's code does): 500 clusters on
# 20,000 x 384 take 10 s with KMeans and 3 s with MiniBatchKMeans on one core.
KMEANS_MAX_CLUSTERS = 50

# ProbCover's graph: on a sample of at most PROBCOVER_SAMPLE documents (the whole pool when smaller), each ball
# keeping its MAX_NEIGHBOURS nearest members. Memory is bounded by 20,000 x 1,000 int32 edges, twice (the graph
# and its transpose): 160 MB at worst, about 1 GB of float32 products computed block by block (2 s on one core).
# A ball capped at 1,000 (5 % of the sample) means δ is too coarse for more than ~20 picks; ProbCover's purity
# rule gives far smaller balls.
PROBCOVER_SAMPLE = 20_000
MAX_NEIGHBOURS = 1_000
PURITY = 0.95  # ProbCover's alpha: the share of balls that must be pure
DELTA_CANDIDATES: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 100))  # cosine distances
_SLACK = 1e-6  # float32 rounding: a ball holds the documents with dot >= 1 - δ - _SLACK
_BLOCK_ELEMENTS = 1 << 22  # about 16 MB of float32 products per block


# ------------------------------------------------------------------------------------------------------ checks
def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    return int(n)


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def _unit_rows(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    """(N, D) float32 rows scaled to unit length (zero rows stay zero); NaN, infinities and bad shapes raise."""
    array = np.asarray(x, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D); got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns like embeddings; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)  # (N, 1)
    return array / np.where(norms > 0, norms, 1.0)


def _labelled(labelled_embeddings: Any, dim: int) -> np.ndarray:
    """(M, D) unit rows; ``None`` or an empty array (any shape with 0 rows) is no labelled document."""
    if labelled_embeddings is None or np.asarray(labelled_embeddings).size == 0:
        return np.empty((0, dim), dtype=np.float32)
    return _unit_rows(labelled_embeddings, "labelled_embeddings", dim)


def _rows_per_block(width: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(1, width))


def _sample(n_docs: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted seeded sample of ``size`` of ``n_docs`` indices (all of them when size >= n_docs)."""
    if size >= n_docs:
        return np.arange(n_docs, dtype=np.int64)
    return np.sort(rng.choice(n_docs, size=size, replace=False)).astype(np.int64)


# ------------------------------------------------------------------------------------------------------ k-means
def _kmeans_centres(data: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(k, D) centres of k-means on ``data`` (m, D), seeded: KMeans up to KMEANS_MAX_CLUSTERS, MiniBatchKMeans above."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    model: Any
    if k <= KMEANS_MAX_CLUSTERS:
        model = KMeans(n_clusters=k, n_init=1, max_iter=100, random_state=seed)
    else:
        model = MiniBatchKMeans(n_clusters=k, n_init=1, batch_size=2048, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer distinct points than clusters on duplicated data
        model.fit(data)
    return np.asarray(model.cluster_centers_, dtype=np.float32)


def _nearest_centre(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N,) index of each row's nearest centre (Euclidean), block by block."""
    assignment = np.empty(x.shape[0], dtype=np.int64)  # (N,)
    centre_sq = (centres**2).sum(axis=1)  # (k,)
    step = _rows_per_block(len(centres))
    for start in range(0, x.shape[0], step):
        block = x[start : start + step]  # (b, D)
        d2 = centre_sq[None, :] - 2.0 * block @ centres.T  # (b, k); |x|^2 is the same for every centre
        assignment[start : start + len(block)] = d2.argmin(axis=1)
    return assignment


# ---------------------------------------------------------------------------------------------------- typiclust
def typicality(embeddings: np.ndarray, knn: int = TYPICLUST_KNN) -> np.ndarray:
    """(m,) TypiClust's typicality of each document among the others: 1 / mean cosine distance to its ``knn``
    nearest neighbours (itself excluded; fewer when m <= knn). Higher = in a denser place.

    embeddings (m, D), L2-normalised here. Computed in row blocks (m x m products, never held at once for a big
    m). A document with an exact duplicate among its neighbours only gets ``inf``; a lone document gets ``inf``.
    """
    x = _unit_rows(embeddings, "embeddings")
    knn = _check_positive_int("knn", knn)
    m = x.shape[0]
    k = min(knn, m - 1)
    if k <= 0:
        return np.full(m, np.inf)
    mean_distance = np.empty(m, dtype=np.float64)  # (m,)
    step = _rows_per_block(m)
    for start in range(0, m, step):
        sims = x[start : start + step] @ x.T  # (b, m)
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # not its own neighbour
        nearest = -np.partition(-sims, k - 1, axis=1)[:, :k]  # (b, k) the k highest dots
        mean_distance[start : start + len(rows)] = np.maximum(1.0 - nearest.astype(np.float64), 0.0).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 1.0 / mean_distance


def typiclust(
    embeddings: np.ndarray,
    labelled_embeddings: np.ndarray | None,
    n: int,
    *,
    seed: int = 0,
    knn: int = TYPICLUST_KNN,
    max_clusters: int = TYPICLUST_MAX_CLUSTERS,
    min_cluster_size: int = TYPICLUST_MIN_CLUSTER_SIZE,
) -> np.ndarray:
    """TypiClust (Hacohen et al. 2022): ``n`` distinct pool indices (int64), in pick order.

    embeddings (N, D) of the pool, labelled_embeddings (M, D) of the labelled documents (``None``: none); both
    are L2-normalised here. The pool and the labelled documents are clustered together into
    min(M + n, ``max_clusters``) k-means clusters (fitted on a seeded sample of at most ``FIT_SAMPLE``
    documents, every document then assigned to its nearest centre). Each pick takes the cluster with the fewest
    labelled and already picked members, the largest first among equals (clusters of at most
    ``min_cluster_size`` documents come last, cluster id breaks the remaining ties), and picks its most typical
    unlabelled, unpicked document: highest ``typicality`` with min(``knn``, half the members) neighbours, among
    the cluster's unpicked pool documents (a seeded sample of ``TYPICALITY_SAMPLE`` of them in a bigger
    cluster). So no cluster gets a second pick before every cluster has one, and a cluster that already holds a
    labelled document waits for those that hold none. Returns every index (in index order) when N <= n;
    deterministic for a seed.
    """
    x = _unit_rows(embeddings, "embeddings")
    known = _labelled(labelled_embeddings, x.shape[1])  # (M, D)
    n = _check_n(n)
    knn = _check_positive_int("knn", knn)
    max_clusters = _check_positive_int("max_clusters", max_clusters)
    if isinstance(min_cluster_size, bool) or not isinstance(min_cluster_size, int) or min_cluster_size < 0:
        raise ValueError(f"min_cluster_size must be a non-negative integer; got {min_cluster_size!r}")
    n_docs = x.shape[0]
    if n_docs <= n:
        return np.arange(n_docs, dtype=np.int64)
    if n == 0:
        return np.empty(0, dtype=np.int64)

    rng = np.random.default_rng(seed)
    n_known = known.shape[0]
    fit_size = min(n_docs + n_known, FIT_SAMPLE)
    known_part = _sample(n_known, min(n_known, fit_size // 2), rng)  # labelled take at most half the sample
    pool_part = _sample(n_docs, fit_size - len(known_part), rng)
    fit_data = np.concatenate([x[pool_part], known[known_part]])  # (s, D)
    k = min(n_known + n, max_clusters, len(fit_data))
    centres = _kmeans_centres(fit_data, k, seed)  # (k, D)
    assignment = _nearest_centre(x, centres)  # (N,)
    known_counts = np.bincount(_nearest_centre(known, centres), minlength=k) if n_known else np.zeros(k, np.int64)

    size = np.bincount(assignment, minlength=k) + known_counts  # (k,) pool and labelled members
    taken = known_counts.copy()  # (k,) labelled and picked members
    members_sorted = np.argsort(assignment, kind="stable")  # (N,) pool indices grouped by cluster
    bounds = np.concatenate([[0], np.cumsum(np.bincount(assignment, minlength=k))])  # (k + 1,)
    members = [members_sorted[bounds[c] : bounds[c + 1]] for c in range(k)]
    left = np.array([len(m) for m in members])  # (k,) unpicked pool members
    small = size <= min_cluster_size  # (k,)

    picks: list[int] = []
    for _ in range(n):
        open_clusters = np.flatnonzero(left > 0)
        # Small clusters last, then the fewest labelled/picked members, the biggest, the lowest id.
        first = np.lexsort((open_clusters, -size[open_clusters], taken[open_clusters], small[open_clusters]))[0]
        cluster = int(open_clusters[first])
        candidates = members[cluster]
        if len(candidates) > TYPICALITY_SAMPLE:
            candidates = candidates[_sample(len(candidates), TYPICALITY_SAMPLE, rng)]
        neighbours = max(1, min(knn, len(candidates) // 2))
        pick = int(candidates[int(np.argmax(typicality(x[candidates], neighbours)))])
        picks.append(pick)
        members[cluster] = members[cluster][members[cluster] != pick]
        left[cluster] -= 1
        taken[cluster] += 1
    return np.asarray(picks, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------- probcover
def _check_delta(delta: Any) -> float:
    if isinstance(delta, bool) or not isinstance(delta, int | float | np.floating) or not 0.0 <= float(delta) <= 2.0:
        raise ValueError(f"delta must be a cosine distance in [0, 2]; got {delta!r}")
    return float(delta)


def _ball_graph(x: np.ndarray, delta: float, max_neighbours: int) -> Any:
    """CSR (S, S) 0/1 matrix: row i holds the documents in i's δ-ball (dot >= 1 - δ), at most ``max_neighbours``
    of them (the nearest; itself always), built block by block."""
    from scipy import sparse

    cut = np.float32(1.0 - delta - _SLACK)
    size = x.shape[0]
    counts = np.empty(size, dtype=np.int64)
    columns: list[np.ndarray] = []
    step = _rows_per_block(size)
    for start in range(0, size, step):
        sims = x[start : start + step] @ x.T  # (b, S)
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = 2.0  # itself first, whatever rounding does
        inside = sims >= cut  # (b, S)
        over = np.flatnonzero(inside.sum(axis=1) > max_neighbours)
        if len(over):
            nearest = np.argpartition(-sims[over], max_neighbours - 1, axis=1)[:, :max_neighbours]  # (o, cap)
            inside[over] = False
            inside[over[:, None], nearest] = True
        block_rows, block_columns = np.nonzero(inside)  # row-major: sorted by row
        counts[start : start + len(rows)] = np.bincount(block_rows, minlength=len(rows))
        columns.append(block_columns.astype(np.int32))
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate(columns) if columns else np.empty(0, dtype=np.int32)
    data = np.ones(len(indices), dtype=np.int32)
    return sparse.csr_matrix((data, indices, indptr), shape=(size, size))


def probcover(
    embeddings: np.ndarray,
    labelled_embeddings: np.ndarray | None,
    n: int,
    *,
    delta: float,
    seed: int = 0,
    max_neighbours: int = MAX_NEIGHBOURS,
) -> np.ndarray:
    """ProbCover (Yehuda et al. 2022): ``n`` distinct pool indices (int64), in pick order.

    embeddings (N, D) of the pool, labelled_embeddings (M, D) (``None``: none), L2-normalised here. A document's
    δ-ball holds the documents within cosine distance ``delta`` (dot >= 1 - δ); documents in the ball of a
    labelled document are covered from the start. Each pick is the document whose ball holds the most uncovered
    documents (ties: a seeded order), and its ball becomes covered. Once everything is covered the remaining
    picks follow the seeded order. Pools larger than ``PROBCOVER_SAMPLE`` are represented by a seeded sample of
    that size (at least 2n): coverage is estimated, and picks made, on it. Each ball keeps at most
    ``max_neighbours`` members (its nearest), which bounds memory; a capped ball covers only those. Returns
    every index (in index order) when N <= n; deterministic for a seed.
    """
    x = _unit_rows(embeddings, "embeddings")
    known = _labelled(labelled_embeddings, x.shape[1])  # (M, D)
    n = _check_n(n)
    delta = _check_delta(delta)
    max_neighbours = _check_positive_int("max_neighbours", max_neighbours)
    n_docs = x.shape[0]
    if n_docs <= n:
        return np.arange(n_docs, dtype=np.int64)
    if n == 0:
        return np.empty(0, dtype=np.int64)

    rng = np.random.default_rng(seed)
    sample = _sample(n_docs, min(n_docs, max(PROBCOVER_SAMPLE, 2 * n)), rng)  # (S,)
    points = x[sample]  # (S, D)
    size = len(sample)
    graph = _ball_graph(points, delta, max_neighbours)  # (S, S) CSR: row = ball centre
    transposed = graph.tocsc()  # column y lists the balls that hold y

    uncovered = np.ones(size, dtype=bool)  # (S,)
    cut = np.float32(1.0 - delta - _SLACK)
    step = _rows_per_block(size)
    for start in range(0, known.shape[0], step):
        uncovered &= ~((known[start : start + step] @ points.T) >= cut).any(axis=0)  # (b, S) -> (S,)
    degree = np.asarray(graph @ uncovered.astype(np.int64)).ravel()  # (S,) uncovered documents per ball

    order = rng.permutation(size)  # (S,) the seeded tie-breaking order
    picked = np.zeros(size, dtype=bool)
    picks: list[int] = []
    for _ in range(n):
        # The first in the seeded order among the best balls; once everything is covered, among the unpicked.
        score = degree if degree.max() > 0 else ~picked  # (S,)
        best = int(order[np.argmax(score[order])])
        picks.append(best)
        picked[best] = True
        ball = graph.indices[graph.indptr[best] : graph.indptr[best + 1]]
        newly = ball[uncovered[ball]]
        if len(newly):
            uncovered[newly] = False
            holders = transposed[:, newly].indices  # the balls that held a newly covered document, once per hold
            degree -= np.bincount(holders, minlength=size)
    return sample[np.asarray(picks, dtype=np.int64)]


def probcover_delta(
    embeddings: np.ndarray,
    *,
    n_clusters: int,
    purity: float = PURITY,
    seed: int = 0,
    candidates: Sequence[float] = DELTA_CANDIDATES,
) -> float:
    """ProbCover's δ without labels: the largest of ``candidates`` (cosine distances) for which at least
    ``purity`` of the δ-balls are pure.

    embeddings (N, D), L2-normalised here; the rule runs on a seeded sample of at most ``PROBCOVER_SAMPLE``
    documents (the same density as ``probcover``'s graph). k-means with ``n_clusters`` clusters (ProbCover uses
    the number of classes) gives pseudo-labels; a ball is pure when every document in it has its centre's
    pseudo-label, i.e. when δ is below the cosine distance to the nearest document of another cluster. When no
    candidate reaches ``purity`` the smallest is returned (and a warning logged).
    """
    x = _unit_rows(embeddings, "embeddings")
    n_clusters = _check_positive_int("n_clusters", n_clusters)
    if not 0.0 < float(purity) <= 1.0:
        raise ValueError(f"purity must be in (0, 1]; got {purity}")
    grid = np.asarray(candidates, dtype=np.float64)
    if grid.ndim != 1 or not len(grid):
        raise ValueError("candidates must be a non-empty sequence of cosine distances")
    for value in grid:
        _check_delta(float(value))
    if n_clusters > x.shape[0]:
        raise ValueError(f"n_clusters ({n_clusters}) must not exceed the number of documents ({x.shape[0]})")

    rng = np.random.default_rng(seed)
    points = x[_sample(x.shape[0], PROBCOVER_SAMPLE, rng)]  # (S, D)
    labels = _nearest_centre(points, _kmeans_centres(points, n_clusters, seed))  # (S,)
    nearest_other = np.full(len(points), np.inf)  # (S,) cosine distance to the nearest other-cluster document
    step = _rows_per_block(len(points))
    for start in range(0, len(points), step):
        sims = points[start : start + step] @ points.T  # (b, S)
        sims[labels[start : start + step, None] == labels[None, :]] = -np.inf
        nearest_other[start : start + len(sims)] = 1.0 - sims.max(axis=1).astype(np.float64)
    pure = np.array([(nearest_other > value + _SLACK).mean() for value in grid])  # (C,)
    good = grid[pure >= float(purity)]
    if not len(good):
        logger.warning(
            "no delta candidate has %.0f %% pure balls (best %.1f %% at %.3g); using the smallest",
            100 * purity,
            100 * pure.max(),
            grid[int(np.argmax(pure))],
        )
        return float(grid.min())
    return float(good.max())


def label_anchors(
    embeddings: np.ndarray,
    label_vectors: np.ndarray,
    label_counts: Any,
    n: int,
    *,
    seed: int = 0,
) -> np.ndarray:
    """Label-name anchors: ``n`` distinct pool indices (int64), in pick order, that seek positives of the labels
    with the fewest of them through their names (the label-name prior's vectors).

    embeddings (N, D) of the pool and label_vectors (L, D) (a zero row: a label without a vector, skipped), both
    L2-normalised here; label_counts (L,) the labelled positives per label. The labels are taken rarest first (ties
    in a seeded order) and, one label after the other, each gets the unpicked pool document most similar to its
    name; with more picks than labels the order starts again (each label's next most similar document). On a
    held-out part of the GoEmotions train file the 5 documents most similar to a label's name hold a positive of it
    41 % of the time, against 4 % for random documents (grief: 40 % against 0.2 %; bench/prior_templates.py); yet
    as a strategy it loses to random there in macro-F1, through the decision rule cross-validation fits on such
    picks (docs/benchmarks.md). Cost O(min(n, L) x N x D), in blocks of labels. Returns every index (in index
    order) when N <= n, and none when no label has a vector.
    """
    from learner.prior import topk_rows

    x = _unit_rows(embeddings, "embeddings")
    n = _check_n(n)
    vectors = _unit_rows(label_vectors, "label_vectors", x.shape[1])  # (L, D); zero rows stay zero
    counts = np.asarray(label_counts, dtype=np.float64)
    if counts.shape != (vectors.shape[0],) or not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError(f"label_counts must be ({vectors.shape[0]},) non-negative counts; got shape {counts.shape}")
    n_docs = x.shape[0]
    if n_docs <= n:
        return np.arange(n_docs, dtype=np.int64)
    usable = np.flatnonzero(np.any(vectors != 0, axis=1))
    if n == 0 or not len(usable):
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    shuffled = usable[rng.permutation(len(usable))]
    order = shuffled[np.argsort(counts[shuffled], kind="stable")]  # rarest first, ties in the seeded order
    chosen = order[: min(n, len(order))]  # (m,) the labels that get picks
    depth = min(n_docs, -(-n // len(chosen)) + n)  # candidates per label: enough whatever the others took
    candidates = np.empty((len(chosen), depth), dtype=np.int64)  # (m, depth) best first
    step = _rows_per_block(n_docs)
    for start in range(0, len(chosen), step):
        block = vectors[chosen[start : start + step]] @ x.T  # (b, N)
        candidates[start : start + len(block)] = topk_rows(block, depth)[0]
    picked = np.zeros(n_docs, dtype=bool)
    cursor = np.zeros(len(chosen), dtype=np.int64)
    picks: list[int] = []
    while len(picks) < n:
        for row in range(len(chosen)):
            while cursor[row] < depth and picked[candidates[row, cursor[row]]]:
                cursor[row] += 1
            if cursor[row] < depth:
                best = int(candidates[row, cursor[row]])
                picked[best] = True
                picks.append(best)
                if len(picks) == n:
                    break
    return np.asarray(picks, dtype=np.int64)
