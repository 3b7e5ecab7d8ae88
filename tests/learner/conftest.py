"""Fixtures for the learner tests: a tiny BERT encoder built offline, and small synthetic datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece tokenizer trained on the fly (about a second)."""
    from learner.testing import build_tiny_encoder

    return Path(build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert")))


@pytest.fixture(scope="session")
def other_tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same architecture with different random weights."""
    from learner.testing import build_tiny_encoder

    return Path(build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert-2"), seed=1))


def make_clustered(
    n_docs: int, *, dim: int = 16, n_labels: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A separable multi-label set: 6 well-apart clusters, each with a fixed label set (one has none).

    Returns X (N, dim) float32, Y (N, n_labels) 0/1 float32, the label names.
    """
    rng = np.random.default_rng(seed)
    label_sets = [[0], [1], [2], [0, 3], [1, 2], []]
    centers = rng.normal(size=(len(label_sets), dim)) * 3.0
    cluster = rng.integers(0, len(label_sets), size=n_docs)
    X = (centers[cluster] + rng.normal(scale=0.3, size=(n_docs, dim))).astype(np.float32)
    Y = np.zeros((n_docs, n_labels), dtype=np.float32)
    for i, c in enumerate(cluster):
        Y[i, label_sets[c]] = 1.0
    return X, Y, [f"label-{j}" for j in range(n_labels)]


@pytest.fixture
def clustered() -> tuple[np.ndarray, np.ndarray, list[str]]:
    return make_clustered(300)
