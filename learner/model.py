"""The multi-label classification head trained on frozen sentence embeddings.

``MultiLabelModel.train(X, Y, labels, config)`` -> ``save(dir)`` -> ``MultiLabelModel.load(dir)`` ->
``predict_proba`` / ``predict_topk``; ``train_and_evaluate`` adds a held-out measurement.
torch is imported at the top of this module: import it lazily, where a model is trained or used.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import math
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

import learner
from learner import metrics
from learner.config import HeadConfig
from learner.device import resolve_device
from learner.losses import bce_loss, probabilities, zlpr_loss

__all__ = ["MultiLabelModel", "train_and_evaluate"]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "head.safetensors"
FORMAT = "learner.MultiLabelModel"
FORMAT_VERSION = 1
MIN_DOCUMENTS_FOR_VALIDATION = 10
# Up to this many (document, label) entries the targets live densely on the device during training;
# beyond it (many labels) each batch is densified from the sparse matrix.
DENSE_TARGETS_MAX = 1 << 25


class _Head(nn.Module):
    """Standardise the input with training statistics, then a linear layer or a one-hidden-layer MLP."""

    input_mean: torch.Tensor  # (D,)
    input_scale: torch.Tensor  # ()

    def __init__(self, input_dim: int, n_labels: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(input_dim))  # (D,)
        self.register_buffer("input_scale", torch.ones(()))  # ()
        if hidden_dim > 0:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(input_dim, hidden_dim),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden_dim, n_labels),
            )
        else:
            self.net = nn.Linear(input_dim, n_labels)

    def output_layer(self) -> nn.Linear:
        """The final linear layer (its bias holds the label priors at initialisation)."""
        layer = self.net[-1] if isinstance(self.net, nn.Sequential) else self.net
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"unexpected head layout: {type(layer).__name__}")
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, D) -> (B, L)
        return self.net((x - self.input_mean) / self.input_scale)


def _check_features(X: Any, name: str = "X") -> np.ndarray:
    array = np.asarray(X)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D); got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric; got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_targets(Y: Any, n_docs: int, n_labels: int) -> sp.csr_matrix:
    if sp.issparse(Y):
        csr = sp.csr_matrix(Y, dtype=np.float32)
    else:
        array = np.asarray(Y)
        if array.ndim != 2:
            raise ValueError(f"Y must be 2-D (N, L); got shape {array.shape}")
        if array.dtype.kind not in "biuf":
            raise ValueError(f"Y must be a 0/1 matrix; got dtype {array.dtype}")
        csr = sp.csr_matrix(array.astype(np.float32))
    if csr.shape[0] != n_docs:
        raise ValueError(f"X has {n_docs} rows but Y has {csr.shape[0]}")
    if csr.shape[1] != n_labels:
        raise ValueError(f"Y has {csr.shape[1]} columns but {n_labels} labels were given")
    csr.eliminate_zeros()
    if csr.data.size and not np.all(csr.data == 1.0):
        raise ValueError("Y must contain only 0 and 1 (NaN or other values found)")
    return csr


def _check_labels(labels: Sequence[str]) -> list[str]:
    if isinstance(labels, str):
        raise ValueError("labels must be a sequence of label names, not a single string")
    names = list(labels)
    if not names:
        raise ValueError("labels is empty: a model needs at least one label")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"every label must be a non-empty string; got {name!r}")
    if len(set(names)) != len(names):
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        raise ValueError(f"duplicate labels: {duplicates[:5]}")
    return names


def _prior_bias(targets: sp.csr_matrix, config: HeadConfig) -> torch.Tensor:
    """Initial output bias (L,): the score whose probability is each label's smoothed training frequency.

    Without it, 20 documents and 100 steps leave the bias near 0 and the head ranks rare labels as high
    as frequent ones. BCE with ``pos_weight`` w has its optimum shifted by log(w); ZLPR's probability is
    sigmoid(2s), so its score is half the log-odds.
    """
    n_docs = targets.shape[0]
    positives = np.asarray(targets.sum(axis=0), dtype=np.float64).ravel()  # (L,)
    prior = (positives + 0.5) / (n_docs + 1.0)  # (L,)
    log_odds = np.log(prior) - np.log1p(-prior)  # (L,)
    if config.loss == "zlpr":
        return torch.from_numpy(0.5 * log_odds).float()
    return torch.from_numpy(log_odds + np.log(config.pos_weight)).float()


def _versions() -> dict[str, str]:
    return {
        "learner": learner.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


class MultiLabelModel:
    """A trained head: maps (N, D) embeddings to (N, L) label probabilities.

    Attributes: ``labels`` (the label vocabulary, column order), ``config`` (``HeadConfig``),
    ``input_dim`` (D), ``encoder_fingerprint`` (the encoder the embeddings came from, or None),
    ``metrics`` (validation metrics from ``train_and_evaluate``; empty otherwise), ``train_info``
    (n_documents, n_labels, seconds, device, epochs, steps, final_loss), ``device`` and ``head``.
    """

    def __init__(
        self,
        *,
        labels: list[str],
        config: HeadConfig,
        input_dim: int,
        head: _Head,
        device: str,
        encoder_fingerprint: str | None = None,
        metrics: dict[str, float] | None = None,
        train_info: dict[str, Any] | None = None,
    ) -> None:
        self.labels = labels
        self.config = config
        self.input_dim = input_dim
        self.head = head
        self.device = device
        self.encoder_fingerprint = encoder_fingerprint
        self.metrics: dict[str, float] = dict(metrics or {})
        self.train_info: dict[str, Any] = dict(train_info or {})

    def __repr__(self) -> str:
        return (
            f"MultiLabelModel(labels={len(self.labels)}, input_dim={self.input_dim}, "
            f"loss={self.config.loss!r}, hidden_dim={self.config.hidden_dim}, device={self.device!r})"
        )

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        X: np.ndarray,
        Y: np.ndarray | sp.spmatrix | sp.sparray,
        labels: Sequence[str],
        config: HeadConfig | None = None,
        *,
        encoder_fingerprint: str | None = None,
        on_progress: Callable[[float], None] | None = None,
        progress: bool = False,
    ) -> MultiLabelModel:
        """Train a head on embeddings X (N, D) float and targets Y (N, L) 0/1 (dense or scipy sparse).

        A row of Y with no 1 is a document where no label applies (all negatives); labels without any
        positive are allowed. ``on_progress(fraction)`` is called after each epoch. Deterministic for a
        given ``config.seed`` on CPU. Raises ``ValueError`` on mismatched shapes, no documents, NaN or
        non-0/1 targets.
        """
        config = config or HeadConfig()
        names = _check_labels(labels)
        features = _check_features(X)
        n_docs, input_dim = features.shape
        if n_docs == 0:
            raise ValueError("X has no documents: a model needs at least one labelled document")
        if input_dim == 0:
            raise ValueError("X has 0 columns")
        targets = _check_targets(Y, n_docs, len(names))

        device = resolve_device(config.device)
        started = time.perf_counter()
        # One seeded stream for the initial weights, the batch order and the dropout masks; the caller's
        # global RNG state is restored afterwards.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            head = _Head(input_dim, len(names), config.hidden_dim, config.dropout)
            mean = features.mean(axis=0)  # (D,)
            scale = float(np.sqrt(((features - mean) ** 2).sum(axis=1).mean()))  # RMS distance to the mean
            with torch.no_grad():
                head.input_mean.copy_(torch.from_numpy(mean))
                head.input_scale.fill_(scale if scale > 1e-6 else 1.0)
                head.output_layer().bias.copy_(_prior_bias(targets, config))  # start from the label priors
            head.to(device)
            steps, final_loss = _fit(head, features, targets, config, device, on_progress, progress)
        seconds = time.perf_counter() - started
        head.eval()
        info = {
            "n_documents": n_docs,
            "n_labels": len(names),
            "n_positives": int(targets.nnz),
            "seconds": round(seconds, 3),
            "device": device,
            "epochs": config.epochs,
            "steps": steps,
            "final_loss": final_loss,
        }
        logger.info(
            "trained %s head on %d documents x %d labels in %.2fs (%s, final loss %.4f)",
            config.loss,
            n_docs,
            len(names),
            seconds,
            device,
            final_loss,
        )
        return cls(
            labels=names,
            config=config,
            input_dim=input_dim,
            head=head,
            device=device,
            encoder_fingerprint=encoder_fingerprint,
            train_info=info,
        )

    # ---------------------------------------------------------------- prediction

    def _check_input(self, X: Any, chunk_size: int) -> np.ndarray:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
        features = np.asarray(X)
        if features.ndim != 2 or features.shape[1] != self.input_dim:
            raise ValueError(f"X must have shape (N, {self.input_dim}); got {features.shape}")
        return features

    def _score_chunks(self, features: np.ndarray, chunk_size: int) -> Iterator[torch.Tensor]:
        """Yield the scores (C, L) of successive chunks of ``features`` (N, D)."""
        self.head.eval()
        with torch.inference_mode():
            for start in range(0, features.shape[0], chunk_size):
                chunk = _check_features(features[start : start + chunk_size])  # (C, D)
                yield self.head(torch.from_numpy(chunk).to(self.device))  # (C, L)

    def predict_proba(self, X: np.ndarray, *, chunk_size: int = 4096) -> np.ndarray:
        """Calibrated probabilities (N, L) float32 in [0, 1] for embeddings X (N, D)."""
        features = self._check_input(X, chunk_size)
        out = np.empty((features.shape[0], self.n_labels), dtype=np.float32)  # (N, L)
        row = 0
        for scores in self._score_chunks(features, chunk_size):
            probs = probabilities(scores, self.config.loss)  # (C, L)
            out[row : row + probs.shape[0]] = probs.float().cpu().numpy()
            row += probs.shape[0]
        return out

    def predict(self, X: np.ndarray, *, threshold: float | None = None, chunk_size: int = 4096) -> np.ndarray:
        """Decisions (N, L) bool: probability >= ``threshold`` (default ``config.threshold``)."""
        cut = self.config.threshold if threshold is None else threshold
        if not 0.0 < cut < 1.0:
            raise ValueError(f"threshold must be in (0, 1); got {cut}")
        return self.predict_proba(X, chunk_size=chunk_size) >= cut

    def predict_topk(self, X: np.ndarray, k: int, *, chunk_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """The k most probable labels per document, best first.

        Returns (indices (N, k) int64 label indices, probabilities (N, k) float32); k is clipped to the
        number of labels. Works chunk by chunk: at most ``chunk_size`` x L scores exist at once.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        features = self._check_input(X, chunk_size)
        k = min(int(k), self.n_labels)
        indices: list[np.ndarray] = []
        values: list[np.ndarray] = []
        for scores in self._score_chunks(features, chunk_size):
            top_scores, top_idx = torch.topk(scores.float(), k, dim=1)  # (C, k), (C, k)
            indices.append(top_idx.cpu().numpy().astype(np.int64))
            values.append(probabilities(top_scores, self.config.loss).cpu().numpy().astype(np.float32))
        if not indices:
            return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
        return np.concatenate(indices), np.concatenate(values)

    # -------------------------------------------------------------- persistence

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``head.safetensors`` to ``directory``, atomically.

        The files are written to a temporary folder next to the target, which is then renamed into
        place (an existing model folder is replaced), so a crash never leaves a half-written model.
        Returns the folder.
        """
        target = Path(directory)
        if target.exists() and not target.is_dir():
            raise ValueError(f"cannot save the model to {target}: it is a file")
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "labels": self.labels,
            "input_dim": self.input_dim,
            "head_config": self.config.to_dict(),
            "encoder_fingerprint": self.encoder_fingerprint,
            "metrics": self.metrics,
            "train_info": self.train_info,
            "versions": _versions(),
            "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.head.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
            with open(tmp / CONFIG_FILE, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            _publish(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("saved model to %s", target)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str], device: str = "auto") -> MultiLabelModel:
        """Restore a model written by ``save`` onto ``device`` ("auto" | "cpu" | "cuda").

        Raises ``ValueError`` naming the folder when it is missing, incomplete or corrupt.
        """
        folder = Path(directory)
        config_path = folder / CONFIG_FILE
        weights_path = folder / WEIGHTS_FILE
        if not config_path.is_file() or not weights_path.is_file():
            raise ValueError(f"no saved model in {folder}: {CONFIG_FILE} and {WEIGHTS_FILE} are required")
        try:
            payload = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"corrupt model config {config_path}: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{config_path} is not a {FORMAT} config")
        if payload.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{config_path}: unsupported format_version {payload.get('format_version')!r}")
        try:
            config = HeadConfig.from_dict(payload["head_config"])
            labels = _check_labels(payload["labels"])
            input_dim = int(payload["input_dim"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"corrupt model config {config_path}: {exc}") from exc
        resolved = resolve_device(device)
        head = _Head(input_dim, len(labels), config.hidden_dim, config.dropout)
        try:
            state = load_file(str(weights_path), device="cpu")
            head.load_state_dict(state, strict=True)
        except (OSError, RuntimeError, SafetensorError) as exc:
            raise ValueError(f"corrupt model weights {weights_path}: {exc}") from exc
        head.to(resolved)
        head.eval()
        return cls(
            labels=labels,
            config=config,
            input_dim=input_dim,
            head=head,
            device=resolved,
            encoder_fingerprint=payload.get("encoder_fingerprint"),
            metrics=payload.get("metrics") or {},
            train_info=payload.get("train_info") or {},
        )


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished folder ``tmp`` to ``target``, replacing an existing model folder."""
    try:
        os.replace(tmp, target)  # works when target is absent or an empty folder
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / "model")
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _fit(
    head: _Head,
    features: np.ndarray,
    targets: sp.csr_matrix,
    config: HeadConfig,
    device: str,
    on_progress: Callable[[float], None] | None,
    progress: bool,
) -> tuple[int, float]:
    """Mini-batch AdamW on (features (N, D), targets (N, L)); returns (steps, mean loss of the last epoch)."""
    n_docs = features.shape[0]
    n_batches = math.ceil(n_docs / min(config.batch_size, n_docs))
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    x_all = torch.from_numpy(features).to(device)  # (N, D)
    dense_targets = n_docs * targets.shape[1] <= DENSE_TARGETS_MAX
    y_all = torch.from_numpy(targets.toarray()).to(device) if dense_targets else None  # (N, L)
    head.train()
    steps = 0
    epoch_loss = float("nan")
    with tqdm(total=config.epochs, disable=not progress, desc=f"train {config.loss}", unit="epoch") as bar:
        for epoch in range(config.epochs):
            order = torch.randperm(n_docs)  # (N,)
            total = torch.zeros((), device=device)  # summed on the device: no sync per step
            for batch in torch.tensor_split(order, n_batches):
                xb = x_all[batch.to(device)]  # (B, D)
                if y_all is not None:
                    yb = y_all[batch.to(device)]  # (B, L)
                else:
                    yb = torch.from_numpy(targets[batch.numpy()].toarray()).to(device)  # (B, L)
                scores = head(xb)  # (B, L)
                if config.loss == "zlpr":
                    loss = zlpr_loss(scores, yb)
                else:
                    loss = bce_loss(scores, yb, pos_weight=config.pos_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                total += loss.detach() * len(batch)
            epoch_loss = float(total) / n_docs
            bar.update(1)
            bar.set_postfix(loss=f"{epoch_loss:.4f}")
            if on_progress is not None:
                on_progress((epoch + 1) / config.epochs)
    return steps, epoch_loss


def _split(n_docs: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) index split; the validation part gets at least one document."""
    order = np.random.default_rng(seed).permutation(n_docs)
    n_val = min(n_docs - 1, max(1, round(fraction * n_docs)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def train_and_evaluate(
    X: np.ndarray,
    Y: np.ndarray | sp.spmatrix | sp.sparray,
    labels: Sequence[str],
    config: HeadConfig | None = None,
    *,
    encoder_fingerprint: str | None = None,
    on_progress: Callable[[float], None] | None = None,
    progress: bool = False,
) -> MultiLabelModel:
    """Measure on a held-out split, then train the final model on everything.

    With at least 10 documents, ``config.val_fraction`` of them (seeded by ``config.seed``) are held
    out; a model trained on the rest is scored on them (micro_f1 and macro_f1 at ``config.threshold``,
    p_at_1, p_at_3, n_train, n_val; macro-F1 over labels present in the held-out part) and the final
    model, trained on all documents, carries those numbers in ``model.metrics``. With fewer documents it
    trains on all and leaves ``metrics`` empty. ``on_progress(fraction)`` covers both fits.
    """
    config = config or HeadConfig()
    features = _check_features(X)
    n_docs = features.shape[0]
    targets = _check_targets(Y, n_docs, len(_check_labels(labels)))
    if n_docs < MIN_DOCUMENTS_FOR_VALIDATION:
        return MultiLabelModel.train(
            features,
            targets,
            labels,
            config,
            encoder_fingerprint=encoder_fingerprint,
            on_progress=on_progress,
            progress=progress,
        )

    train_idx, val_idx = _split(n_docs, config.val_fraction, config.seed)
    first_share = len(train_idx) / (len(train_idx) + n_docs)

    def first(fraction: float) -> None:
        if on_progress is not None:
            on_progress(first_share * fraction)

    def second(fraction: float) -> None:
        if on_progress is not None:
            on_progress(first_share + (1.0 - first_share) * fraction)

    probe = MultiLabelModel.train(
        features[train_idx], targets[train_idx], labels, config, on_progress=first, progress=progress
    )
    y_val = targets[val_idx]
    x_val = features[val_idx]
    decisions = probe.predict(x_val)
    top, _ = probe.predict_topk(x_val, 3)
    scores = {
        "micro_f1": metrics.micro_f1(y_val, decisions),
        "macro_f1": metrics.macro_f1(y_val, decisions),
        "p_at_1": metrics.precision_at_k(y_val, top, 1),
        "p_at_3": metrics.precision_at_k(y_val, top, min(3, top.shape[1])),
        "n_train": float(len(train_idx)),
        "n_val": float(len(val_idx)),
    }
    model = MultiLabelModel.train(
        features,
        targets,
        labels,
        config,
        encoder_fingerprint=encoder_fingerprint,
        on_progress=second,
        progress=progress,
    )
    model.metrics = scores
    logger.info("validation on %d documents: %s", len(val_idx), scores)
    return model
