"""Shared test problems of the learner.xmc tests: a synthetic label problem and a fast XR-Linear config."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from learner.xmc import TreeConfig, XRConfig

FAST = XRConfig(tree=TreeConfig(branching=2, leaf_size=5, seed=0), beam=2, pifa_weight=0.0, n_jobs=1)


def make_problem(
    n_docs: int = 600, n_labels: int = 40, n_features: int = 300, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Documents made of their labels' signature features plus noise: X (N, F) rows unit norm, Y (N, L)."""
    rng = np.random.default_rng(seed)
    signatures = [rng.choice(n_features, size=8, replace=False) for _ in range(n_labels)]
    popularity = rng.dirichlet(np.ones(n_labels) * 0.7)
    rows, cols, vals, y_rows, y_cols = [], [], [], [], []
    for i in range(n_docs):
        labels = np.unique(rng.choice(n_labels, size=rng.integers(1, 4), p=popularity))
        features = np.concatenate([rng.choice(signatures[j], size=5, replace=False) for j in labels])
        features = np.unique(np.concatenate([features, rng.choice(n_features, size=5)]))
        rows += [i] * len(features)
        cols += list(features)
        vals += list(rng.uniform(0.2, 1.0, size=len(features)))
        y_rows += [i] * len(labels)
        y_cols += list(labels)
    X = sp.csr_matrix((vals, (rows, cols)), shape=(n_docs, n_features), dtype=np.float32)
    X = sp.csr_matrix(X.multiply(1.0 / np.sqrt(X.multiply(X).sum(axis=1))), dtype=np.float32)
    Y = sp.csr_matrix((np.ones(len(y_rows), np.float32), (y_rows, y_cols)), shape=(n_docs, n_labels))
    return X, Y


def recall_at(Y: sp.csr_matrix, top: np.ndarray) -> float:
    hits = np.asarray(Y[np.repeat(np.arange(Y.shape[0]), top.shape[1]), top.ravel()]).reshape(top.shape)
    return float(hits.sum() / Y.sum())
