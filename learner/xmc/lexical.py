"""A lexical scorer: a label scores when its name occurs in the text, by how reliable that has been.

``LabelNameMatcher.fit(label_names, texts, Y)`` turns every label name into a phrase (lower-cased word
tokens of at least 2 characters, as in ``learner.features``, without a trailing qualifier in
parentheses: "C (Programmiersprache)" has none and never matches, "Industrie 4.0" is "industrie";
with ``stem``, names and texts lose a German/English inflection ending first: "Pilze" and "Pilzen"
are both "pilz"),
finds the phrases in the training texts, and estimates per label how often the name occurring in a
document (in its title, or only in the rest) went with the label: (hits + s * p0) / (matches + s), p0
the precision of all name matches of that kind, s = ``prior_strength``. A label whose name never
occurred in training, including a label with no training document at all, gets p0: this is what lets
the scorer suggest zero-shot labels. ``score(texts)`` gives those precisions (N, L), sparse.

``blend_topk`` adds such a sparse score matrix, weighted, to a model's top-k (e.g. ``XRLinear``).
``BLEND_WEIGHT`` is the weight chosen on tibkat-gnd dev (either half of dev gives the same choice):
XR-Linear's top-20 blended with it gains 3.3 points of P@1 and 1.9 of P@5 there (bench/bench_xmc.py).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from learner.artifacts import header, read_arrays_folder, write_arrays_folder
from learner.config import Params, check_float, check_int, check_positive_int
from learner.features import TfidfConfig, TfidfFeaturizer, check_texts, stem_word
from learner.xmc.model import check_targets

__all__ = ["BLEND_WEIGHT", "LabelNameMatcher", "LexicalConfig", "blend_topk", "label_phrase", "stem_word"]

logger = logging.getLogger(__name__)

FORMAT = "learner.LabelNameMatcher"
FORMAT_VERSION = 1
CONFIG_FILE = "matcher.json"
ARRAYS_FILE = "precision.npz"
BLEND_WEIGHT = 0.1
_QUALIFIER = re.compile(r"\s*\([^()]*\)\s*$")
_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True)
class LexicalConfig(Params):
    """``max_words``: longer names are not matched; ``prior_strength``: pseudo-count of the precision
    prior; ``title_separator``: the title is the text before its first occurrence ("" = no title);
    ``stem``: strip one inflection ending from names and texts (measured on tibkat-gnd dev, blended
    with XR-Linear: P@1 0.518 -> 0.525, P@5 0.235 -> 0.238)."""

    max_words: int = 6
    prior_strength: float = 2.0
    title_separator: str = "\n\n"
    stem: bool = True

    def __post_init__(self) -> None:
        check_int("max_words", self.max_words, 1)
        if self.max_words > 6:
            raise ValueError(f"max_words must be <= 6; got {self.max_words}")
        check_float(self, "prior_strength", 0.0, float("inf"), low_open=True, high_open=True)
        if not isinstance(self.title_separator, str):
            raise ValueError(f"title_separator must be a string; got {self.title_separator!r}")
        if not isinstance(self.stem, bool):
            raise ValueError(f"stem must be a bool; got {self.stem!r}")


def label_phrase(name: str, max_words: int = 6, stem: bool = False) -> str | None:
    """The phrase a label name is matched by (see the module docstring), or None if it has none."""
    words = [w for w in _TOKEN.findall(_QUALIFIER.sub("", name).lower()) if len(w) >= 2]
    if stem:
        words = [stem_word(w) for w in words]
    if not words or len(words) > max_words:
        return None
    return " ".join(words)


class LabelNameMatcher:
    """Per label: its phrase (or none) and the precision of a match in the title / in the rest."""

    def __init__(
        self, config: LexicalConfig, label_names: list[str], title_precision: np.ndarray, body_precision: np.ndarray
    ) -> None:
        n = len(label_names)
        if title_precision.shape != (n,) or body_precision.shape != (n,):
            raise ValueError(f"precision arrays must have shape ({n},)")
        self.config = config
        self.label_names = label_names
        self.title_precision = np.asarray(title_precision, dtype=np.float32)  # (L,)
        self.body_precision = np.asarray(body_precision, dtype=np.float32)  # (L,)
        phrases = [label_phrase(name, config.max_words, config.stem) for name in label_names]
        vocabulary = sorted({p for p in phrases if p is not None})
        column = {phrase: j for j, phrase in enumerate(vocabulary)}
        pairs = [(column[p], label) for label, p in enumerate(phrases) if p is not None]
        rows = np.array([c for c, _ in pairs], dtype=np.int64)
        cols = np.array([label for _, label in pairs], dtype=np.int64)
        self._phrase_labels = sp.csr_matrix(
            (np.ones(len(pairs), dtype=np.float32), (rows, cols)), shape=(len(vocabulary), n)
        )  # (P, L)
        n_words = max((p.count(" ") + 1 for p in vocabulary), default=1)
        self._phrases = TfidfFeaturizer(
            TfidfConfig(ngram_max=n_words, min_df=1),
            vocabulary,
            np.ones(len(vocabulary), dtype=np.float32),
            [],
            np.zeros(0, dtype=np.float32),
            0,
        )
        self.n_matchable = len(pairs)
        # p0 of a title / body match (what a label whose name never matched gets); set by fit, saved
        self.priors = (
            (float(np.median(self.title_precision)), float(np.median(self.body_precision))) if n else (0.0, 0.0)
        )

    def __repr__(self) -> str:
        return f"LabelNameMatcher(labels={self.n_labels}, matchable={self.n_matchable})"

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    def matches(self, texts: Sequence[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """0/1 matrices (N, L): the label's name occurs in the title; it occurs in the text but not the title."""
        items = check_texts(texts)
        word_map = stem_word if self.config.stem else None
        # one tokenisation for both: the title's tokens are (almost always) a prefix of the text's
        title, anywhere = self._phrases.word_counts_with_heads(items, self.config.title_separator, word_map=word_map)
        anywhere = (anywhere @ self._phrase_labels).tocsr()  # (N, L)
        title = (title @ self._phrase_labels).tocsr()  # (N, L)
        anywhere.data[:] = 1.0
        title.data[:] = 1.0
        body = anywhere - anywhere.multiply(title)
        body.eliminate_zeros()
        return title.tocsr(), body.tocsr()

    @classmethod
    def fit(
        cls, label_names: Sequence[str], texts: Sequence[str], Y: Any, config: LexicalConfig | None = None
    ) -> LabelNameMatcher:
        """Estimate the precisions on training ``texts`` with 0/1 targets Y (N, L) (columns = ``label_names``).

        Raises ``ValueError`` on mismatched shapes or no texts.
        """
        config = config or LexicalConfig()
        names = [str(name) for name in label_names]
        items = check_texts(texts)
        if not items:
            raise ValueError("texts is empty: the precisions need training documents")
        targets = check_targets(Y, len(items))
        if targets.shape[1] != len(names):
            raise ValueError(f"Y has {targets.shape[1]} columns but {len(names)} label names were given")
        unfitted = np.zeros(len(names), dtype=np.float32)
        matcher = cls(config, names, unfitted, unfitted)
        title, body = matcher.matches(items)
        precisions, priors = [], []
        for found in (title, body):
            n_found = np.asarray(found.sum(axis=0)).ravel()  # (L,)
            n_hits = np.asarray(found.multiply(targets).sum(axis=0)).ravel()  # (L,)
            overall = float(n_hits.sum() / n_found.sum()) if n_found.sum() > 0 else 0.0
            priors.append(overall)
            precisions.append((n_hits + config.prior_strength * overall) / (n_found + config.prior_strength))
        matcher.title_precision = precisions[0].astype(np.float32)
        matcher.body_precision = precisions[1].astype(np.float32)
        matcher.priors = (float(priors[0]), float(priors[1]))
        logger.info(
            "label-name matcher: %d of %d labels matchable; %.3f / %.3f matches per document (title / rest)",
            matcher.n_matchable,
            len(names),
            title.nnz / len(items),
            body.nnz / len(items),
        )
        return matcher

    def with_labels(self, label_names: Sequence[str], texts: Sequence[str], Y: Any) -> LabelNameMatcher:
        """A matcher that also knows ``label_names`` (new labels), their precisions estimated on ``texts`` with
        0/1 targets Y (N, len(label_names)) around this matcher's p0: (hits + s * p0) / (matches + s)."""
        added = [str(name) for name in label_names]
        items = check_texts(texts)
        targets = check_targets(Y, len(items))
        if targets.shape[1] != len(added):
            raise ValueError(f"Y has {targets.shape[1]} columns but {len(added)} label names were given")
        s = self.config.prior_strength
        extra = []
        probe = LabelNameMatcher(self.config, added, np.zeros(len(added)), np.zeros(len(added)))
        for found, p0 in zip(probe.matches(items), self.priors, strict=True):
            n_found = np.asarray(found.sum(axis=0)).ravel()  # (L_added,)
            n_hits = np.asarray(found.multiply(targets).sum(axis=0)).ravel()
            extra.append((n_hits + s * p0) / (n_found + s))
        matcher = LabelNameMatcher(
            self.config,
            self.label_names + added,
            np.concatenate([self.title_precision, extra[0]]),
            np.concatenate([self.body_precision, extra[1]]),
        )
        matcher.priors = self.priors
        return matcher

    def score(self, texts: Sequence[str]) -> sp.csr_matrix:
        """(N, L) float32 CSR: the precision of each label whose name occurs in the text, else 0."""
        title, body = self.matches(texts)
        scores = title.multiply(self.title_precision[None, :]) + body.multiply(self.body_precision[None, :])
        return sp.csr_matrix(scores, dtype=np.float32)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """``matcher.json`` (config, label names) and ``precision.npz``, atomically; no pickle."""
        payload = {
            **header(FORMAT, FORMAT_VERSION),
            "config": self.config.to_dict(),
            "label_names": self.label_names,
        }
        arrays: dict[str, np.ndarray] = {
            "title": self.title_precision,
            "body": self.body_precision,
            "priors": np.asarray(self.priors, dtype=np.float64),
        }
        return write_arrays_folder(directory, CONFIG_FILE, payload, ARRAYS_FILE, arrays)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> LabelNameMatcher:
        what = "label-name matcher"
        payload, arrays = read_arrays_folder(directory, CONFIG_FILE, ARRAYS_FILE, FORMAT, FORMAT_VERSION, what)
        try:
            title, body = arrays["title"], arrays["body"]
            matcher = cls(LexicalConfig.from_dict(payload["config"]), list(payload["label_names"]), title, body)
            priors = arrays.get("priors")
            if priors is not None:  # folders saved before priors were stored keep the medians
                matcher.priors = (float(priors[0]), float(priors[1]))
            return matcher
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"corrupt {what} in {directory}: {exc}") from exc


def blend_topk(
    indices: np.ndarray, scores: np.ndarray, extra: Any, weight: float, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Add ``weight * extra`` to a model's top-k and re-rank: (indices (N, k), scores (N, k) in [0, 1]).

    ``indices``/``scores`` (N, K) come from ``predict_topk`` (scores in [0, 1]); ``extra`` (N, L) holds
    scores in [0, 1] (e.g. ``LabelNameMatcher.score``), also for labels outside the model's top-K.
    A label's blended score is (model score or 0 + weight * extra) / (1 + weight). Rows with fewer
    than k candidates are padded with the model's remaining order (there are always K >= k).
    """
    indices = np.asarray(indices)
    scores = np.asarray(scores, dtype=np.float32)
    if indices.shape != scores.shape or indices.ndim != 2:
        raise ValueError(f"indices and scores must have the same (N, K) shape; got {indices.shape}, {scores.shape}")
    k = check_positive_int(k)
    if k > indices.shape[1]:
        raise ValueError(f"k = {k} exceeds the {indices.shape[1]} labels given per document")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight < float("inf"):
        raise ValueError(f"weight must be a number >= 0; got {weight!r}")
    n = indices.shape[0]
    extra = sp.csr_matrix(extra, dtype=np.float32)
    if extra.shape[0] != n:
        raise ValueError(f"extra has {extra.shape[0]} rows but there are {n} documents")
    if indices.size and (indices.min() < 0 or indices.max() >= extra.shape[1]):
        raise ValueError(f"indices must be label indices in [0, {extra.shape[1]})")
    rows = np.repeat(np.arange(n), indices.shape[1])
    model = sp.csr_matrix((scores.ravel(), (rows, indices.ravel())), shape=extra.shape)
    total = (model + float(weight) * extra).tocsr()  # (N, L), nonzero on the union of candidates
    total.sort_indices()
    # every model candidate must stay a candidate even with score 0: add them with a tiny epsilon
    present = sp.csr_matrix((np.full(rows.shape, 1e-12, np.float32), (rows, indices.ravel())), shape=extra.shape)
    total = (total + present).tocsr()
    from learner.xmc.ensemble import row_topk

    best, values = row_topk(total, k)
    return best, np.clip(values / (1.0 + float(weight)), 0.0, 1.0).astype(np.float32)
