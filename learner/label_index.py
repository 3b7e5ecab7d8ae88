"""A semantic index of a label set for search: unit vectors of label texts, several rows per label (numpy only).

Each row is one text of a label (its name + description, each alternative name) or the centroid of the documents
labelled with it (`label_centroids`: the label's meaning as the project's experts use it, in the documents' own
languages), so a query close to any of them finds the label::

    index = LabelIndex(label_ids, vectors, fingerprint)      # (R,) int64 and (R, D) unit rows, R >= labels
    index.save(folder); index = LabelIndex.load(folder)       # two .npy files + a header, swapped in atomically
    index.search(query_vector, k)                             # [(label_id, cosine)], best first, one per label

A search is one (R, D) x (D,) product: 41,218 labels with a few alternative names each are a few milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from learner.artifacts import header, read_header, write_folder, write_json

__all__ = ["LabelIndex", "label_centroids"]

FORMAT = "learner.LabelIndex"
FORMAT_VERSION = 1
HEADER_FILE = "index.json"


class LabelIndex:
    """Label texts' vectors and the label each row belongs to; ``fingerprint`` names the encoder that made them
    (a query must be embedded by the same encoder)."""

    def __init__(self, label_ids: np.ndarray, vectors: np.ndarray, fingerprint: str) -> None:
        label_ids = np.asarray(label_ids)
        vectors = np.asarray(vectors)
        if label_ids.ndim != 1 or label_ids.dtype.kind not in "iu":
            raise ValueError(f"label_ids must be a 1-D integer array; got {label_ids.dtype} {label_ids.shape}")
        if vectors.ndim != 2 or len(vectors) != len(label_ids):
            raise ValueError(f"vectors must be (R, D) with R = {len(label_ids)} label ids; got {vectors.shape}")
        self.label_ids = label_ids.astype(np.int64, copy=False)  # (R,)
        self.vectors = vectors.astype(np.float32, copy=False)  # (R, D)
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.label_ids)

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The ``k`` labels whose best row is closest to ``query`` (D,) by inner product (cosine for unit rows),
        best first, as (label id, similarity); each label once. Raises ``ValueError`` on a query of another size."""
        query = np.asarray(query, dtype=np.float32).reshape(-1)  # (D,)
        if len(self) == 0 or k <= 0:
            return []
        if query.shape[0] != self.vectors.shape[1]:
            raise ValueError(f"query has {query.shape[0]} dimensions, the index {self.vectors.shape[1]}")
        sims = self.vectors @ query  # (R,)
        # Rows of one label compete: take more rows than k so that k distinct labels survive the de-duplication.
        take = min(len(sims), max(4 * k, k + 32))
        top = np.argpartition(-sims, take - 1)[:take] if take < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top], kind="stable")]
        out: list[tuple[int, float]] = []
        seen: set[int] = set()
        for row in top:
            label_id = int(self.label_ids[row])
            if label_id not in seen:
                seen.add(label_id)
                out.append((label_id, float(sims[row])))
                if len(out) == k:
                    break
        return out

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Writes the index into ``folder`` (replaced atomically: a reader sees the old or the new index)."""

        def write(tmp: Path) -> None:
            np.save(tmp / "label_ids.npy", self.label_ids, allow_pickle=False)
            np.save(tmp / "vectors.npy", self.vectors, allow_pickle=False)
            write_json(tmp / HEADER_FILE, {**header(FORMAT, FORMAT_VERSION), "fingerprint": self.fingerprint})

        return write_folder(folder, write)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> LabelIndex:
        """The index saved in ``folder`` (vectors memory-mapped). Raises ``ValueError`` when it is not one."""
        folder = Path(folder)
        meta = read_header(folder / HEADER_FILE, FORMAT, FORMAT_VERSION)
        label_ids = np.load(folder / "label_ids.npy", allow_pickle=False)
        vectors = np.load(folder / "vectors.npy", mmap_mode="r", allow_pickle=False)
        return cls(label_ids, vectors, str(meta.get("fingerprint", "")))


def label_centroids(rows: list[list[int]], X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each label's documents averaged: ``rows[i]`` are the label ids of document ``i``, ``X`` (N, D) its vector.

    Returns (label ids (M,), unit vectors (M, D)) for the M labels with at least one document, ids ascending: the
    normalised mean of their documents' vectors, the instance-based label embedding of the extreme-classification
    papers (PIFA in X-Transformer, the label centroids of LightDXML) in the encoder's space. A query embedded by the
    same encoder is close to it when it says what those documents are about, in whatever language they are written:
    an English query finds a German label that experts gave to English documents. One sparse (M, N) x (N, D)
    product."""
    from scipy import sparse

    X = np.asarray(X, dtype=np.float32)
    if len(rows) != len(X):
        raise ValueError(f"{len(rows)} label lists for {len(X)} document vectors")
    pairs = [(label_id, i) for i, labels in enumerate(rows) for label_id in set(labels)]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros((0, X.shape[1] if X.ndim == 2 else 0), dtype=np.float32)
    ids, columns = np.unique(np.array([label_id for label_id, _ in pairs], dtype=np.int64), return_inverse=True)
    members = sparse.csr_matrix(
        (np.ones(len(pairs), dtype=np.float32), (columns, [i for _, i in pairs])), shape=(len(ids), len(X))
    )  # (M, N)
    sums = np.asarray(members @ X, dtype=np.float32)  # (M, D)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)  # (M, 1)
    return ids, sums / np.maximum(norms, 1e-12)
