"""Label features (PIFA) and the hierarchical label tree of balanced spherical 2-means.

The tree is built PECOS's way: the labels are split in two halves again and again (spherical 2-means
on their features with a balance constraint) to ``depth = ceil(log2(L / leaf_size))`` binary levels;
the ``2**depth`` segments at the bottom are the leaf clusters, and every ``log2(branching)`` binary
levels counted upwards from the leaves make one cluster level. Balance guarantee: every split gives
halves whose sizes differ by at most one, so all clusters of a level hold floor(L / 2**d) or
ceil(L / 2**d) labels (d its binary depth) and every leaf holds at most ``leaf_size`` labels.

Numbering: the labels are stored in *tree order* (``order``: tree position -> label id), in which the
members of every cluster, at every level, are contiguous; cluster j of a level with binary depth d
covers the leaves j * 2**(D - d) .. (j + 1) * 2**(D - d) - 1.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from learner.xmc.config import TreeConfig

__all__ = ["LabelTree", "pifa"]

logger = logging.getLogger(__name__)


def _as_csr(name: str, matrix: Any, dtype: type = np.float32) -> sp.csr_matrix:
    if sp.issparse(matrix):
        out = sp.csr_matrix(matrix, dtype=dtype)
    else:
        array = np.asarray(matrix)
        if array.ndim != 2 or array.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be a 2-D numeric matrix; got shape {array.shape}, dtype {array.dtype}")
        out = sp.csr_matrix(array.astype(dtype))
    if out.ndim != 2:
        raise ValueError(f"{name} must be 2-D; got shape {out.shape}")
    return out


def _normalize_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """L2-normalise the non-empty rows of a CSR matrix (in place) and return it."""
    squares = matrix.multiply(matrix).sum(axis=1)
    norms = np.sqrt(np.asarray(squares, dtype=np.float64).ravel())  # (R,)
    norms[norms == 0.0] = 1.0
    matrix.data /= np.repeat(norms, np.diff(matrix.indptr)).astype(matrix.dtype)
    return matrix


def pifa(X: Any, Y: Any) -> sp.csr_matrix:
    """Positive Instance Feature Aggregation: label features Z (L, F) float32 CSR.

    Row l is the L2-normalised sum of the rows of X (N, F) of the documents whose row of Y (N, L) has
    a 1 in column l; a label without positive documents gets an empty row. Raises ``ValueError`` on
    mismatched row counts.
    """
    features = _as_csr("X", X)
    targets = _as_csr("Y", Y)
    if features.shape[0] != targets.shape[0]:
        raise ValueError(f"X has {features.shape[0]} rows but Y has {targets.shape[0]}")
    targets.data[:] = 1.0
    Z = (targets.T.tocsr() @ features).tocsr()  # (L, F)
    Z.sort_indices()
    return _normalize_rows(Z)


def _balanced_two_means(Z: sp.csr_matrix, rng: np.random.Generator, iterations: int) -> np.ndarray:
    """Split the rows of Z (n, F) into halves of sizes ceil(n/2) and floor(n/2) by spherical 2-means.

    Returns a permutation of range(n): the first ceil(n/2) rows are the first half. The rows most
    similar to the first centroid relative to the second one go to the first half (stable ties).
    """
    n = Z.shape[0]
    first = (n + 1) // 2
    seen = np.zeros(Z.shape[1], dtype=bool)
    seen[Z.indices] = True
    used = np.flatnonzero(seen)  # (Fc,) the columns in use
    remap = np.zeros(Z.shape[1], dtype=np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    local = sp.csr_matrix((Z.data, remap[Z.indices], Z.indptr), shape=(n, len(used)))  # (n, Fc)
    local_t = local.T  # (Fc, n) CSC view, no copy
    total = np.asarray(local.sum(axis=0)).ravel()  # (Fc,)
    i, j = rng.choice(n, size=2, replace=False)
    direction = (local[i] - local[j]).toarray().ravel()  # (Fc,)
    previous: np.ndarray | None = None
    rank = np.arange(n)
    for _ in range(iterations):
        scores = local @ direction  # (n,)
        rank = np.argsort(-scores, kind="stable")
        member = np.zeros(n, dtype=np.float32)
        member[rank[:first]] = 1.0
        if previous is not None and np.array_equal(member, previous):
            break
        previous = member
        c1 = local_t @ member  # (Fc,) sum of the first half's rows
        c2 = total - c1
        n1, n2 = np.linalg.norm(c1), np.linalg.norm(c2)
        direction = (c1 / n1 if n1 > 0 else c1) - (c2 / n2 if n2 > 0 else c2)
    return rank


class LabelTree:
    """A balanced hierarchical clustering of L labels (see the module docstring).

    Attributes: ``n_labels``; ``depths`` (binary depths of the cluster levels, top first, the last one
    is the leaf level; empty when all labels fit in one leaf); ``order`` (L,) tree position -> label id;
    ``leaf_bounds`` (n_leaves + 1,) the tree positions where each leaf starts; ``config``.
    """

    def __init__(self, *, order: np.ndarray, leaf_bounds: np.ndarray, depths: list[int], config: TreeConfig) -> None:
        order = np.asarray(order, dtype=np.int64)
        leaf_bounds = np.asarray(leaf_bounds, dtype=np.int64)
        n_labels = len(order)
        if n_labels == 0 or not np.array_equal(np.sort(order), np.arange(n_labels)):
            raise ValueError("order must be a permutation of range(n_labels) with n_labels >= 1")
        n_leaves = 2 ** depths[-1] if depths else 1
        if (
            leaf_bounds.shape != (n_leaves + 1,)
            or leaf_bounds[0] != 0
            or leaf_bounds[-1] != n_labels
            or np.any(np.diff(leaf_bounds) < 1)
        ):
            raise ValueError(f"leaf_bounds must be {n_leaves + 1} increasing positions from 0 to {n_labels}")
        if any(b <= a for a, b in itertools.pairwise(depths)) or (depths and depths[0] < 1):
            raise ValueError(f"depths must be increasing positive integers; got {depths}")
        self.order = order
        self.leaf_bounds = leaf_bounds
        self.depths = list(depths)
        self.config = config
        self.n_labels = n_labels

    def __repr__(self) -> str:
        return f"LabelTree(labels={self.n_labels}, level_sizes={self.level_sizes}, leaf_sizes={self.leaf_size_range})"

    # ----------------------------------------------------------------- shape

    @property
    def level_sizes(self) -> list[int]:
        """Number of clusters per cluster level, top first, then the number of labels."""
        return [2**d for d in self.depths] + [self.n_labels]

    @property
    def n_layers(self) -> int:
        """Ranker layers: one per cluster level plus the label layer."""
        return len(self.depths) + 1

    @property
    def leaf_size_range(self) -> tuple[int, int]:
        sizes = np.diff(self.leaf_bounds)
        return int(sizes.min()), int(sizes.max())

    def leaf_of_label(self) -> np.ndarray:
        """(L,) the leaf cluster of each label id."""
        leaf_of_position = np.repeat(np.arange(len(self.leaf_bounds) - 1), np.diff(self.leaf_bounds))  # (L,)
        out = np.empty(self.n_labels, dtype=np.int64)
        out[self.order] = leaf_of_position
        return out

    def child_ptr(self, layer: int) -> np.ndarray:
        """(n_{layer-1} + 1,) the children of parent p at ``layer`` are positions ptr[p] .. ptr[p+1]-1.

        Layer 0 has the root as its only parent; the last layer (``n_layers - 1``) holds the labels
        in tree order, whose parents are the leaf clusters.
        """
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer must be in [0, {self.n_layers}); got {layer}")
        if layer == len(self.depths):  # labels under the leaves (or under the root)
            return self.leaf_bounds.copy()
        parent_depth = self.depths[layer - 1] if layer > 0 else 0
        fan_out = 2 ** (self.depths[layer] - parent_depth)
        return np.arange(2**parent_depth + 1, dtype=np.int64) * fan_out

    def node_of_position(self, layer: int) -> np.ndarray:
        """(L,) for each label tree position, the index of its ancestor node at ``layer``."""
        leaf = np.repeat(np.arange(len(self.leaf_bounds) - 1), np.diff(self.leaf_bounds))  # (L,)
        if layer == len(self.depths):
            return np.arange(self.n_labels, dtype=np.int64)
        return leaf >> (self.depths[-1] - self.depths[layer])

    def matrices(self) -> list[sp.csr_matrix]:
        """The cluster assignment matrices, top first: C_t (n_t, n_{t-1}) with C_t[child, parent] = 1.

        C_0 is (n_0, 1) (the root); the last one is (L, n_leaves) indexed by label id (not tree order).
        """
        out = []
        for layer in range(self.n_layers):
            ptr = self.child_ptr(layer)
            n_children, n_parents = ptr[-1], len(ptr) - 1
            parent = np.repeat(np.arange(n_parents), np.diff(ptr))  # (n_children,)
            rows = np.arange(n_children)
            if layer == self.n_layers - 1:
                rows = self.order  # tree position -> label id
            out.append(
                sp.csr_matrix((np.ones(n_children, dtype=np.float32), (rows, parent)), shape=(n_children, n_parents))
            )
        return out

    # ----------------------------------------------------------------- build

    @classmethod
    def build(cls, label_features: Any, config: TreeConfig | None = None, *, progress: bool = False) -> LabelTree:
        """Cluster the rows of ``label_features`` (L, F) (e.g. ``pifa(X, Y)``) into a balanced tree.

        Deterministic for ``config.seed``. Raises ``ValueError`` on an empty matrix.
        """
        config = config or TreeConfig()
        Z = _as_csr("label_features", label_features)
        n_labels = Z.shape[0]
        if n_labels == 0:
            raise ValueError("label_features has no rows: a tree needs at least one label")
        Z.sort_indices()
        depth = math.ceil(math.log2(n_labels / config.leaf_size)) if n_labels > config.leaf_size else 0
        order = np.arange(n_labels, dtype=np.int64)
        bounds = np.array([0, n_labels], dtype=np.int64)
        with tqdm(total=2**depth - 1, disable=not progress, desc="label tree", unit="split") as bar:
            for level in range(depth):
                new_bounds = [0]
                for segment in range(len(bounds) - 1):
                    start, stop = int(bounds[segment]), int(bounds[segment + 1])
                    rng = np.random.default_rng([config.seed, level, segment])
                    members = order[start:stop]
                    perm = _balanced_two_means(Z[members], rng, config.kmeans_iterations)
                    order[start:stop] = members[perm]
                    new_bounds += [start + (stop - start + 1) // 2, stop]
                    bar.update(1)
                bounds = np.array(new_bounds, dtype=np.int64)
        step = int(math.log2(config.branching))
        depths: list[int] = []
        if depth > 0:
            depths = [depth]
            while 2 ** depths[0] > config.branching:
                depths.insert(0, depths[0] - step)
        tree = cls(order=order, leaf_bounds=bounds, depths=depths, config=config)
        logger.info("built label tree: %s", tree)
        return tree

    # ----------------------------------------------------------- persistence

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays that describe the tree (for ``np.savez``); ``from_arrays`` inverts it."""
        return {
            "tree_order": self.order,
            "tree_leaf_bounds": self.leaf_bounds,
            "tree_depths": np.asarray(self.depths, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: Any, config: TreeConfig) -> LabelTree:
        return cls(
            order=np.asarray(arrays["tree_order"]),
            leaf_bounds=np.asarray(arrays["tree_leaf_bounds"]),
            depths=[int(d) for d in np.asarray(arrays["tree_depths"])],
            config=config,
        )
