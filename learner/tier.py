"""What the fast and the full tier share: their inputs, the checks of labels and targets, the held-out split, the
label bookkeeping of an incremental update, the tuning of the decision rule and the self-describing model folder.

``learner.fast`` (features + a linear head or a label tree, on a CPU) and ``learner.full`` (a fine-tuned encoder)
differ in how they score; everything here is the same for both. numpy and scipy only: importing it is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from learner.artifacts import header, read_header
from learner.decision import DecisionRule, tune_decision

__all__ = [
    "Inputs",
    "label_names",
    "model_header",
    "old_label_columns",
    "prior_logits",
    "read_model_header",
    "split_rows",
    "target_matrix",
    "tuned_decision",
]


@dataclass(frozen=True, eq=False)
class Inputs:
    """What a tier reads about N documents: their texts (for TF-IDF or the encoder) and/or embeddings (N, D)."""

    texts: Sequence[str] | None = None
    embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.texts is None and self.embeddings is None:
            raise ValueError("Inputs needs texts, embeddings or both")
        if self.texts is not None:
            if isinstance(self.texts, str):
                raise ValueError("texts must be a sequence of strings, not one string")
            if not all(isinstance(text, str) for text in self.texts):
                raise ValueError("every text must be a string")
        if self.embeddings is not None:
            array = np.asarray(self.embeddings)
            if array.ndim != 2 or array.dtype.kind not in "fiu":
                raise ValueError(f"embeddings must be a 2-D numeric array (N, D); got shape {array.shape}")
            if not np.isfinite(array).all():
                raise ValueError("embeddings contain NaN or infinite values")
            object.__setattr__(self, "embeddings", np.ascontiguousarray(array, dtype=np.float32))
        if self.texts is not None and self.embeddings is not None and len(self.texts) != len(self.embeddings):
            raise ValueError(f"{len(self.texts)} texts but {len(self.embeddings)} embedding rows")

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else len(self.embeddings)  # type: ignore[arg-type]

    def take(self, rows: np.ndarray) -> Inputs:
        texts = [self.texts[int(i)] for i in rows] if self.texts is not None else None
        embeddings = self.embeddings[rows] if self.embeddings is not None else None
        return Inputs(texts=texts, embeddings=embeddings)


def target_matrix(Y: Any, n_docs: int, n_labels: int) -> sp.csr_matrix:
    """``Y`` (n_docs, n_labels) 0/1, dense or sparse, as a float32 CSR matrix; ``ValueError`` on another shape or
    value."""
    csr = sp.csr_matrix(Y, dtype=np.float32)
    if csr.shape != (n_docs, n_labels):
        raise ValueError(f"Y must have shape ({n_docs}, {n_labels}); got {csr.shape}")
    csr.eliminate_zeros()
    if csr.data.size and not np.all(csr.data == 1.0):
        raise ValueError("Y must contain only 0 and 1")
    return csr


def label_names(labels: Sequence[str]) -> list[str]:
    """The label vocabulary as a list; ``ValueError`` if it is empty, has an empty name or a duplicate."""
    names = list(labels)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ValueError("labels must be a non-empty list of non-empty strings")
    if len(set(names)) != len(names):
        raise ValueError("labels contain duplicates")
    return names


def old_label_columns(old: Sequence[str], labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The labels of an update and, (len(old),), the column of each of the model's `old` labels among them.

    ``ValueError`` if `labels` is not a label vocabulary or drops a label of the model (it may add new ones)."""
    names = label_names(labels)
    position = {name: j for j, name in enumerate(names)}
    missing = [name for name in old if name not in position]
    if missing:
        raise ValueError(f"update labels drop {len(missing)} label(s) of the model, e.g. {missing[:3]}")
    return names, np.array([position[name] for name in old], dtype=np.int64)


def prior_logits(targets: sp.csr_matrix, loss: str) -> np.ndarray:
    """(n,) each column's prior log-odds (smoothed), halved for ZLPR whose probability is sigmoid(2s)."""
    prior = (np.asarray(targets.sum(axis=0)).ravel() + 0.5) / (targets.shape[0] + 1.0)
    logit = np.log(prior) - np.log1p(-prior)
    return (logit / 2.0 if loss == "zlpr" else logit).astype(np.float32)


def split_rows(n_docs: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (fit rows, held-out rows), each sorted; about `fraction` held out, at least one row on each side."""
    order = np.random.default_rng(seed).permutation(n_docs)
    n_val = min(n_docs - 1, max(1, round(fraction * n_docs)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def tuned_decision(
    idx: np.ndarray, raw: np.ndarray, targets: sp.csr_matrix, config: Any
) -> tuple[tuple[float, float], dict[str, DecisionRule], dict[str, float]]:
    """Platt calibration, decision rules and validation metrics from shortlists (idx, raw) (N, k) with the
    tier config's ``calibrate`` and ``per_label_min_positives``."""
    return tune_decision(
        idx, raw, targets, calibrate=config.calibrate, per_label_min_positives=config.per_label_min_positives
    )


def model_header(model: Any, fmt: str, version: int, *libraries: str) -> dict[str, Any]:
    """The part of a tier's JSON file that both tiers write: the header, labels, config, decision rule, metrics
    and training information."""
    return {
        **header(fmt, version, *libraries),
        "labels": model.labels,
        "config": model.config.to_dict(),
        "decision": model.decision,
        "metrics": model.metrics,
        "train_info": model.train_info,
    }


def read_model_header(
    folder: Path, file: str, fmt: str, version: int, config_cls: Any, what: str
) -> tuple[dict[str, Any], Any, list[str], tuple[float, float], dict[str, DecisionRule]]:
    """Read a tier's JSON file ``folder / file`` written with ``model_header``: (payload, config, labels, platt,
    rules). ``ValueError`` naming `what` (e.g. "fast-tier") when it is missing, of another format or corrupt."""
    path = folder / file
    try:
        payload = read_header(path, fmt, version)
    except ValueError as exc:
        raise ValueError(f"no readable {what} model in {folder}: {exc}") from exc
    try:
        config = config_cls.from_dict(payload["config"])
        labels = label_names(payload["labels"])
        decision = payload["decision"]
        rules = {name: DecisionRule.from_dict(rule) for name, rule in decision["rules"].items()}
        platt = (float(decision["platt"]["a"]), float(decision["platt"]["b"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"corrupt {what} config {path}: {exc}") from exc
    return payload, config, labels, platt, rules
