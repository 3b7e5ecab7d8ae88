"""An ensemble of XR-Linear models on label trees built with different seeds (as Parabel's 3 trees).

Each member is trained on the same features with ``config.tree.seed + i`` as its tree seed (the PIFA
label features are computed once). A document's score for a label is the mean over the members of
their scores, a member that does not return the label among its ``candidates * k`` best counting 0.
"""

from __future__ import annotations

import logging
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
from learner.xmc.config import TreeConfig, XRConfig
from learner.xmc.model import XRLinear, check_features, check_targets
from learner.xmc.tree import LabelTree, pifa

__all__ = ["XREnsemble"]

logger = logging.getLogger(__name__)

FORMAT = "learner.XREnsemble"
FORMAT_VERSION = 1
MANIFEST = "ensemble.json"
CANDIDATES = 3  # each member proposes CANDIDATES * k labels


class XREnsemble:
    """Mean of the scores of several ``XRLinear`` models over the same labels and features."""

    def __init__(self, members: list[XRLinear], train_info: dict[str, Any] | None = None) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one model")
        shapes = {(m.n_features, m.n_labels) for m in members}
        if len(shapes) != 1:
            raise ValueError(f"ensemble members disagree on (n_features, n_labels): {sorted(shapes)}")
        self.members = members
        self.train_info: dict[str, Any] = dict(train_info or {})

    def __repr__(self) -> str:
        return f"XREnsemble(trees={len(self.members)}, labels={self.n_labels}, weights={self.nnz})"

    @property
    def n_labels(self) -> int:
        return self.members[0].n_labels

    @property
    def n_features(self) -> int:
        return self.members[0].n_features

    @property
    def nnz(self) -> int:
        return sum(m.nnz for m in self.members)

    @classmethod
    def train(
        cls,
        X: Any,
        Y: Any,
        config: XRConfig | None = None,
        *,
        n_trees: int = 3,
        on_progress: Callable[[float], None] | None = None,
        progress: bool = False,
    ) -> XREnsemble:
        """Train ``n_trees`` models, tree seeds ``config.tree.seed + i``; arguments as ``XRLinear.train``."""
        config = config or XRConfig()
        n_trees = check_positive_int(n_trees, "n_trees")
        features = check_features(X)
        targets = check_targets(Y, features.shape[0])
        started = time.perf_counter()
        label_features = pifa(features, targets)
        pifa_seconds = time.perf_counter() - started
        members = []
        for i in range(n_trees):
            tree_config = TreeConfig.from_dict({**config.tree.to_dict(), "seed": config.tree.seed + i})
            member_config = XRConfig.from_dict({**config.to_dict(), "tree": tree_config.to_dict()})
            started = time.perf_counter()
            tree = LabelTree.build(label_features, tree_config, progress=progress)
            tree_seconds = time.perf_counter() - started

            def share(fraction: float, i: int = i) -> None:
                if on_progress is not None:
                    on_progress((i + fraction) / n_trees)

            member = XRLinear.train(features, targets, member_config, tree=tree, on_progress=share, progress=progress)
            member.train_info["tree_seconds"] = round(tree_seconds + (pifa_seconds if i == 0 else 0.0), 3)
            members.append(member)
        info = {
            "n_trees": n_trees,
            "tree_seconds": round(sum(m.train_info["tree_seconds"] for m in members), 3),
            "rankers_seconds": round(sum(m.train_info["rankers_seconds"] for m in members), 3),
            "members": [m.train_info for m in members],
        }
        return cls(members, info)

    def predict_topk(
        self, X: Any, k: int, *, beam: int | None = None, chunk_size: int = 4096, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best labels by mean member score; shapes and guarantees as ``XRLinear.predict_topk``."""
        k = min(check_positive_int(k), self.n_labels)
        chunk_size = check_positive_int(chunk_size, "chunk_size")
        features = check_features(X, self.n_features)
        n_docs = features.shape[0]
        wide = min(self.n_labels, CANDIDATES * k)
        indices = np.empty((n_docs, k), dtype=np.int64)
        values = np.empty((n_docs, k), dtype=np.float32)
        with tqdm(total=n_docs, disable=not progress, desc="xr-ensemble predict", unit="doc") as bar:
            for start in range(0, n_docs, chunk_size):
                chunk = features[start : start + chunk_size]
                n = chunk.shape[0]
                total = sp.csr_matrix((n, self.n_labels), dtype=np.float32)
                for member in self.members:
                    top, scores = member.predict_topk(chunk, wide, beam=beam, chunk_size=chunk_size)
                    rows = np.repeat(np.arange(n), top.shape[1])
                    total = total + sp.csr_matrix((scores.ravel(), (rows, top.ravel())), shape=total.shape)
                total = total.tocsr()
                total.sort_indices()
                best_idx, best_val = row_topk(total, k)
                indices[start : start + n] = best_idx
                values[start : start + n] = best_val / len(self.members)
                bar.update(n)
        return indices, values

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """``ensemble.json`` and one ``XRLinear`` folder per member (``tree0``, ``tree1``, ...), atomically."""
        names = [f"tree{i}" for i in range(len(self.members))]
        manifest = {
            **header(FORMAT, FORMAT_VERSION),
            "members": names,
            "train_info": {key: value for key, value in self.train_info.items() if key != "members"},
        }

        def write(folder: Path) -> None:
            for name, member in zip(names, self.members, strict=True):
                member.save(folder / name)
            write_json(folder / MANIFEST, manifest)

        return write_folder(directory, write)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> XREnsemble:
        folder = Path(directory)
        path = folder / MANIFEST
        if not path.is_file():
            raise ValueError(f"no saved XR-Linear ensemble in {folder}: {MANIFEST} is required")
        try:
            manifest = read_header(path, FORMAT, FORMAT_VERSION)
            names = [str(name) for name in manifest["members"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"corrupt ensemble manifest {path}: {exc}") from exc
        return cls([XRLinear.load(folder / name) for name in names], manifest.get("train_info"))


def row_topk(matrix: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a CSR matrix with at least k stored entries: the k largest (columns, values), best first."""
    n = matrix.shape[0]
    lengths = np.diff(matrix.indptr)
    if lengths.min(initial=k) < k:
        raise RuntimeError("fewer than k candidates in a row")
    width = int(lengths.max(initial=k))
    dense_val = np.full((n, width), -np.inf, dtype=np.float32)
    dense_col = np.zeros((n, width), dtype=np.int64)
    offsets = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], lengths)
    rows = np.repeat(np.arange(n), lengths)
    dense_val[rows, offsets] = matrix.data
    dense_col[rows, offsets] = matrix.indices
    order = np.lexsort((dense_col, -dense_val), axis=1)[:, :k]
    return np.take_along_axis(dense_col, order, axis=1), np.take_along_axis(dense_val, order, axis=1)
