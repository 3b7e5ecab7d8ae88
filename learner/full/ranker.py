"""The XR-Transformer final ranker (Zhang et al. 2021, "Fast Multi-Resolution Transformer Fine-tuning for Extreme
Multi-label Text Classification", section 4.3): after the encoder is fine-tuned on the label tree, a linear XR model
is trained on the concatenation of the documents' TF-IDF features and their fine-tuned embeddings, over the same
tree, and ranks the labels at inference. Sparse lexical evidence (rare words, names) and the dense semantic one
complement each other, which the paper measured to matter most on the tail labels.

``FinalRanker`` holds the TF-IDF featurizer, the ``learner.xmc.XRLinear`` model and the map from its columns to the
full tier's labels (an incremental update appends new labels to the XR model's columns, whatever the order of the
update's label list). Features: [TF-IDF row (L2-normalised) | w * embedding (L2-normalised)], w =
``embedding_weight``, so each part weighs what the config says whatever the vocabulary size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from learner.artifacts import write_folder

RANKER_FILE = "ranker.json"
TFIDF_DIR = "tfidf"
XR_DIR = "xr"


@dataclass
class FinalRanker:
    """TF-IDF featurizer + XR-Linear over [TF-IDF ⊕ embedding]; ``columns[j]`` is the full tier's label index of the
    XR model's column j."""

    featurizer: Any  # learner.features.TfidfFeaturizer
    model: Any  # learner.xmc.XRLinear
    columns: np.ndarray  # (L,) int64
    embedding_weight: float

    def features(self, texts: Sequence[str], embeddings: np.ndarray) -> sp.csr_matrix:
        """(N, V + H) features of `texts` with their (N, H) L2-normalised embeddings."""
        return concat_features(self.featurizer.transform(list(texts)), embeddings, self.embedding_weight)

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        embeddings: np.ndarray,
        targets: sp.csr_matrix,
        *,
        tree: Any,
        featurizer: Any | None,
        xr: Any,
        embedding_weight: float,
        on_progress: Callable[[float], None] | None = None,
        progress: bool = False,
    ) -> FinalRanker:
        """Trains on (N,) texts, (N, H) embeddings and (N, L) targets over `tree` (a ``learner.xmc.LabelTree`` of L
        labels) with `xr` (a ``learner.xmc.XRConfig``); `featurizer` is a fitted TF-IDF featurizer (fitted on `texts`
        here when None)."""
        from learner.features import TfidfConfig, TfidfFeaturizer
        from learner.xmc import XRLinear

        if featurizer is None:
            featurizer = TfidfFeaturizer.fit(list(texts), TfidfConfig(min_df=1), progress=progress)
        X = concat_features(featurizer.transform(list(texts)), embeddings, embedding_weight)
        model = XRLinear.train(X, targets, xr, tree=tree, on_progress=on_progress, progress=progress)
        return cls(featurizer, model, np.arange(targets.shape[1], dtype=np.int64), embedding_weight)

    def update(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray,
        targets: sp.csr_matrix,
        old_to_new: np.ndarray,
        *,
        n_new_rows: int,
    ) -> FinalRanker:
        """A new ranker continued on update documents (`targets` (N, L') over the updated labels, `old_to_new` the
        updated index of each of this ranker's labels, the first `n_new_rows` rows new documents): the XR model's
        ``update`` (labels with new positives retrained, new labels join the tree) on the updated encoder's
        embeddings. The TF-IDF vocabulary is kept: a word new since training reaches the ranker only through the
        embedding until a full retrain refits it."""
        old = old_to_new[self.columns]  # (L,) updated label index of each XR column
        added = np.setdiff1d(np.arange(targets.shape[1]), old)
        columns = np.concatenate([old, added]).astype(np.int64)  # XR column -> updated label index
        X = self.features(texts, embeddings)
        model = self.model.update(X, targets[:, columns], new_rows=np.arange(n_new_rows))
        return FinalRanker(self.featurizer, model, columns, self.embedding_weight)

    def predict_topk(
        self, texts: Sequence[str], embeddings: np.ndarray, k: int, *, beam: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) full-tier label indices (-1: none) and XR scores in [0, 1], best first."""
        idx, scores = self.model.predict_topk(self.features(texts, embeddings), k, beam=beam)
        idx = np.where(idx >= 0, self.columns[np.clip(idx, 0, None)], -1)
        return idx.astype(np.int64), scores.astype(np.float32)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        def write(folder: Path) -> None:
            self.featurizer.save(folder / TFIDF_DIR)
            self.model.save(folder / XR_DIR)
            payload = {"columns": self.columns.tolist(), "embedding_weight": self.embedding_weight}
            (folder / RANKER_FILE).write_text(json.dumps(payload))

        return write_folder(directory, write)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> FinalRanker:
        """Raises ValueError on a missing or corrupt folder."""
        from learner.features import TfidfFeaturizer
        from learner.xmc import XRLinear

        folder = Path(directory)
        try:
            payload = json.loads((folder / RANKER_FILE).read_text())
            columns = np.asarray(payload["columns"], dtype=np.int64)
            weight = float(payload["embedding_weight"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"corrupt final ranker in {folder}: {exc}") from exc
        model = XRLinear.load(folder / XR_DIR)
        if model.n_labels != len(columns):
            raise ValueError(f"corrupt final ranker in {folder}: {model.n_labels} labels for {len(columns)} columns")
        return cls(TfidfFeaturizer.load(folder / TFIDF_DIR), model, columns, weight)


def concat_features(tfidf: sp.csr_matrix, embeddings: np.ndarray, weight: float) -> sp.csr_matrix:
    """[tfidf | weight * embeddings] (N, V + H) CSR float32; both parts' rows L2-normalised first."""
    tfidf = sp.csr_matrix(tfidf, dtype=np.float32)
    norms = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1)).ravel())
    tfidf = sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)) @ tfidf
    dense = np.asarray(embeddings, dtype=np.float32)
    if dense.ndim != 2 or dense.shape[0] != tfidf.shape[0]:
        raise ValueError(f"embeddings must be (N, H) with N = {tfidf.shape[0]}; got {dense.shape}")
    dense_norms = np.linalg.norm(dense, axis=1, keepdims=True)
    dense = np.where(dense_norms > 0, dense / np.maximum(dense_norms, 1e-12), 0.0) * np.float32(weight)
    return sp.hstack([tfidf, sp.csr_matrix(dense.astype(np.float32))], format="csr", dtype=np.float32)
