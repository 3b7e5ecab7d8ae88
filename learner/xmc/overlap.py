"""Overlapping leaf clusters (label disentanglement, Liu et al., NeurIPS 2021), numpy and scipy only.

A label whose documents have several meanings sits in one leaf cluster of a partition tree, so the
documents of its other meanings, which the matcher routes elsewhere, never reach it. The recipe:
beam-search the training documents through a trained matcher, count for every label the leaf clusters
its positive documents are routed to (``route_counts``), give every label up to lambda leaves (its own
plus the most-routed others, ``assign_slots``), duplicate the label into one *slot* per leaf
(``slot_tree``), retrain, and at inference merge the scores of a label's slots back into one
(``merge_slots``). ``XRLinear.train`` drives it when ``XRConfig.overlap_lambda`` > 1.

Slots: slot ``l`` (l < L) is label ``l`` in its home leaf; slots L .. S-1 are the duplicates, grouped by
label (ascending), a label's duplicates by descending count. ``slot_label`` (S,) maps slot -> label.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from learner.xmc.config import MERGES
from learner.xmc.tree import LabelTree

__all__ = ["assign_slots", "merge_slots", "route_counts", "slot_tree"]


def route_counts(Y: Any, leaves: np.ndarray, n_leaves: int) -> sp.csr_matrix:
    """How often each label's positive documents are routed to each leaf: (L, n_leaves) int64 CSR.

    Y (N, L) 0/1 targets (label order); ``leaves`` (N, b) the leaf indices the matcher's beam keeps for
    every document (-1: empty slot; a leaf listed twice in a row counts once). Entry [l, c] is the
    number of documents with label l whose beam holds leaf c. Raises ``ValueError`` on mismatched rows
    or leaf indices outside [-1, n_leaves).
    """
    targets = sp.csr_matrix(Y)
    leaves = np.asarray(leaves, dtype=np.int64)
    if leaves.ndim != 2 or leaves.shape[0] != targets.shape[0]:
        raise ValueError(f"leaves must be (N, b) with N = {targets.shape[0]} rows of Y; got shape {leaves.shape}")
    if leaves.size and (leaves.min() < -1 or leaves.max() >= n_leaves):
        raise ValueError(f"leaf indices must be in [-1, {n_leaves}); got {leaves.min()} .. {leaves.max()}")
    n_docs, width = leaves.shape
    docs = np.repeat(np.arange(n_docs), width)  # (N * b,)
    flat = leaves.ravel()
    keep = flat >= 0
    routed = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.int64), (docs[keep], flat[keep])), shape=(n_docs, n_leaves)
    )
    routed.data[:] = 1  # duplicates were summed: binarise
    positives = targets.astype(bool).astype(np.int64)  # (N, L)
    counts = (positives.T @ routed).tocsr()  # (L, n_leaves)
    counts.eliminate_zeros()
    counts.sort_indices()
    return counts


def assign_slots(
    counts: sp.csr_matrix, home_leaf: np.ndarray, lam: int, min_count: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``lam`` leaves per label: its home leaf plus the other leaves its documents reach most.

    ``counts`` (L, n_leaves) from ``route_counts``; ``home_leaf`` (L,) each label's leaf in the tree the
    counts were made with (the non-overlapping one). A label gets at most ``lam - 1`` extra leaves, by
    descending count (equal counts: the lower leaf index first), each reached by at least ``min_count``
    of its documents. Returns (slot_label (S,), slot_leaf (S,)) int64, S = L + number of duplicates:
    slot l < L is label l in its home leaf, then the duplicates grouped by label. Deterministic.
    """
    counts = sp.csr_matrix(counts)
    home_leaf = np.asarray(home_leaf, dtype=np.int64)
    n_labels, n_leaves = counts.shape
    if home_leaf.shape != (n_labels,):
        raise ValueError(f"home_leaf must have shape ({n_labels},); got {home_leaf.shape}")
    if n_labels and (home_leaf.min() < 0 or home_leaf.max() >= n_leaves):
        raise ValueError(f"home_leaf entries must be leaf indices in [0, {n_leaves})")
    if isinstance(lam, bool) or not isinstance(lam, int | np.integer) or lam < 1:
        raise ValueError(f"lam must be a positive integer; got {lam!r}")
    if isinstance(min_count, bool) or not isinstance(min_count, int | np.integer) or min_count < 1:
        raise ValueError(f"min_count must be a positive integer; got {min_count!r}")
    coo = counts.tocoo()
    label, leaf, count = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    eligible = (count >= min_count) & (leaf != home_leaf[label])
    label, leaf, count = label[eligible], leaf[eligible], count[eligible]
    order = np.lexsort((leaf, -count, label))  # by label, then descending count, then leaf
    label, leaf = label[order], leaf[order]
    starts = np.searchsorted(label, label)  # (E,) the first candidate of each entry's label
    rank = np.arange(len(label)) - starts  # 0 = the most-routed other leaf
    chosen = rank < lam - 1
    slot_label = np.concatenate([np.arange(n_labels, dtype=np.int64), label[chosen]])
    slot_leaf = np.concatenate([home_leaf, leaf[chosen]])
    return slot_label, slot_leaf


def slot_tree(base: LabelTree, slot_label: np.ndarray, slot_leaf: np.ndarray) -> LabelTree:
    """The tree over S slots: ``base``'s cluster levels, each leaf holding its slots.

    ``base`` is the non-overlapping tree over L labels; ``slot_label`` and ``slot_leaf`` (S,) come from
    ``assign_slots`` (slot l < L must be label l in its base leaf). Within a leaf, the base labels keep
    their base order, then the duplicates follow by slot id. The result's ``order`` holds slot ids.
    """
    slot_label = np.asarray(slot_label, dtype=np.int64)
    slot_leaf = np.asarray(slot_leaf, dtype=np.int64)
    n_labels, n_leaves = base.n_labels, len(base.leaf_bounds) - 1
    if slot_label.shape != slot_leaf.shape or slot_label.ndim != 1 or len(slot_label) < n_labels:
        raise ValueError(f"slot_label and slot_leaf must be equal-length 1-D arrays of >= {n_labels} slots")
    if not np.array_equal(slot_label[:n_labels], np.arange(n_labels)) or not np.array_equal(
        slot_leaf[:n_labels], base.leaf_of_label()
    ):
        raise ValueError("slots 0 .. L-1 must be the labels themselves in their base leaves")
    if slot_leaf.min() < 0 or slot_leaf.max() >= n_leaves:
        raise ValueError(f"slot_leaf entries must be leaf indices in [0, {n_leaves})")
    n_slots = len(slot_label)
    base_position = np.empty(n_labels, dtype=np.int64)
    base_position[base.order] = np.arange(n_labels)
    within = np.concatenate([base_position, np.arange(n_labels, n_slots)])  # base order, then slot id
    order = np.lexsort((within, slot_leaf))  # (S,) slots grouped by leaf
    bounds = np.concatenate([[0], np.cumsum(np.bincount(slot_leaf, minlength=n_leaves))])
    return LabelTree(order=order, leaf_bounds=bounds, depths=base.depths, config=base.config)


def merge_slots(
    slots: np.ndarray, scores: np.ndarray, slot_label: np.ndarray, k: int, how: str = "max"
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the scored slots of every row into one score per label; keep the k best labels.

    ``slots`` (n, m) slot ids (all valid), ``scores`` (n, m) their scores, ``slot_label`` (S,) slot ->
    label. A label's score is the max (``how="max"``) or the mean (``"mean"``) of the scores of its slots
    present in the row (as PECOS's debiased mean: slots the beam did not reach do not count). Returns
    (labels (n, k) int64, scores (n, k) float32), best first; equal scores: the label whose best slot
    came first. Raises ``ValueError`` if a row holds fewer than k distinct labels or ``how`` is unknown.
    """
    if how not in MERGES:
        raise ValueError(f"how must be one of {', '.join(MERGES)}; got {how!r}")
    slots = np.asarray(slots, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    if slots.shape != scores.shape or slots.ndim != 2:
        raise ValueError(f"slots and scores must be (n, m) arrays of one shape; got {slots.shape}, {scores.shape}")
    n, m = slots.shape
    labels = np.asarray(slot_label, dtype=np.int64)[slots]  # (n, m)
    n_labels = int(labels.max()) + 1 if labels.size else 1
    key = (np.arange(n)[:, None] * n_labels + labels).ravel()  # (n * m,) one key per (row, label)
    column = np.tile(np.arange(m), n)  # (n * m,)
    flat_scores = scores.ravel()
    order = np.lexsort((column, key))  # grouped by (row, label), each group in column order
    key, column, flat_scores = key[order], column[order], flat_scores[order]
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))  # (G,) group starts
    sizes = np.diff(np.append(starts, len(key)))  # (G,)
    if how == "max":
        merged = np.maximum.reduceat(flat_scores, starts)  # (G,)
    else:
        merged = np.add.reduceat(flat_scores.astype(np.float64), starts) / sizes
    first = column[starts]  # (G,) the column of the group's first (best) slot
    row, label = np.divmod(key[starts], n_labels)  # (G,)
    rank = np.arange(len(starts)) - np.searchsorted(row, row)  # (G,) index of the group within its row
    out_score = np.full((n, m), -np.inf)
    out_first = np.full((n, m), m, dtype=np.int64)
    out_label = np.full((n, m), -1, dtype=np.int64)
    out_score[row, rank] = merged
    out_first[row, rank] = first
    out_label[row, rank] = label
    if np.bincount(row, minlength=n).min(initial=k) < k:
        raise ValueError(f"a row holds fewer than k = {k} distinct labels")
    best = np.lexsort((out_first, -out_score), axis=1)[:, :k]  # (n, k)
    return (
        np.take_along_axis(out_label, best, axis=1),
        np.take_along_axis(out_score, best, axis=1).astype(np.float32),
    )
