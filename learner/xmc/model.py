"""XR-Linear: linear rankers on every level of a label tree, beam search at inference.

``XRLinear.train(X, Y, XRConfig())`` -> ``save(dir)`` -> ``XRLinear.load(dir)`` -> ``predict_topk(X, k)``.
X is a (N, F) sparse feature matrix (e.g. ``learner.features.TfidfFeaturizer``), Y the (N, L) 0/1 targets.

Training, level by level from the top (PECOS's XR-Linear): layer t scores the nodes of tree level t
(the last layer scores the labels); each node's classifier is trained on the documents routed to its
parent: the documents with a label under the parent (teacher-forced negatives) plus, with
``negatives="tfn+man"``, those the layers above put the parent in the top-``beam`` of (matcher-aware
negatives) and, with ``"+led"``, those with a label whose nearest labels by PIFA cosine
(``label_neighbours``) lie under the parent (label-embedding negatives, LightDXML's hard negatives).
Inference keeps the ``beam`` best nodes per level and scores only their children, so the
work per document is O(depth * beam * branching) dot products, never O(L).

With ``overlap_lambda`` > 1 the leaves overlap (``learner.xmc.overlap``): the tree's last layer holds
S >= L label *slots*, ``slot_label`` maps each to its label, and predictions merge a label's slots.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from learner.artifacts import header, read_header, write_folder, write_json
from learner.config import check_positive_int
from learner.xmc import overlap, solver
from learner.xmc.config import XRConfig
from learner.xmc.solver import LayerTask, LayerWeights, fork_map, train_layer
from learner.xmc.tree import LabelTree, pifa

__all__ = ["XRLinear", "check_features", "check_targets", "label_neighbours", "led_routes"]

logger = logging.getLogger(__name__)

FORMAT = "learner.XRLinear"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
ARRAYS_FILE = "arrays.npz"
EMPTY = -1.0  # score of an unused candidate slot (real scores are >= 0)
FULL_LAYER_MAX_NODES = 4096  # layers up to this wide are scored whole (see _ScoringLayer)
NEIGHBOUR_BLOCK = 2**22  # label pairs scored at once by label_neighbours (a (chunk, L) float32 block: 16 MiB)


def check_features(X: Any, n_features: int | None = None, name: str = "X") -> sp.csr_matrix:
    """X as a float32 CSR matrix with sorted indices; ``ValueError`` if not 2-D numeric, NaN, wrong width."""
    if sp.issparse(X):
        matrix = sp.csr_matrix(X, dtype=np.float32)
    else:
        array = np.asarray(X)
        if array.ndim != 2 or array.dtype.kind not in "biuf":
            raise ValueError(
                f"{name} must be a 2-D numeric matrix (N, F); got shape {array.shape}, dtype {array.dtype}"
            )
        matrix = sp.csr_matrix(array.astype(np.float32))
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, F); got shape {matrix.shape}")
    if n_features is not None and matrix.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} columns (the model's features); got {matrix.shape[1]}")
    if not np.isfinite(matrix.data).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if not matrix.has_sorted_indices:
        matrix = matrix.copy()
        matrix.sort_indices()
    return matrix


def check_targets(Y: Any, n_docs: int) -> sp.csr_matrix:
    """Y (N, L) 0/1 as float32 CSR; ``ValueError`` on a row-count mismatch or values other than 0/1."""
    if sp.issparse(Y):
        matrix = sp.csr_matrix(Y, dtype=np.float32)
    else:
        array = np.asarray(Y)
        if array.ndim != 2 or array.dtype.kind not in "biuf":
            raise ValueError(f"Y must be a 2-D 0/1 matrix (N, L); got shape {array.shape}, dtype {array.dtype}")
        matrix = sp.csr_matrix(array.astype(np.float32))
    if matrix.shape[0] != n_docs:
        raise ValueError(f"X has {n_docs} rows but Y has {matrix.shape[0]}")
    if matrix.shape[1] == 0:
        raise ValueError("Y has no columns: a model needs at least one label")
    matrix.eliminate_zeros()
    if matrix.nnz and not np.all(matrix.data == 1.0):
        raise ValueError("Y must contain only 0 and 1")
    return matrix


def label_neighbours(Z: Any, k: int, *, n_jobs: int = 1) -> sp.csr_matrix:
    """The ``k`` nearest other labels of every label by cosine similarity: (L, L) bool CSR.

    Z (L, F) are label vectors (e.g. PIFA), any norm (empty rows are allowed). Row l of the result
    marks the (at most) k labels m != l with the largest cos(z_l, z_m) > 0; of equal similarities the
    lower index wins, so the result is exact and does not depend on ``n_jobs`` (worker processes) or
    on the chunking. Works on blocks of rows (a few MiB each, never O(L^2) memory); the cost is that
    of the sparse product Z Z^T. Raises ``ValueError`` on a bad ``k`` or a non-2-D Z.
    """
    k = check_positive_int(k, "k")
    vectors = check_features(Z, name="Z")  # (L, F) float32 CSR, sorted indices
    n_labels = vectors.shape[0]
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1), dtype=np.float64).ravel())  # (L,)
    inverse = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-30), 0.0)
    unit = sp.csr_matrix(sp.diags(inverse.astype(np.float32)) @ vectors, dtype=np.float32)  # (L, F) unit rows
    unit.eliminate_zeros()
    k = min(k, n_labels - 1)
    if k == 0 or unit.nnz == 0:
        return sp.csr_matrix((n_labels, n_labels), dtype=bool)
    chunk_size = max(1, NEIGHBOUR_BLOCK // n_labels)
    starts = list(range(0, n_labels, chunk_size))
    state = {"unit": unit, "transposed": unit.T.tocsr(), "k": k, "chunk_size": chunk_size}  # transposed (F, L)
    rows, cols = [], []
    for _, chunk_rows, chunk_cols in sorted(fork_map(_neighbour_chunk, starts, n_jobs, state), key=lambda r: r[0]):
        rows.append(chunk_rows)
        cols.append(chunk_cols)
    row, col = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(row), dtype=bool), (row, col)), shape=(n_labels, n_labels))


def led_routes(Y: Any, neighbours: sp.csr_matrix, tree: LabelTree) -> list[sp.csr_matrix]:
    """Label-embedding negatives: for every cluster level t (top first, the leaves last), the (N, n_t)
    bool matrix of the nodes that hold a nearest label of one of the document's labels.

    Y (N, L) 0/1 and ``neighbours`` (L, L) (``label_neighbours`` of the label vectors) are both in
    tree order (column j = tree position j, i.e. label ``tree.order[j]``). A document's own labels are
    not added (teacher forcing routes it to their nodes anyway) unless they are neighbours of another
    of its labels. Memory: O(nnz(Y) * k) for the (N, L) neighbour matrix.
    """
    if neighbours.shape != (tree.n_labels, tree.n_labels) or Y.shape[1] != tree.n_labels:
        raise ValueError(
            f"Y must have {tree.n_labels} columns and neighbours be ({tree.n_labels}, {tree.n_labels}); "
            f"got {Y.shape} and {neighbours.shape}"
        )
    near = (sp.csr_matrix(Y).astype(bool) @ neighbours.astype(bool)).tocsr()  # (N, L) nearest labels
    return [(near @ _position_assignment(tree, t, bool)).tocsr() for t in range(tree.n_layers - 1)]  # (N, n_t) each


def _position_assignment(tree: LabelTree, t: int, dtype: type = np.float32) -> sp.csr_matrix:
    """(L, n_t): row j (tree position j) has a 1 at its ancestor node in layer t."""
    node = tree.node_of_position(t)  # (L,)
    return sp.csr_matrix((np.ones(tree.n_labels, dtype=dtype), (np.arange(tree.n_labels), node)))


def _neighbour_chunk(start: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Worker of ``label_neighbours``: the neighbours of labels start .. start + chunk_size, as (rows, cols)."""
    state = solver._STATE
    block = state["unit"][start : start + state["chunk_size"]]  # (c, F)
    similarity = (block @ state["transposed"]).toarray()  # (c, L) cosines
    c = similarity.shape[0]
    similarity[np.arange(c), start + np.arange(c)] = 0.0  # a label is not its own neighbour
    k = state["k"]
    kth = -np.partition(-similarity, k - 1, axis=1)[:, k - 1 : k]  # (c, 1) the k-th largest cosine
    above = similarity > kth  # (c, L) fewer than k of them
    tied = similarity == kth
    missing = k - above.sum(axis=1, keepdims=True)  # (c, 1) taken from the ties, lowest index first
    chosen = (above | (tied & (np.cumsum(tied, axis=1) <= missing))) & (similarity > 0)
    row, col = np.nonzero(chosen)
    return start, (start + row).astype(np.int64), col.astype(np.int64)


def transform_scores(raw: np.ndarray, transform: str) -> np.ndarray:
    """Decision values -> scores in [0, 1]: "lP-hinge" exp(-max(1 - v, 0)^P) or "sigmoid"."""
    if transform == "sigmoid":
        return (1.0 / (1.0 + np.exp(-np.clip(raw, -50.0, 50.0)))).astype(np.float32)
    power = int(transform[1])
    return np.exp(-(np.maximum(1.0 - raw, 0.0) ** power)).astype(np.float32)


class _BlockScorer:
    """Products X @ M^T of a (n_t, F) matrix M whose rows are grouped by parent (``ptr``), for inference.

    Up to ``FULL_LAYER_MAX_NODES`` rows, M^T is kept whole and a chunk of documents is multiplied by it
    in one sparse product (the children of the beam are gathered from it). A wider matrix (the labels
    of a big label set) is used parent by parent: the rows routed to a parent times its children's
    rows of M, restricted to the columns those rows use.
    """

    def __init__(self, matrix: sp.csr_matrix, ptr: np.ndarray) -> None:
        self.ptr = ptr
        self.full = int(ptr[-1]) <= FULL_LAYER_MAX_NODES
        self.columns: list[np.ndarray] = []
        self.local: list[sp.csr_matrix] = []
        if self.full:
            self.transposed = matrix.T.tocsr()  # (F, n_t)
            return
        self._remap = np.full(matrix.shape[1], -1, dtype=np.int64)  # scratch: column -> local column
        seen = np.zeros(matrix.shape[1], dtype=bool)
        for p in range(len(ptr) - 1):
            block = matrix[ptr[p] : ptr[p + 1]]  # (m, F)
            seen[block.indices] = True
            used = np.flatnonzero(seen)  # (F_p,) the columns these rows use
            seen[used] = False
            self._remap[used] = np.arange(len(used))
            local = sp.csr_matrix(
                (block.data, self._remap[block.indices], block.indptr), shape=(block.shape[0], len(used))
            )
            self._remap[used] = -1
            self.columns.append(used)
            self.local.append(local.T.tocsr())  # (F_p, m)

    def all_scores(self, X: sp.csr_matrix) -> np.ndarray:
        """(n, n_t) products with every row of M (``full`` scorers only)."""
        return (X @ self.transposed).toarray()

    def parent_scores(self, X: sp.csr_matrix, parent: int) -> np.ndarray:
        """(n, m) products of the rows of X (n, F) with the rows of M under ``parent``."""
        used = self.columns[parent]
        m = int(self.ptr[parent + 1] - self.ptr[parent])
        if len(used) == 0 or X.nnz == 0:
            return np.zeros((X.shape[0], m), dtype=np.float32)
        remap = self._remap
        remap[used] = np.arange(len(used))
        local_columns = remap[X.indices]  # (nnz,) -1 where the rows of M have no weight
        remap[used] = -1
        hit = local_columns >= 0
        counts = np.concatenate([[0], np.cumsum(hit)])
        local = sp.csr_matrix(
            (X.data[hit], local_columns[hit], counts[X.indptr]), shape=(X.shape[0], len(used))
        )  # (n, F_p)
        return (local @ self.local[parent]).toarray()  # (n, m)


class _ScoringLayer:
    """Inference form of one layer: its weights (and, on the label layer, the PIFA vectors) as block scorers."""

    def __init__(self, weights: LayerWeights, ptr: np.ndarray, label_features: sp.csr_matrix | None) -> None:
        self.ptr = ptr
        self.bias = weights.bias  # (n_t,)
        self.max_children = int(np.diff(ptr).max())
        self.weights = _BlockScorer(weights.weights, ptr)
        self.full = self.weights.full
        self.pifa = _BlockScorer(label_features, ptr) if label_features is not None else None


class XRLinear:
    """A trained XR-Linear model (see the module docstring).

    Attributes: ``config`` (``XRConfig``), ``tree`` (``LabelTree`` over the S label slots; S = L without
    overlap), ``layers`` (one ``LayerWeights`` per tree level, then the slots; rows in tree order),
    ``label_features`` (the (S, F) PIFA rows in tree order when ``config.pifa_weight`` > 0, else None),
    ``slot_label`` (S,) slot id -> label id (the identity without overlap), ``n_features``, ``n_labels``
    (L), ``n_slots`` (S), ``train_info``.
    """

    def __init__(
        self,
        *,
        config: XRConfig,
        tree: LabelTree,
        layers: list[LayerWeights],
        n_features: int,
        label_features: sp.csr_matrix | None = None,
        train_info: dict[str, Any] | None = None,
        slot_label: np.ndarray | None = None,
    ) -> None:
        if slot_label is None:
            slot_label = np.arange(tree.n_labels, dtype=np.int64)
        slot_label = np.asarray(slot_label, dtype=np.int64)
        if slot_label.shape != (tree.n_labels,):
            raise ValueError(f"slot_label must have one entry per tree slot ({tree.n_labels}); got {slot_label.shape}")
        n_labels = int(slot_label.max()) + 1
        copies = np.bincount(slot_label.clip(0), minlength=n_labels)  # (L,) slots per label
        if slot_label.min() < 0 or copies.min() < 1:
            raise ValueError("slot_label must map the slots onto labels 0 .. L-1, every label at least once")
        if len(layers) != tree.n_layers:
            raise ValueError(f"the tree has {tree.n_layers} layers but {len(layers)} were given")
        for t, layer in enumerate(layers):
            expected = (int(tree.child_ptr(t)[-1]), n_features)
            if layer.weights.shape != expected or layer.bias.shape != (expected[0],):
                raise ValueError(
                    f"layer {t}: weights {layer.weights.shape}, bias {layer.bias.shape}; expected {expected}"
                )
        if label_features is not None and label_features.shape != (tree.n_labels, n_features):
            raise ValueError(f"label_features must be ({tree.n_labels}, {n_features}); got {label_features.shape}")
        self.config = config
        self.tree = tree
        self.layers = layers
        self.n_features = n_features
        self.label_features = label_features  # (L, F) PIFA rows in tree order, or None
        self.train_info: dict[str, Any] = dict(train_info or {})
        self.slot_label = slot_label  # (S,) slot id -> label id
        self._n_labels = n_labels
        self._max_copies = int(copies.max())
        self._scoring: dict[int, _ScoringLayer] = {}  # built on first use

    def __repr__(self) -> str:
        return (
            f"XRLinear(labels={self.n_labels}, features={self.n_features}, levels={self.tree.level_sizes}, "
            f"weights={self.nnz})"
        )

    @property
    def n_labels(self) -> int:
        """Labels L (the columns of Y and of the predictions)."""
        return self._n_labels

    @property
    def n_slots(self) -> int:
        """Label slots S of the tree's last layer (S = L without overlapping clusters)."""
        return self.tree.n_labels

    @property
    def overlapped(self) -> bool:
        """Whether some label has more than one slot (leaf cluster)."""
        return self.n_slots > self.n_labels

    @property
    def nnz(self) -> int:
        """Stored weights, all layers."""
        return int(sum(layer.weights.nnz for layer in self.layers))

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        X: Any,
        Y: Any,
        config: XRConfig | None = None,
        *,
        tree: LabelTree | None = None,
        on_progress: Callable[[float], None] | None = None,
        progress: bool = False,
    ) -> XRLinear:
        """Train on features X (N, F) (sparse or dense) and 0/1 targets Y (N, L).

        Builds the label tree from ``pifa(X, Y)`` unless ``tree`` is given (it must cover L labels).
        Labels without a positive document are allowed (they score ~0). ``on_progress(fraction)`` is
        called as the work advances. Deterministic for a given config (whatever ``n_jobs``). Raises
        ``ValueError`` on mismatched shapes, no documents, NaN or non-0/1 targets.

        With ``config.overlap_lambda`` > 1, ``config.overlap_rounds`` times: the training documents are
        beam-searched through the model's matcher, every label gets up to lambda leaves
        (``overlap.assign_slots``, from the first tree's leaves) and the model is retrained on the slot
        tree, every slot of a label with all the label's positives (PECOS's overlap-xmc recipe).
        """
        config = config or XRConfig()
        features = check_features(X)
        n_docs, n_features = features.shape
        if n_docs == 0:
            raise ValueError("X has no documents: a model needs at least one labelled document")
        if n_features == 0:
            raise ValueError("X has 0 columns")
        targets = check_targets(Y, n_docs)
        n_labels = targets.shape[1]
        if tree is not None and tree.n_labels != n_labels:
            raise ValueError(f"the tree covers {tree.n_labels} labels but Y has {n_labels} columns")
        if not config.overlapping:
            return cls._fit(features, targets, config, tree, None, on_progress, progress)
        rounds = config.overlap_rounds
        total = rounds + 1  # progress shares: the first fit, then one per round

        def scaled(offset: int) -> Callable[[float], None] | None:
            if on_progress is None:
                return None
            callback = on_progress
            return lambda fraction: callback((offset + fraction) / total)

        model = cls._fit(features, targets, config, tree, None, scaled(0), progress)
        base = model.tree
        if base.n_layers < 2:  # one leaf holds every label: nothing to overlap
            logger.info("overlap_lambda=%d ignored: the tree has a single leaf", config.overlap_lambda)
            model.train_info["overlap_slots"] = model.n_slots
            return model
        home = base.leaf_of_label()  # (L,)
        n_leaves = len(base.leaf_bounds) - 1
        history = []
        for r in range(rounds):
            started = time.perf_counter()
            width = max(config.beam, config.overlap_beam)
            leaves = model._beam_through(features, base.n_layers - 2, width)[:, : config.overlap_beam]  # (N, b)
            counts = overlap.route_counts(targets, leaves, n_leaves)  # (L, n_leaves)
            slot_label, slot_leaf = overlap.assign_slots(counts, home, config.overlap_lambda, config.overlap_min_count)
            slots = overlap.slot_tree(base, slot_label, slot_leaf)
            assign_seconds = time.perf_counter() - started
            model = cls._fit(
                features, targets[:, slot_label].tocsr(), config, slots, slot_label, scaled(r + 1), progress
            )
            history.append({"slots": len(slot_label), "assign_seconds": round(assign_seconds, 3)})
            logger.info("overlap round %d: %d labels in %d slots", r + 1, n_labels, len(slot_label))
        model.train_info["overlap_slots"] = model.n_slots
        model.train_info["overlap_rounds"] = history
        return model

    @classmethod
    def _fit(
        cls,
        features: sp.csr_matrix,
        targets: sp.csr_matrix,
        config: XRConfig,
        tree: LabelTree | None,
        slot_label: np.ndarray | None,
        on_progress: Callable[[float], None] | None,
        progress: bool,
    ) -> XRLinear:
        """Train the rankers on checked features (N, F) and targets (N, S) of the S slots of ``tree``
        (built from the targets' PIFA when None); ``slot_label`` (S,) maps slots to labels (None: S = L)."""
        n_docs, n_features = features.shape
        n_labels = targets.shape[1]
        info: dict[str, Any] = {
            "n_documents": n_docs,
            "n_features": n_features,
            "n_labels": n_labels if slot_label is None else int(slot_label.max()) + 1,
        }
        started = time.perf_counter()
        Z = pifa(features, targets) if tree is None or config.pifa_weight > 0 or config.label_embedding else None
        if tree is None:
            assert Z is not None
            tree = LabelTree.build(Z, config.tree, progress=progress)
        label_features = None
        if config.pifa_weight > 0:
            assert Z is not None
            label_features = Z[tree.order].tocsr()  # (L, F) in tree order
            if config.pifa_threshold > 0:
                label_features.data[np.abs(label_features.data) < config.pifa_threshold] = 0.0
                label_features.eliminate_zeros()
        info["tree_seconds"] = round(time.perf_counter() - started, 3)
        info["level_sizes"] = tree.level_sizes
        neighbours = None  # (L, L) bool in tree order: the nearest labels of each label (by PIFA cosine)
        if config.label_embedding:
            assert Z is not None
            started = time.perf_counter()
            neighbours = label_neighbours(Z[tree.order], config.led_neighbours, n_jobs=config.n_jobs)
            info["led_seconds"] = round(time.perf_counter() - started, 3)
            info["led_label_pairs"] = int(neighbours.nnz)
        del Z

        # Targets per layer in tree order: (N, n_t) 0/1, CSC for column slices.
        by_position = targets[:, tree.order].tocsr()  # (N, L) columns in tree order
        layer_targets = []
        for t in range(tree.n_layers):
            Y_t = (by_position @ _position_assignment(tree, t)).tocsc()  # (N, n_t)
            Y_t.data[:] = 1.0
            layer_targets.append(Y_t)
        # With "+led": per cluster level, the nodes holding the labels nearest to each document's labels.
        layer_hard = None if neighbours is None else led_routes(by_position, neighbours, tree)

        share = 1.0 / tree.n_layers  # of the progress per layer, advanced as its nodes are trained
        layers: list[LayerWeights] = []
        beam_nodes: np.ndarray | None = None  # (N, b) the top nodes of the previous layer, -1 = empty
        started = time.perf_counter()
        with tqdm(
            total=n_labels + sum(tree.level_sizes[:-1]), disable=not progress, desc="xr-linear", unit="node"
        ) as bar:
            for t in range(tree.n_layers):
                ptr = tree.child_ptr(t)
                n_nodes = int(ptr[-1])
                hard = layer_hard[t - 1] if layer_hard is not None and t > 0 else None
                parents = layer_targets[t - 1] if t > 0 else None
                beam = beam_nodes if t > 0 and config.beam_negatives_at(tree.level_sizes[t - 1]) else None
                tasks = cls._tasks(ptr, parents, beam, n_docs, hard=hard)
                finished = [0]

                def on_task(
                    n_children: int, t: int = t, n_nodes: int = n_nodes, finished: list[int] = finished
                ) -> None:
                    bar.update(n_children)
                    finished[0] += n_children
                    if on_progress is not None:
                        on_progress(min(1.0, share * (t + finished[0] / n_nodes)))

                layer_started = time.perf_counter()
                layer = train_layer(features, layer_targets[t], tasks, n_nodes, config, t, on_task=on_task)
                layers.append(layer)
                info[f"layer{t}_seconds"] = round(time.perf_counter() - layer_started, 3)
                info[f"layer{t}_active_pairs"] = int(sum(len(task.rows) for task in tasks))
                if t < tree.n_layers - 1 and config.beam_negatives_at(tree.level_sizes[t]):
                    beam_started = time.perf_counter()
                    partial = cls(
                        config=config,
                        tree=tree,
                        layers=layers + cls._placeholder(tree, t + 1, n_features),
                        n_features=n_features,
                    )
                    beam_nodes = partial._beam_through(features, t, config.training_beam)
                    info[f"layer{t}_beam_seconds"] = round(time.perf_counter() - beam_started, 3)
        info["rankers_seconds"] = round(time.perf_counter() - started, 3)
        model = cls(
            config=config,
            tree=tree,
            layers=layers,
            n_features=n_features,
            label_features=label_features,
            train_info=info,
            slot_label=slot_label,
        )
        info["weights_nnz"] = model.nnz
        info["pifa_nnz"] = int(label_features.nnz) if label_features is not None else 0
        logger.info("trained XR-Linear %s in %.1fs", model, info["rankers_seconds"] + info["tree_seconds"])
        return model

    @staticmethod
    def _placeholder(tree: LabelTree, first: int, n_features: int) -> list[LayerWeights]:
        """Empty layers from ``first`` on (so that a partially trained model can run its top layers)."""
        out = []
        for t in range(first, tree.n_layers):
            n = int(tree.child_ptr(t)[-1])
            out.append(LayerWeights(sp.csr_matrix((n, n_features), dtype=np.float32), np.zeros(n, np.float32)))
        return out

    @staticmethod
    def _tasks(
        ptr: np.ndarray,
        parent_targets: sp.spmatrix | None,
        beam_nodes: np.ndarray | None,
        n_docs: int,
        *,
        hard: sp.csr_matrix | None = None,
    ) -> list[LayerTask]:
        """The documents routed to each parent of a layer (children ``ptr``): teacher-forced by
        ``parent_targets`` (N, n_parents) 0/1 (None: the root, which gets every document), plus the beam
        (``beam_nodes`` (N, b) parent indices, -1 = empty) and the label-embedding negatives (``hard``
        (N, n_parents) bool) when given."""
        n_parents = len(ptr) - 1
        if parent_targets is None:
            return [LayerTask(0, np.arange(n_docs, dtype=np.int64), int(ptr[0]), int(ptr[1]))]
        routed = parent_targets.tocsr().astype(bool)  # (N, n_parents) teacher-forced
        if hard is not None:
            routed = routed + hard
        if beam_nodes is not None:
            docs = np.repeat(np.arange(n_docs), beam_nodes.shape[1])
            nodes = beam_nodes.ravel()
            keep = nodes >= 0
            matched = sp.csr_matrix(
                (np.ones(int(keep.sum()), dtype=bool), (docs[keep], nodes[keep])), shape=(n_docs, n_parents)
            )
            routed = routed + matched
        routed = routed.tocsc()
        routed.sort_indices()
        return [
            LayerTask(
                p,
                routed.indices[routed.indptr[p] : routed.indptr[p + 1]].astype(np.int64),
                int(ptr[p]),
                int(ptr[p + 1]),
            )
            for p in range(n_parents)
        ]

    # ------------------------------------------------------------ incremental update

    def update(
        self,
        X: Any,
        Y: Any,
        *,
        new_rows: Any = None,
        on_progress: Callable[[float], None] | None = None,
    ) -> XRLinear:
        """Continue from this model on update documents; new labels join the tree. Returns a new model.

        X (N, F) are the update documents' features (the new documents and any replayed old ones), Y (N, L')
        their 0/1 targets: columns [0, L) are this model's labels, columns [L, L') labels it has never seen.
        ``new_rows`` (default: every row) says which rows are new documents.

        The tree and the cluster layers are kept. Each new label joins the leaf cluster that the model's own
        beam puts first for most of its documents (so the documents that carry it reach it at inference; a
        label without documents joins the smallest leaf). Then only the classifiers of the labels with a
        positive among the new rows (new labels included) are retrained, each exactly as a full training
        would train it (liblinear on the update documents routed to its leaf: teacher-forced plus, with
        ``tfn+man``, the beam's matcher-aware negatives; LED negatives are not recomputed); every other weight
        is kept. With every old document replayed this is what a full retrain on the same tree fits for those
        labels; with a sample, their old evidence is what the replay keeps. New labels get PIFA rows from the
        update documents. The cost is O(retrained labels x documents routed to their leaves), no tree build.
        With overlapping clusters the same runs on slots: every slot of a label with new positives is
        retrained (on the documents routed to its own leaf), and a new label gets one slot.
        """
        features = check_features(X, self.n_features)
        n_docs = features.shape[0]
        if n_docs == 0:
            raise ValueError("X has no documents: an update needs at least one labelled document")
        targets = check_targets(Y, n_docs)
        n_old_labels, n_all_labels = self.n_labels, targets.shape[1]
        if n_all_labels < n_old_labels:
            raise ValueError(
                f"Y has {n_all_labels} columns but the model has {n_old_labels} labels; an update cannot drop labels"
            )
        # Work on slots: a label's duplicates share its targets (retrained together); a new label gets one slot.
        slot_label = np.concatenate([self.slot_label, np.arange(n_old_labels, n_all_labels, dtype=np.int64)])
        if self.overlapped:
            targets = targets[:, slot_label].tocsr()  # (N, S') columns = slots
        n_old, n_all = self.n_slots, len(slot_label)
        new = np.ones(n_docs, dtype=bool) if new_rows is None else np.zeros(n_docs, dtype=bool)
        if new_rows is not None:
            rows = np.asarray(new_rows, dtype=np.int64).ravel()
            if rows.size and (rows.min() < 0 or rows.max() >= n_docs):
                raise ValueError(f"new_rows must index the {n_docs} rows of X")
            new[rows] = True
        report = on_progress or (lambda fraction: None)
        started = time.perf_counter()
        config, tree = self.config, self.tree
        last = tree.n_layers - 1
        n_leaves = len(tree.leaf_bounds) - 1
        by_label = targets.tocsc()  # (N, L') columns = labels

        # 1. The leaf of each new label: where the beam sends most of its documents.
        beam_nodes = self._beam_through(features, last - 1, config.training_beam) if last > 0 else None  # (N, b)
        beam_seconds = time.perf_counter() - started
        sizes = np.diff(tree.leaf_bounds).astype(np.int64)  # (n_leaves,)
        leaf_of_added = np.zeros(n_all - n_old, dtype=np.int64)
        if beam_nodes is not None:  # with one leaf (no beam) every new label joins leaf 0
            for j in range(n_all - n_old):
                docs = by_label.indices[by_label.indptr[n_old + j] : by_label.indptr[n_old + j + 1]]
                top = beam_nodes[docs, 0]
                votes = np.bincount(top[top >= 0], minlength=n_leaves)  # (n_leaves,)
                leaf = int(np.argmax(votes)) if votes.any() else int(np.argmin(sizes))
                leaf_of_added[j] = leaf
                sizes[leaf] += 1
        report(0.2)

        # 2. The grown tree: each leaf keeps its labels in order, then its new ones (by label id).
        added_per_leaf = np.bincount(leaf_of_added, minlength=n_leaves)  # (n_leaves,)
        shift = np.concatenate([[0], np.cumsum(added_per_leaf)])  # (n_leaves + 1,) added before leaf c
        leaf_of_position = np.repeat(np.arange(n_leaves), np.diff(tree.leaf_bounds))  # (L,)
        old_to_pos = np.arange(n_old) + shift[leaf_of_position]  # old tree position -> new one
        by_leaf = np.argsort(leaf_of_added, kind="stable")  # new labels grouped by leaf
        group_start = np.searchsorted(leaf_of_added[by_leaf], leaf_of_added[by_leaf])
        added_pos = np.empty(n_all - n_old, dtype=np.int64)
        added_pos[by_leaf] = (
            tree.leaf_bounds[leaf_of_added[by_leaf] + 1]
            + shift[leaf_of_added[by_leaf]]
            + (np.arange(len(by_leaf)) - group_start)
        )
        order = np.empty(n_all, dtype=np.int64)
        order[old_to_pos] = tree.order
        order[added_pos] = np.arange(n_old, n_all)
        grown = LabelTree(order=order, leaf_bounds=tree.leaf_bounds + shift, depths=tree.depths, config=tree.config)

        # 3. Retrain the label classifiers with new evidence, each on the documents routed to its leaf.
        position_of_label = np.empty(n_all, dtype=np.int64)
        position_of_label[order] = np.arange(n_all)
        touched = np.unique(targets[new].indices)
        retrain = np.union1d(touched, np.arange(n_old, n_all))  # label ids
        by_position = targets[:, order].tocsr()  # (N, L') in the grown tree's order
        leaf_targets = (by_position @ _position_assignment(grown, last - 1)) if last > 0 else None  # (N, n_leaves)
        routed = self._tasks(
            grown.child_ptr(last),
            leaf_targets,
            beam_nodes if last > 0 and config.beam_negatives_at(tree.level_sizes[last - 1]) else None,
            n_docs,
        )  # per leaf: the documents a full training would route to it
        positions = np.sort(position_of_label[retrain])  # (R,)
        parent_of = np.repeat(np.arange(n_leaves), np.diff(grown.leaf_bounds))[positions]  # (R,)
        tasks = []
        for parent in np.unique(parent_of):  # one task per leaf: its rows are sliced once
            mine = positions[parent_of == parent]
            tasks.append(LayerTask(int(parent), routed[parent].rows, int(mine[0]), int(mine[-1]) + 1, only=mine))
        train_started = time.perf_counter()
        results = fork_map(
            solver.train_parent,
            tasks,
            config.n_jobs,
            {"X": features, "Y": by_position.tocsc(), "config": config, "layer": last},
        )
        train_seconds = time.perf_counter() - train_started
        report(0.9)

        # 4. Splice: kept rows move to their new positions, retrained rows replace theirs.
        old_layer = self.layers[last]
        kept = np.ones(n_old, dtype=bool)  # by old tree position
        kept[np.flatnonzero(np.isin(tree.order, retrain))] = False
        move = sp.csr_matrix(
            (np.ones(int(kept.sum()), dtype=np.float32), (old_to_pos[kept], np.flatnonzero(kept))),
            shape=(n_all, n_old),
        )
        bias = np.zeros(n_all, dtype=np.float32)
        bias[old_to_pos] = old_layer.bias
        fresh_rows, fresh_cols, fresh_vals = [], [], []
        by_start = {task.start: task for task in tasks}  # results come back in any order, keyed by start
        for start, children in results:
            for position, (cols, vals, b) in zip(by_start[start].positions(), children, strict=True):
                fresh_rows.append(np.full(len(cols), position, dtype=np.int64))
                fresh_cols.append(cols)
                fresh_vals.append(vals)
                bias[position] = b
        fresh = sp.csr_matrix(
            (
                np.concatenate(fresh_vals) if fresh_vals else np.zeros(0, np.float32),
                (
                    np.concatenate(fresh_rows) if fresh_rows else np.zeros(0, np.int64),
                    np.concatenate(fresh_cols) if fresh_cols else np.zeros(0, np.int64),
                ),
            ),
            shape=(n_all, self.n_features),
        )
        weights = (move @ old_layer.weights + fresh).tocsr().astype(np.float32)
        weights.sort_indices()
        label_features = None
        if self.label_features is not None:
            everything = sp.csr_matrix(
                (np.ones(n_old, dtype=np.float32), (old_to_pos, np.arange(n_old))), shape=(n_all, n_old)
            )
            added = pifa(features, targets[:, n_old:]) if n_all > n_old else sp.csr_matrix((0, self.n_features))
            if config.pifa_threshold > 0 and added.nnz:
                added.data[np.abs(added.data) < config.pifa_threshold] = 0.0
                added.eliminate_zeros()
            place = sp.csr_matrix(
                (np.ones(n_all - n_old, dtype=np.float32), (added_pos, np.arange(n_all - n_old))),
                shape=(n_all, n_all - n_old),
            )
            label_features = (everything @ self.label_features + place @ added).tocsr().astype(np.float32)
        info = dict(self.train_info)
        info.update(
            {
                "incremental": True,
                "n_labels": n_all_labels,
                "update_documents": n_docs,
                "update_new_documents": int(new.sum()),
                "level_sizes": grown.level_sizes,
                "update_added_labels": n_all - n_old,
                "update_retrained_labels": len(np.unique(slot_label[retrain])),
                "update_seconds": round(time.perf_counter() - started, 3),
                "update_beam_seconds": round(beam_seconds, 3),
                "update_train_seconds": round(train_seconds, 3),
                "update_active_pairs": int(sum(len(task.rows) * len(task.positions()) for task in tasks)),
            }
        )
        model = XRLinear(
            config=config,
            tree=grown,
            layers=[*self.layers[:last], LayerWeights(weights, bias)],
            n_features=self.n_features,
            label_features=label_features,
            train_info=info,
            slot_label=slot_label,
        )
        info["weights_nnz"] = model.nnz
        report(1.0)
        return model

    # ----------------------------------------------------------------- inference

    def _scoring_layer(self, t: int) -> _ScoringLayer:
        if t not in self._scoring:
            last = t == self.tree.n_layers - 1
            label_features = self.label_features if last and self.label_features is not None else None
            self._scoring[t] = _ScoringLayer(self.layers[t], self.tree.child_ptr(t), label_features)
        return self._scoring[t]

    def _step(
        self, X: sp.csr_matrix, t: int, nodes: np.ndarray, scores: np.ndarray, keep: int, pifa_weight: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """One beam step: children of ``nodes`` (n, b) at layer t, keep the ``keep`` best per row.

        ``nodes`` are node indices of layer t - 1 (-1: empty slot), ``scores`` their path scores.
        Returns (positions (n, keep) int64, -1 for empty slots; scores (n, keep) float32, best first).
        """
        layer = self._scoring_layer(t)
        n, width = nodes.shape
        m = layer.max_children
        exponent = self.config.path_exponent
        if exponent != 1.0:
            scores = np.maximum(scores, 0.0) ** np.float32(exponent)  # (n, b) discounted ancestors
        use_pifa = pifa_weight > 0 and layer.pifa is not None
        if use_pifa:  # cosines need unit rows (TF-IDF rows are; embeddings may not be)
            norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())  # (n,)
            inv_norm = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-30), 0.0).astype(np.float32)  # (n,)
        if layer.full:
            clipped = np.maximum(nodes, 0)
            first = layer.ptr[clipped]  # (n, b)
            count = np.where(nodes >= 0, layer.ptr[clipped + 1] - first, 0)  # (n, b)
            offsets = np.arange(m)
            cand_pos = first[:, :, None] + offsets  # (n, b, m)
            valid = offsets < count[:, :, None]  # (n, b, m)
            cand_pos = np.where(valid, cand_pos, -1)
            gather = np.maximum(cand_pos, 0).reshape(n, -1)  # (n, b * m)
            raw = np.take_along_axis(layer.weights.all_scores(X) + layer.bias, gather, axis=1)
            block = transform_scores(raw, self.config.transform).reshape(n, width, m) * scores[:, :, None]
            if use_pifa:
                assert layer.pifa is not None
                cosine = np.take_along_axis(layer.pifa.all_scores(X), gather, axis=1).reshape(n, width, m)
                cosine *= inv_norm[:, None, None]
                block = (block + pifa_weight * np.maximum(cosine, 0.0)) / (1.0 + pifa_weight)
            cand_score = np.where(valid, block, EMPTY).reshape(n, width * m)
            cand_pos = cand_pos.reshape(n, width * m)
        else:
            cand_pos = np.full((n, width * m), -1, dtype=np.int64)
            cand_score = np.full((n, width * m), EMPTY, dtype=np.float32)
            flat = nodes.ravel()
            valid_slots = np.flatnonzero(flat >= 0)
            by_parent = valid_slots[np.argsort(flat[valid_slots], kind="stable")]
            parents, starts = np.unique(flat[by_parent], return_index=True)
            bounds = np.append(starts, len(by_parent))
            for parent, a, b in zip(parents, bounds[:-1], bounds[1:], strict=True):
                slots = by_parent[a:b]
                rows, slot = np.divmod(slots, width)
                rows_x = X[rows]  # (n_p, F)
                start, stop = layer.ptr[parent], layer.ptr[parent + 1]
                raw = layer.weights.parent_scores(rows_x, int(parent)) + layer.bias[start:stop]  # (n_p, m_p)
                block = transform_scores(raw, self.config.transform) * scores.ravel()[slots][:, None]
                if use_pifa:
                    assert layer.pifa is not None
                    cosine = layer.pifa.parent_scores(rows_x, int(parent)) * inv_norm[rows][:, None]  # (n_p, m_p)
                    block = (block + pifa_weight * np.maximum(cosine, 0.0)) / (1.0 + pifa_weight)
                m_p = raw.shape[1]
                columns = slot[:, None] * m + np.arange(m_p)
                cand_score[rows[:, None], columns] = block
                cand_pos[rows[:, None], columns] = layer.ptr[parent] + np.arange(m_p)
        if cand_score.shape[1] > keep:
            top = np.argpartition(-cand_score, keep - 1, axis=1)[:, :keep]
            cand_score = np.take_along_axis(cand_score, top, axis=1)
            cand_pos = np.take_along_axis(cand_pos, top, axis=1)
        # best first; equal scores by tree position (so results do not depend on the chunking)
        order = np.lexsort((cand_pos, -cand_score), axis=1)
        return np.take_along_axis(cand_pos, order, axis=1), np.take_along_axis(cand_score, order, axis=1)

    def _effective_beam(self, k: int, beam: int) -> int:
        """A beam wide enough that the leaves it keeps hold at least k labels."""
        smallest_leaf = int(np.diff(self.tree.leaf_bounds).min())
        return max(beam, math.ceil(k / smallest_leaf))

    def _beam_through(self, X: sp.csr_matrix, last: int, beam: int, chunk_size: int = 4096) -> np.ndarray:
        """Node indices (N, beam) of the top-``beam`` nodes of layer ``last`` for every row of X.

        Chunks of rows go to ``config.n_jobs`` forked workers (the model and X are shared copy-on-write).
        """
        starts = list(range(0, X.shape[0], chunk_size))
        state = {"model": self, "X": X, "last": last, "beam": beam, "chunk_size": chunk_size}
        out = np.full((X.shape[0], beam), -1, dtype=np.int64)
        for start, nodes in fork_map(_beam_chunk, starts, self.config.n_jobs, state):
            out[start : start + nodes.shape[0], : nodes.shape[1]] = nodes
        return out

    def predict_topk(
        self,
        X: Any,
        k: int,
        *,
        beam: int | None = None,
        pifa_weight: float | None = None,
        merge: str | None = None,
        chunk_size: int = 8192,
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best labels per document by beam search, best first.

        X (N, F) sparse or dense features. Returns (indices (N, k) int64 label ids, scores (N, k) float32
        in [0, 1]); k is clipped to the number of labels. ``beam`` (default ``config.beam``) is widened
        when needed so that k labels are reachable; ``pifa_weight`` (default ``config.pifa_weight``)
        re-weights the PIFA re-ranking of a model trained with it (0 switches it off). Works
        ``chunk_size`` documents at a time: the memory is O(chunk_size * beam * branching), never
        O(N * L), and the result does not depend on ``chunk_size``.

        With overlapping clusters the last step keeps k * (most slots of a label) slots and merges each
        label's slots by ``merge`` (default ``config.overlap_merge``: ``"max"`` or ``"mean"`` of the slots
        the beam reached), so the result still has one entry per label, k distinct labels per row.
        """
        how = self.config.overlap_merge if merge is None else merge
        if how not in ("max", "mean"):
            raise ValueError(f"merge must be 'max' or 'mean'; got {merge!r}")
        weight = self.config.pifa_weight if pifa_weight is None else pifa_weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight < float("inf"):
            raise ValueError(f"pifa_weight must be a number >= 0; got {pifa_weight!r}")
        if weight > 0 and self.label_features is None:
            raise ValueError("pifa_weight > 0 needs a model trained with XRConfig.pifa_weight > 0 (no PIFA stored)")
        k = min(check_positive_int(k), self.n_labels)
        keep = min(k * self._max_copies, self.n_slots)  # slots kept at the last step: >= k distinct labels
        width = self._effective_beam(keep, check_positive_int(beam if beam is not None else self.config.beam, "beam"))
        chunk_size = check_positive_int(chunk_size, "chunk_size")
        features = check_features(X, self.n_features)
        n_docs = features.shape[0]
        indices = np.empty((n_docs, k), dtype=np.int64)
        values = np.empty((n_docs, k), dtype=np.float32)
        last = self.tree.n_layers - 1
        with tqdm(total=n_docs, disable=not progress, desc="xr-linear predict", unit="doc") as bar:
            for start in range(0, n_docs, chunk_size):
                chunk = features[start : start + chunk_size]
                n = chunk.shape[0]
                nodes = np.zeros((n, 1), dtype=np.int64)
                scores = np.ones((n, 1), dtype=np.float32)
                for t in range(last + 1):
                    if t == last:
                        nodes, scores = self._step(chunk, t, nodes, scores, keep, float(weight))
                    else:
                        nodes, scores = self._step(chunk, t, nodes, scores, width)
                if nodes.shape[1] < keep or (nodes < 0).any():  # cannot happen with the widened beam
                    raise RuntimeError("beam search found fewer than k labels")
                slots = self.tree.order[nodes]  # (n, keep) slot ids
                if self.overlapped:
                    labels, scores = overlap.merge_slots(slots, scores, self.slot_label, k, how)
                else:
                    labels = slots  # slot id = label id
                indices[start : start + n] = labels
                values[start : start + n] = scores
                bar.update(n)
        return indices, values

    # --------------------------------------------------------------- persistence

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``arrays.npz`` (tree and weights) to ``directory``, atomically.

        The folder is self-describing (format, config, shapes, train_info, library versions) and holds
        no pickle; an existing model folder is replaced. Returns the folder.
        """
        payload = {
            **header(FORMAT, FORMAT_VERSION, "scipy"),
            "config": self.config.to_dict(),
            "n_features": self.n_features,
            "n_labels": self.n_labels,
            "n_slots": self.n_slots,
            "level_sizes": self.tree.level_sizes,
            "train_info": self.train_info,
        }
        arrays = dict(self.tree.to_arrays())
        for t, layer in enumerate(self.layers):
            W = layer.weights
            arrays[f"layer{t}_data"] = W.data.astype(np.float32)
            arrays[f"layer{t}_indices"] = W.indices.astype(np.int32)
            arrays[f"layer{t}_indptr"] = W.indptr.astype(np.int64)
            arrays[f"layer{t}_bias"] = layer.bias.astype(np.float32)
        if self.overlapped:
            arrays["slot_label"] = self.slot_label.astype(np.int64)
        if self.label_features is not None:
            Z = self.label_features
            arrays["pifa_data"] = Z.data.astype(np.float32)
            arrays["pifa_indices"] = Z.indices.astype(np.int32)
            arrays["pifa_indptr"] = Z.indptr.astype(np.int64)

        def write(folder: Path) -> None:
            write_json(folder / CONFIG_FILE, payload)
            with open(folder / ARRAYS_FILE, "wb") as handle:
                np.savez(handle, allow_pickle=False, **arrays)
                handle.flush()
                os.fsync(handle.fileno())

        target = write_folder(directory, write)
        logger.info("saved %s to %s", self, target)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> XRLinear:
        """Restore a model written by ``save``; ``ValueError`` naming the folder if missing or corrupt."""
        folder = Path(directory)
        config_path, arrays_path = folder / CONFIG_FILE, folder / ARRAYS_FILE
        if not config_path.is_file() or not arrays_path.is_file():
            raise ValueError(f"no saved XR-Linear model in {folder}: {CONFIG_FILE} and {ARRAYS_FILE} are required")
        try:
            payload = read_header(config_path, FORMAT, FORMAT_VERSION)
        except ValueError as exc:
            raise ValueError(f"corrupt model config {config_path}: {exc}") from exc
        try:
            config = XRConfig.from_dict(payload["config"])
            n_features = int(payload["n_features"])
            with np.load(arrays_path, allow_pickle=False) as arrays:
                tree = LabelTree.from_arrays(arrays, config.tree)
                layers = []
                for t in range(tree.n_layers):
                    n_nodes = int(tree.child_ptr(t)[-1])
                    W = sp.csr_matrix(
                        (arrays[f"layer{t}_data"], arrays[f"layer{t}_indices"], arrays[f"layer{t}_indptr"]),
                        shape=(n_nodes, n_features),
                    )
                    layers.append(LayerWeights(W, np.asarray(arrays[f"layer{t}_bias"], dtype=np.float32)))
                slot_label = np.asarray(arrays["slot_label"]) if "slot_label" in arrays.files else None
                label_features = None
                if "pifa_data" in arrays:
                    label_features = sp.csr_matrix(
                        (arrays["pifa_data"], arrays["pifa_indices"], arrays["pifa_indptr"]),
                        shape=(tree.n_labels, n_features),
                    )
            return cls(
                config=config,
                tree=tree,
                layers=layers,
                n_features=n_features,
                label_features=label_features,
                train_info=payload.get("train_info"),
                slot_label=slot_label,
            )
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise ValueError(f"corrupt XR-Linear model in {folder}: {exc}") from exc


def _beam_chunk(start: int) -> tuple[int, np.ndarray]:
    """Worker of ``XRLinear._beam_through``: the beam of rows start .. start + chunk_size."""
    state = solver._STATE
    model: XRLinear = state["model"]
    chunk = state["X"][start : start + state["chunk_size"]]
    nodes = np.zeros((chunk.shape[0], 1), dtype=np.int64)
    scores = np.ones((chunk.shape[0], 1), dtype=np.float32)
    for t in range(state["last"] + 1):
        nodes, scores = model._step(chunk, t, nodes, scores, state["beam"])
    return start, nodes
