"""A label-name prior: zero-shot suggestions from the labels' names and descriptions (numpy only).

Every label has a name (often a description) before it has a single positive document. Embedded with the
project's sentence encoder, the label texts become an index of L unit vectors; a document's cosine similarity to
each of them, mapped to a probability by ``sigmoid(scale * cos + offset)``, is the prior::

    prior = LabelPrior(labels, label_embeddings)            # (L, D) unit rows, from Encoder.encode(label_texts)
    idx, probs = prior.predict_topk(doc_embeddings, k)       # (N, k) each, best first; never an N x L matrix
    prior = prior.calibrated(doc_embeddings, Y)              # (scale, offset) refitted on labelled documents

Top-k goes through the index in chunks of documents (exact inner-product search, ``chunk`` documents x L at a
time), so 41,218 labels cost one (chunk, L) block at a time, not a pool x labels matrix.

Before any label exists the calibration is the default ``(scale, offset)`` of ``PriorConfig``, chosen on a split of
the GoEmotions *train* file (docs/benchmarks.md); as soon as labelled documents exist, ``calibrated`` refits the two
numbers on them (all (document, label) pairs up to ``max_dense_labels`` labels, else each document's positives
and its prior shortlist).

The trained head takes over label by label (``blend``): p = w_l * p_model + (1 - w_l) * p_prior with
w_l = n_l / (n_l + pseudo_positives), n_l the label's labelled positives (``learner.fast.FastTier`` does this when
given a prior); a tree head (large label sets) blends every label with one weight, ``PriorConfig.tree_weight``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from learner.artifacts import header, read_header, write_folder, write_json
from learner.config import Params, check_float, check_int

__all__ = ["LabelPrior", "PriorConfig", "label_text", "topk_rows"]

FORMAT = "learner.LabelPrior"
FORMAT_VERSION = 1


def label_text(name: str, description: str = "") -> str:
    """The text a label is embedded as: its name, then its description when it has one."""
    name, description = name.strip(), (description or "").strip()
    if not name:
        raise ValueError("a label needs a non-empty name")
    return f"{name}: {description}" if description else name


@dataclass(frozen=True)
class PriorConfig(Params):
    """Settings of the label-name prior and of its hand-over to the trained head."""

    # p = sigmoid(scale * cos + offset) before any labelled document: fitted on 2,000 GoEmotions train documents
    # (bench/tune_prior.py; bench/results/tune_prior_goemotions.json); refitted on the labelled documents after.
    scale: float = 5.51
    offset: float = -3.72
    # w_l = n_l / (n_l + pseudo_positives): the trained head's share of label l. 10 was best of 1/3/10/30 on a
    # held-out part of the GoEmotions train file at 20/100/500 labels (macro-F1; micro-F1 within noise).
    pseudo_positives: float = 10.0
    # Tree heads (large label sets) blend with one weight for every label: p = tree_weight * p_tree + (1 -
    # tree_weight) * p_prior over the union of the tree's shortlist and the prior's `candidates`. Per-label weights
    # n_l / (n_l + pseudo_positives) lost P@1 / P@5 on tibkat-gnd (41,218 labels) at 200 and 1,000 labels with every
    # pseudo-count tried (10, 1, 0.1: P@1 0.149 / 0.128 / 0.125 against the tree's 0.241 at 1,000; the labels without
    # positives, nearly all of them, take the prior's score unchanged and crowd out the tree's). One weight, chosen on
    # a held-out part of the tibkat-gnd train file (3 seeds, bench/results/tune-tree-weight/; P@5 at 200 / 1,000
    # labels, the tree alone 0.087 / 0.114): 0.8 0.084 / 0.089, 0.9 0.098 / 0.106, 0.95 0.109 / 0.126, 0.98
    # 0.099 / 0.126 (P@1 0.282 / 0.315 at 0.95 against the tree's 0.162 / 0.241).
    blend_trees: bool = True
    tree_weight: float = 0.95
    candidates: int = 20  # labels the prior proposes per document next to a tree head's shortlist
    max_dense_labels: int = 1000  # calibration over every (document, label) pair up to this many labels
    min_calibration_documents: int = 5  # fewer labelled documents: keep the default calibration
    chunk: int = 256  # documents per block of the top-k search: (256, 41,218) float32 is 42 MB

    def __post_init__(self) -> None:
        check_float(self, "scale", 0.0, 1e4, low_open=True, high_open=False)
        check_float(self, "offset", -1e4, 1e4, low_open=False, high_open=False)
        check_float(self, "pseudo_positives", 0.0, 1e6, low_open=False, high_open=False)
        check_float(self, "tree_weight", 0.0, 1.0, low_open=False, high_open=False)
        for name, minimum in (("candidates", 1), ("max_dense_labels", 1), ("min_calibration_documents", 1)):
            check_int(name, getattr(self, name), minimum)
        check_int("chunk", self.chunk, 1)


def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest entries of each row of `scores` (C, L): (C, k) column indices and values, best first."""
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (C, k) unordered
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    values = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)


def _unit_rows(array: Any, what: str) -> np.ndarray:
    rows = np.asarray(array, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array (rows, D); got shape {rows.shape}")
    if not np.isfinite(rows).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.ascontiguousarray(rows / np.maximum(norms, 1e-12), dtype=np.float32)


class LabelPrior:
    """L label vectors (unit rows) and a calibration ``sigmoid(scale * cos + offset)``."""

    def __init__(
        self,
        labels: Sequence[str],
        label_embeddings: Any,
        config: PriorConfig | None = None,
        *,
        scale: float | None = None,
        offset: float | None = None,
        calibrated_on: int = 0,
    ) -> None:
        names = list(labels)
        if not names or len(set(names)) != len(names):
            raise ValueError("labels must be a non-empty list of distinct names")
        vectors = _unit_rows(label_embeddings, "label embeddings")
        if vectors.shape[0] != len(names):
            raise ValueError(f"{len(names)} labels but {vectors.shape[0]} label embeddings")
        self.labels = names
        self.vectors = vectors  # (L, D); a zero row: a label without a vector (yet), scored as cosine -1
        self.missing = ~np.any(vectors != 0, axis=1)  # (L,)
        self.config = config or PriorConfig()
        self.scale = float(self.config.scale if scale is None else scale)
        self.offset = float(self.config.offset if offset is None else offset)
        self.calibrated_on = int(calibrated_on)

    def __repr__(self) -> str:
        return f"LabelPrior(labels={len(self.labels)}, scale={self.scale:.3g}, offset={self.offset:.3g})"

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def _docs(self, embeddings: Any) -> np.ndarray:
        docs = np.asarray(embeddings, dtype=np.float32)
        if docs.ndim != 2 or docs.shape[1] != self.dim:
            raise ValueError(f"document embeddings must be (N, {self.dim}); got shape {docs.shape}")
        return docs

    # ----------------------------------------------------------------- scores
    def probabilities(self, cosines: Any) -> np.ndarray:
        """Calibrated probabilities for cosine similarities (any shape)."""
        return _sigmoid(self.scale * np.asarray(cosines, dtype=np.float32) + self.offset)

    def similarities(self, embeddings: Any, idx: Any) -> np.ndarray:
        """(N, K) cosine similarity of each document (N, D) to the labels ``idx`` (N, K); -1 slots give -1."""
        docs = self._docs(embeddings)
        idx = np.asarray(idx, dtype=np.int64)
        if idx.ndim != 2 or idx.shape[0] != docs.shape[0]:
            raise ValueError(f"idx must be (N, K) with N = {docs.shape[0]}; got shape {idx.shape}")
        cos = np.empty(idx.shape, dtype=np.float32)  # (N, K), one column at a time: never (N, K, D) in memory
        for column in range(idx.shape[1]):
            cos[:, column] = np.einsum("nd,nd->n", self.vectors[np.clip(idx[:, column], 0, None)], docs)
        return np.where((idx >= 0) & ~self.missing[np.clip(idx, 0, None)], cos, np.float32(-1.0))

    def dense(self, embeddings: Any) -> np.ndarray:
        """(N, L) probabilities: for small label sets only (the flat head's blend)."""
        docs = self._docs(embeddings)
        cos = docs @ self.vectors.T  # (N, L)
        cos[:, self.missing] = -1.0
        return self.probabilities(cos)

    def topk_cosines(self, embeddings: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar labels per document: (N, k) indices and cosines, best first, in document chunks."""
        docs = self._docs(embeddings)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        k = min(int(k), len(self.labels))
        out_idx = np.empty((docs.shape[0], k), dtype=np.int64)
        out_cos = np.empty((docs.shape[0], k), dtype=np.float32)
        for start in range(0, docs.shape[0], self.config.chunk):
            block = docs[start : start + self.config.chunk] @ self.vectors.T  # (C, L)
            block[:, self.missing] = -1.0
            out_idx[start : start + len(block)], out_cos[start : start + len(block)] = topk_rows(block, k)
        return out_idx, out_cos

    def predict_topk(self, embeddings: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) label indices and calibrated probabilities, best first: the zero-shot suggestions."""
        idx, cos = self.topk_cosines(embeddings, k)
        return idx, self.probabilities(cos)

    # ----------------------------------------------------------------- calibration
    def calibrated(self, embeddings: Any, Y: Any) -> LabelPrior:
        """A copy whose (scale, offset) are fitted by logistic regression of the gold labels ``Y`` (N, L) on the
        cosines of the labelled documents ``embeddings`` (N, D): every pair up to ``max_dense_labels`` labels,
        else each document's positives and its ``candidates`` most similar labels. Fewer than
        ``min_calibration_documents`` documents, or no positive: unchanged."""
        from learner.decision import fit_platt

        docs = self._docs(embeddings)
        targets = sp.csr_matrix(Y)
        if targets.shape != (docs.shape[0], len(self.labels)):
            raise ValueError(f"Y must be ({docs.shape[0]}, {len(self.labels)}); got {targets.shape}")
        if docs.shape[0] < self.config.min_calibration_documents or targets.nnz == 0:
            return self
        if len(self.labels) <= self.config.max_dense_labels:
            present = ~self.missing
            cos = (docs @ self.vectors[present].T).ravel()  # (N * L',): labels with a vector
            hits = (targets.toarray()[:, present] > 0).ravel()
        else:
            idx, cos_top = self.topk_cosines(docs, self.config.candidates)
            truth = targets.tocsr()
            rows = np.repeat(np.arange(docs.shape[0]), np.diff(truth.indptr))
            pos_cos = np.einsum("nd,nd->n", self.vectors[truth.indices], docs[rows])
            in_truth = np.zeros(idx.shape, dtype=bool)
            for row in range(idx.shape[0]):
                in_truth[row] = np.isin(idx[row], truth.indices[truth.indptr[row] : truth.indptr[row + 1]])
            cos = np.concatenate([cos_top[~in_truth], pos_cos])
            hits = np.concatenate([np.zeros(int((~in_truth).sum()), dtype=bool), np.ones(len(pos_cos), dtype=bool)])
        z = self.scale * cos + self.offset
        a, b = fit_platt(_sigmoid(z), hits)  # p' = sigmoid(a * z + b)
        return LabelPrior(
            self.labels,
            self.vectors,
            self.config,
            scale=a * self.scale,
            offset=a * self.offset + b,
            calibrated_on=docs.shape[0],
        )

    def weights(self, positives: Any) -> np.ndarray:
        """(L,) the trained head's share of each label's probability: n_l / (n_l + pseudo_positives)."""
        n = np.asarray(positives, dtype=np.float32)
        if n.shape != (len(self.labels),):
            raise ValueError(f"positives must have shape ({len(self.labels)},); got {n.shape}")
        if self.config.pseudo_positives == 0:
            return np.ones_like(n)
        return n / (n + np.float32(self.config.pseudo_positives))

    def with_labels(self, labels: Sequence[str], label_embeddings: Any) -> LabelPrior:
        """This prior over ``labels`` (the old ones in any order plus new ones), embeddings given for all of them."""
        return LabelPrior(
            labels,
            label_embeddings,
            self.config,
            scale=self.scale,
            offset=self.offset,
            calibrated_on=self.calibrated_on,
        )

    def subset(self, labels: Sequence[str]) -> LabelPrior:
        """This prior restricted to / reordered as ``labels`` (each must be one of its labels)."""
        position = {name: j for j, name in enumerate(self.labels)}
        missing = [name for name in labels if name not in position]
        if missing:
            raise ValueError(f"the prior has no embedding for {len(missing)} label(s), e.g. {missing[:3]}")
        rows = np.array([position[name] for name in labels], dtype=np.int64)
        return self.with_labels(labels, self.vectors[rows])

    # ----------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            **header(FORMAT, FORMAT_VERSION),
            "labels": self.labels,
            "config": self.config.to_dict(),
            "scale": self.scale,
            "offset": self.offset,
            "calibrated_on": self.calibrated_on,
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Writes ``prior.json`` and ``vectors.npy`` into a folder, atomically (temp folder + rename)."""

        def write(tmp: Path) -> None:
            np.save(tmp / "vectors.npy", self.vectors, allow_pickle=False)
            write_json(tmp / "prior.json", self.to_dict(), indent=1)

        return write_folder(directory, write)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> LabelPrior:
        folder = Path(directory)
        try:
            payload = read_header(folder / "prior.json", FORMAT, FORMAT_VERSION)
            vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"no readable label prior in {folder}: {exc}") from exc
        try:
            return cls(
                payload["labels"],
                vectors,
                PriorConfig.from_dict(payload["config"]),
                scale=float(payload["scale"]),
                offset=float(payload["offset"]),
                calibrated_on=int(payload.get("calibrated_on", 0)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"corrupt label prior in {folder}: {exc}") from exc
