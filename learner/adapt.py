"""Few-shot adaptation of the sentence encoder to a project's labelled documents (SetFit-style, multi-label).

SetFit (Tunstall et al. 2022) fine-tunes a sentence encoder contrastively on pairs of labelled examples before a
head is trained on its embeddings. The multi-label variant here::

    stats = adapt_encoder(source_folder, texts, Y, out_folder, AdaptConfig())
    encoder = Encoder.load(EncoderConfig(path=out_folder))   # a new fingerprint: embed everything again
    model = FastTier.train(Inputs(texts, encoder.encode(texts)), Y, labels)

- Pairs (``make_pairs``, seeded): every document is the anchor of ``pairs_per_document`` pairs, half with
  documents that share a label with it ("positives"), half with documents whose label sets are disjoint from its
  own ("negatives"); two documents without labels are never paired, and a pair drawn from both sides is kept once.
- Target of a pair (``pair_target``): ``"share"`` (default), 1 when the two label sets share a label, or
  ``"jaccard"``, |A ∩ B| / |A ∪ B|. Negatives are 0 under both, so both use the same pairs. Measured with
  ``bench/bench_adapt.py`` on GoEmotions (200 training documents, 28 labels, all-MiniLM-L6-v2, default head,
  2,000 held-out training documents, mean gain over 3 seeds in micro-F1 / macro-F1 of the TF-IDF + embeddings
  head, then of an embeddings-only head): share +0.023 / +0.011, +0.030 / +0.028 and Jaccard +0.009 / +0.009,
  +0.023 / +0.017 at 8 pairs per document; share +0.024 / +0.017, +0.030 / +0.038 and Jaccard +0.019 / +0.014,
  +0.017 / +0.034 at 16. "share" won at both, and 16 pairs beat 8 (differences of 0.005-0.015 over 3 seeds: a
  hint more than a proof).
- Loss (``loss``): ``"cosine"`` (default), the mean squared error between the pair's cosine similarity and its
  target (SetFit's CosineSimilarityLoss), or ``"cosent"`` (CoSENT, scale 20: a ranking loss over the pairs of the
  batch). Embeddings are exactly those of ``learner.encoder``: the mean of the last hidden states over the
  attention mask, L2-normalised.
- Training: AdamW (no decay on biases and LayerNorm), linear warmup and decay, gradient clipping at 1, dropout as
  the model is configured, bf16 autocast on CUDA only (``bf16``), deterministic on CPU for a seed. A step that runs
  out of GPU memory is redone with its pairs split in halves whose losses are weighted by their share (exact for
  the cosine loss; CoSENT then ranks within each half).
- Output: a complete Hugging Face model folder (``config.json``, ``model.safetensors``, the source's tokenizer and
  sentence-transformers files copied unchanged) plus ``adaptation.json``, published atomically (temporary folder
  and rename). ``learner.encoder.Encoder.load(EncoderConfig(path=out_folder))`` loads it (the weights' sha256 is
  hashed into a fingerprint that differs from the source's).

Why no sentence-transformers: its training path (``SentenceTransformerTrainer``, used by ``fit`` too) needs the
``train`` extra (accelerate, datasets and pyarrow on top of the pinned stack) for what is a 60-line loop here, and
the loop has to honour this library's device, out-of-memory, progress and atomic-save conventions anyway.

torch and transformers are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from learner.artifacts import header, library_versions, write_folder, write_json
from learner.config import EncoderConfig, Params, check_device, check_float, check_int
from learner.device import resolve_device, retry_on_oom
from learner.encoder import bundled_model_path, encoder_fingerprint

__all__ = [
    "ADAPTATION_FILE",
    "LOSSES",
    "PAIR_TARGETS",
    "AdaptConfig",
    "adapt_encoder",
    "check_adaptation",
    "check_split",
    "make_pairs",
]

logger = logging.getLogger(__name__)

PAIR_TARGETS: tuple[str, ...] = ("jaccard", "share")
LOSSES: tuple[str, ...] = ("cosine", "cosent")
ADAPTATION_FILE = "adaptation.json"
FORMAT = "learner.adapt"
FORMAT_VERSION = 1
COSENT_SCALE = 20.0
MAX_GRAD_NORM = 1.0
# Files of the source folder that describe weights this module replaces or that would no longer be true.
_NOT_COPIED = {"config.json", "README.md", ".gitattributes", ADAPTATION_FILE}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".ckpt", ".index")
_LOSS_WINDOW = 10  # loss_first / loss_last: mean over the first / last tenth of the steps


# --- config ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdaptConfig(Params):
    """Settings of ``adapt_encoder``.

    ``pairs_per_document``: pairs drawn with each document as anchor (half positives, half negatives).
    ``batch_size``: pairs per optimizer step. ``max_documents``: above this many documents a seeded random sample
    of them is used. ``pair_target``: "jaccard" or "share", ``loss``: "cosine" or "cosent" (module docstring).
    ``bf16``: bf16 autocast when training on CUDA (ignored on the CPU, which trains in fp32).
    Defaults: 1 epoch of 16 pairs per document (SetFit's default is 20 iterations, 40 pairs) in batches of 16 at
    lr 2e-5 with 10 % warmup, "share" targets, cosine loss (module docstring for the measurement). On 200
    GoEmotions documents that is about 2,700 pairs, 170 steps, 100-115 s of all-MiniLM-L6-v2 on a busy 2-core CPU
    with one torch thread (1,000 documents: 963 steps, 11 minutes); the cost grows linearly with the documents up
    to ``max_documents``, so beyond a few hundred documents this is work for a GPU worker.
    """

    pairs_per_document: int = 16
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_length: int = 128
    max_documents: int = 2000
    pair_target: str = "share"
    loss: str = "cosine"
    seed: int = 0
    device: str = "auto"
    bf16: bool = True

    def __post_init__(self) -> None:
        check_int("pairs_per_document", self.pairs_per_document, 2)
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 2)
        check_float(self, "learning_rate", 0.0, 1.0, low_open=True, high_open=False)
        check_float(self, "weight_decay", 0.0, 10.0, low_open=False, high_open=False)
        check_float(self, "warmup_fraction", 0.0, 1.0, low_open=False, high_open=True)
        check_int("max_length", self.max_length, 2)
        check_int("max_documents", self.max_documents, 2)
        if self.pair_target not in PAIR_TARGETS:
            raise ValueError(f"pair_target must be one of {', '.join(PAIR_TARGETS)}; got {self.pair_target!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        check_int("seed", self.seed, 0)
        check_device(self.device)
        if not isinstance(self.bf16, bool):
            raise ValueError(f"bf16 must be a bool; got {self.bf16!r}")


# --- pairs ----------------------------------------------------------------------------------------------------------
def _label_matrix(Y: Any, n_docs: int | None = None) -> sp.csr_matrix:
    """`Y` as a float32 CSR 0/1 matrix; with `n_docs`, it must have that many rows."""
    try:
        csr = sp.csr_matrix(Y, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Y must be a 2-D 0/1 matrix (N, L); {exc}") from exc
    if csr.ndim != 2:
        raise ValueError(f"Y must be a 2-D 0/1 matrix (N, L); got shape {csr.shape}")
    if n_docs is not None and csr.shape[0] != n_docs:
        raise ValueError(f"Y has {csr.shape[0]} rows but there are {n_docs} texts: one row per text")
    csr.eliminate_zeros()
    if csr.data.size and not np.all(csr.data == 1.0):
        raise ValueError("Y must contain only 0 and 1")
    return csr


def make_pairs(
    Y: Any, *, pairs_per_document: int = 16, pair_target: str = "share", seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training pairs over the N documents of the 0/1 label matrix `Y` (N, L) (scipy sparse or dense).

    Each document i is the anchor of up to ``pairs_per_document - pairs_per_document // 2`` positives (documents
    sharing a label with i) and ``pairs_per_document // 2`` negatives (documents with a label set disjoint from
    i's; two unlabelled documents are never paired), drawn without replacement with a seeded generator. An
    unordered pair drawn twice is kept once. Returns (first (P,) int64, second (P,) int64, target (P,) float32),
    target by `pair_target` ("jaccard": |A ∩ B| / |A ∪ B|; "share": 1.0 when they share a label; 0.0 for
    negatives). Memory O(N^2) in blocks of 1,024 anchors. Raises ``ValueError`` when there are fewer than 2
    documents, when no two documents share a label, or when no two documents have disjoint label sets.
    """
    if pair_target not in PAIR_TARGETS:
        raise ValueError(f"pair_target must be one of {', '.join(PAIR_TARGETS)}; got {pair_target!r}")
    check_int("pairs_per_document", pairs_per_document, 2)
    csr = _label_matrix(Y)
    n_docs = csr.shape[0]
    if n_docs < 2:
        raise ValueError(f"adaptation needs at least 2 labelled documents; got {n_docs}")
    sizes = np.asarray(csr.sum(axis=1)).ravel()  # (N,) labels per document
    n_pos = pairs_per_document - pairs_per_document // 2
    n_neg = pairs_per_document // 2
    rng = np.random.default_rng([seed, 1])
    seen: dict[tuple[int, int], float] = {}
    any_positive = any_negative = False
    transposed = csr.T.tocsc()
    for start in range(0, n_docs, 1024):
        stop = min(start + 1024, n_docs)
        inter = (csr[start:stop] @ transposed).toarray()  # (b, N) labels shared
        for row in range(stop - start):
            i = start + row
            shared = inter[row]
            union = sizes[i] + sizes - shared  # (N,)
            positives = np.flatnonzero(shared > 0)
            positives = positives[positives != i]
            negatives = np.flatnonzero((shared == 0) & (union > 0))
            negatives = negatives[negatives != i]
            any_positive |= positives.size > 0
            any_negative |= negatives.size > 0
            chosen = []
            if positives.size:
                chosen.append(rng.choice(positives, size=min(n_pos, positives.size), replace=False))
            if negatives.size:
                chosen.append(rng.choice(negatives, size=min(n_neg, negatives.size), replace=False))
            for j in np.concatenate(chosen) if chosen else ():
                key = (min(i, int(j)), max(i, int(j)))
                if key not in seen:
                    if pair_target == "jaccard":
                        seen[key] = float(shared[j] / union[j])
                    else:
                        seen[key] = float(shared[j] > 0)
    if not any_positive:
        raise ValueError(
            "no two documents share a label: contrastive adaptation needs pairs of documents with a common label"
        )
    if not any_negative:
        raise ValueError(
            "no two documents have disjoint label sets: contrastive adaptation needs pairs of documents without a "
            "common label (label more varied documents)"
        )
    keys = np.array(list(seen), dtype=np.int64).reshape(-1, 2)
    return keys[:, 0].copy(), keys[:, 1].copy(), np.fromiter(seen.values(), dtype=np.float32, count=len(seen))


# --- training -------------------------------------------------------------------------------------------------------
def _texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, not a single string")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] is a {type(text).__name__}, expected a string")
        if not text.strip():
            raise ValueError(f"texts[{i}] is empty or only whitespace")
    return out


def _pair_loss(first: Any, second: Any, target: Any, loss: str) -> Any:
    """Loss of P pairs of L2-normalised embeddings `first`, `second` (P, H) against `target` (P,)."""
    import torch

    cos = (first * second).sum(dim=1)  # (P,) cosine similarity: the vectors have unit length
    if loss == "cosine":
        return torch.nn.functional.mse_loss(cos, target)
    # CoSENT: log(1 + sum over pairs (p, q) with target_p > target_q of exp(scale * (cos_q - cos_p))).
    diff = COSENT_SCALE * (cos[None, :] - cos[:, None])  # (P, P): [p, q] = scale * (cos_q - cos_p)
    ranked = target[:, None] > target[None, :]  # (P, P)
    terms = diff[ranked]
    zero = torch.zeros(1, dtype=terms.dtype, device=terms.device)
    return torch.logsumexp(torch.cat([zero, terms]), dim=0)


def _copy_source_files(source: Path, target: Path) -> list[str]:
    """Copy the tokenizer and other small files of `source` (not its weights or config.json) into `target`."""
    copied = []
    for entry in sorted(source.iterdir()):
        if entry.name in _NOT_COPIED or entry.name.startswith(".") or entry.name.endswith(_WEIGHT_SUFFIXES):
            continue
        if entry.is_file():
            shutil.copy2(entry, target / entry.name)
            copied.append(entry.name)
        elif entry.is_dir() and entry.name[:1].isdigit() and "_" in entry.name:  # sentence-transformers modules
            shutil.copytree(entry, target / entry.name)
            copied.append(entry.name + "/")
    return copied


def adapt_encoder(
    source_folder: str | os.PathLike[str] | None,
    texts: Sequence[str],
    Y: Any,
    out_folder: str | os.PathLike[str],
    config: AdaptConfig | None = None,
    *,
    on_progress: Callable[[float], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Fine-tune the sentence encoder in `source_folder` on pairs of the labelled documents; save it to `out_folder`.

    `source_folder` is a local Hugging Face model folder (``None``: the bundled all-MiniLM-L6-v2, whose sha256 is
    checked); `texts` are the N documents and `Y` their (N, L) 0/1 labels (scipy sparse or dense). Above
    ``config.max_documents`` documents a seeded sample is used. The new folder replaces `out_folder` atomically
    and holds the model, the source's tokenizer files and ``adaptation.json``, whose content is returned:
    ``{"format", "format_version", "config", "n_documents", "n_documents_given", "n_pairs", "n_positive_pairs",
    "steps", "micro_batch_size", "seconds", "device", "bf16", "loss_first", "loss_last", "epoch_losses",
    "base_folder", "base_fingerprint", "copied_files", "versions", "created_at"}`` (losses: mean over the first /
    last tenth of the steps). ``on_progress(fraction)`` is called after every optimizer step; ``progress`` shows
    a tqdm bar.

    Raises ``ValueError`` on bad input (texts not strings or empty, `Y` not 0/1 or with a row count other than
    N, fewer than 2 documents, no pair of documents sharing a label, none with disjoint label sets), when the
    source folder cannot be loaded or `out_folder` is the source folder; ``learner.device.BatchOutOfMemoryError``
    when a single pair does not fit on the GPU.
    """
    config = config or AdaptConfig()
    if not isinstance(config, AdaptConfig):
        raise ValueError(f"config must be an AdaptConfig; got {type(config).__name__}")
    started = time.monotonic()
    docs = _texts(texts)
    if not docs:
        raise ValueError("no documents: adaptation needs at least 2 labelled documents")
    labels = _label_matrix(Y, len(docs))
    if len(docs) < 2:
        raise ValueError(f"adaptation needs at least 2 labelled documents; got {len(docs)}")

    encoder_config = EncoderConfig(path=None if source_folder is None else os.fspath(source_folder))
    base_fingerprint = encoder_fingerprint(encoder_config)  # checks the folder and its weights
    source = Path(bundled_model_path() if source_folder is None else os.fspath(source_folder)).expanduser()
    target = Path(out_folder).expanduser()
    if target.resolve() == source.resolve():
        raise ValueError(f"out_folder must differ from the source folder {source}")

    n_given = len(docs)
    if n_given > config.max_documents:
        rows = np.sort(np.random.default_rng([config.seed, 0]).choice(n_given, config.max_documents, replace=False))
        docs = [docs[int(i)] for i in rows]
        labels = labels[rows]
        logger.info("adapting on a sample of %d of %d documents", len(docs), n_given)
    first, second, pair_targets = make_pairs(
        labels, pairs_per_document=config.pairs_per_document, pair_target=config.pair_target, seed=config.seed
    )

    import torch
    from safetensors import SafetensorError
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    device = resolve_device(config.device)
    use_bf16 = config.bf16 and device == "cuda"
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        model = AutoModel.from_pretrained(str(source), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise ValueError(f"cannot load the encoder from {source}: {exc}") from exc
    model.to(device)
    max_length = config.max_length
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions < max_length:
        logger.warning("max_length %d is above the model's %d positions; using %d", max_length, positions, positions)
        max_length = positions

    n_pairs = len(pair_targets)
    steps_per_epoch = math.ceil(n_pairs / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_fraction * total_steps), total_steps)
    targets_t = torch.from_numpy(pair_targets)  # (P,)
    logger.info(
        "adapting %s on %d documents, %d pairs (%d positive), %d steps on %s",
        source,
        len(docs),
        n_pairs,
        int((pair_targets > 0).sum()),
        total_steps,
        device,
    )

    def embed(rows: np.ndarray) -> Any:
        """Mean-pooled, L2-normalised embeddings (U, H) of the documents `rows`, as in ``learner.encoder``."""
        batch = tokenizer(
            [docs[int(i)] for i in rows], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        batch = {key: value.to(device) for key, value in batch.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            hidden = model(**batch).last_hidden_state  # (U, T, H)
        mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)  # (U, T, 1)
        pooled = (hidden.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (U, H)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)  # (U, H)

    def step_backward(micro: int, pairs: np.ndarray) -> Any:
        """Backward passes over the pairs `pairs` (B,) in pieces of at most `micro` pairs, each loss weighted by
        its share; returns the summed (weighted) loss. Clears the gradients before raising, so it can be redone."""
        total = torch.zeros((), device=device)
        try:
            for start in range(0, len(pairs), micro):
                piece = pairs[start : start + micro]  # (b,)
                a, b = first[piece], second[piece]
                rows, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
                vectors = embed(rows)  # (U, H)
                index = torch.from_numpy(inverse).to(device)  # (2b,)
                loss = _pair_loss(
                    vectors[index[: len(piece)]], vectors[index[len(piece) :]], targets_t[piece].to(device), config.loss
                )
                share = len(piece) / len(pairs)
                (loss * share).backward()
                total += loss.detach() * share
        except RuntimeError:
            for param in params:
                param.grad = None
            raise
        return total

    report = on_progress or (lambda fraction: None)
    micro = config.batch_size
    step_losses: list[float] = []
    epoch_losses: list[float] = []
    devices = [torch.device(device).index or 0] if device == "cuda" else []
    model.train()
    with (
        torch.random.fork_rng(devices=devices),
        tqdm(total=total_steps, disable=not progress, desc="adapt encoder", unit="step") as bar,
    ):
        torch.manual_seed(config.seed)
        for epoch in range(config.epochs):
            order = np.random.default_rng([config.seed, 2, epoch]).permutation(n_pairs)
            running: list[Any] = []  # 0-d loss tensors, read once per epoch
            for start in range(0, n_pairs, config.batch_size):
                pairs = order[start : start + config.batch_size]
                work = functools.partial(step_backward, pairs=pairs)
                value, micro = retry_on_oom(work, micro, what="adaptation batch")
                torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                running.append(value)
                bar.update(1)
                report((len(step_losses) + len(running)) / max(total_steps, 1))
            values = [float(v) for v in running]  # one device sync per epoch
            step_losses += values
            epoch_losses.append(round(float(np.mean(values)), 5))
            logger.info("adaptation epoch %d: mean loss %.4f", epoch, epoch_losses[-1])
    model.eval()

    window = max(1, len(step_losses) // _LOSS_WINDOW)
    stats: dict[str, Any] = {
        **header(FORMAT, FORMAT_VERSION),
        "config": config.to_dict(),
        "n_documents": len(docs),
        "n_documents_given": n_given,
        "n_pairs": n_pairs,
        "n_positive_pairs": int((pair_targets > 0).sum()),
        "steps": len(step_losses),
        "micro_batch_size": micro,
        "device": device,
        "bf16": use_bf16,
        "loss_first": round(float(np.mean(step_losses[:window])), 5),
        "loss_last": round(float(np.mean(step_losses[-window:])), 5),
        "epoch_losses": epoch_losses,
        "base_folder": str(source),
        "base_fingerprint": base_fingerprint,
        "versions": library_versions("torch", "transformers"),
    }

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        if not (tmp / "model.safetensors").is_file():
            raise ValueError(f"the model was not saved as a single model.safetensors in {tmp}")
        stats["copied_files"] = _copy_source_files(source, tmp)
        stats["seconds"] = round(time.monotonic() - started, 3)
        stats["created_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        write_json(tmp / ADAPTATION_FILE, stats, indent=2, sort_keys=True)

    write_folder(target, write)
    report(1.0)
    logger.info(
        "adapted encoder saved to %s in %.1f s (loss %.4f -> %.4f)",
        target,
        stats["seconds"],
        stats["loss_first"],
        stats["loss_last"],
    )
    return stats


# ----------------------------------------------------------------- the held-out check of an adaptation
CHECK_SHARE = 0.2  # of the labelled documents kept out of the adaptation, to check it on
CHECK_MINIMUM = 10  # documents: fewer than twice this many labelled documents, nothing is held out


def check_split(
    n_documents: int, *, share: float = CHECK_SHARE, minimum: int = CHECK_MINIMUM, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(fit, check): sorted row numbers of the documents to adapt the encoder on and of those held out to check
    it. ``max(minimum, round(share * n))`` documents are held out; with fewer than ``2 * minimum`` documents none
    are (every document adapts; there is then nothing to check on). Seeded."""
    if isinstance(n_documents, bool) or not isinstance(n_documents, int | np.integer) or n_documents < 0:
        raise ValueError(f"n_documents must be a whole number >= 0; got {n_documents!r}")
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1); got {share!r}")
    n = int(n_documents)
    if n < 2 * minimum:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    order = np.random.default_rng([seed, 7]).permutation(n)
    held = max(minimum, round(share * n))
    return np.sort(order[held:]), np.sort(order[:held])


def check_adaptation(
    base: tuple[Any, Any],
    adapted: tuple[Any, Any],
    Y_fit: Any,
    Y_check: Any,
    labels: Sequence[str],
    config: Any = None,
    *,
    priors: tuple[Any, Any] = (None, None),
) -> dict[str, Any]:
    """Does an adapted encoder pay? The fast tier trained on the fit documents' base embeddings and on their adapted
    embeddings, each measured on the held-out check documents (which the adaptation never saw).

    ``base`` and ``adapted``: (fit Inputs, check Inputs) of ``learner.fast``; ``Y_fit`` / ``Y_check`` their 0/1
    labels over ``labels``; ``priors``: the label-name prior under each encoder (or None). Returns
    ``{"documents", "base": {"micro_f1", "macro_f1", "P@1"}, "adapted": {...}, "gain"}`` (gain: adapted minus base
    micro-F1)."""
    from learner import metrics
    from learner.fast import FastTier

    Y_check = sp.csr_matrix(Y_check)
    out: dict[str, Any] = {"documents": int(Y_check.shape[0])}
    for name, (fit, check), prior in zip(("base", "adapted"), (base, adapted), priors, strict=True):
        model = FastTier.train(fit, Y_fit, labels, config, prior=prior)
        k = min(len(model.labels), 5)
        idx, probs = model.predict_topk(check, k)
        micro = model.rules["micro_f1"].apply(idx, probs, len(model.labels))
        macro = model.rules.get("macro_f1", model.rules["micro_f1"]).apply(idx, probs, len(model.labels))
        out[name] = {
            "micro_f1": round(metrics.micro_f1(Y_check, micro), 5),
            "macro_f1": round(metrics.macro_f1(Y_check, macro), 5),
            "P@1": round(metrics.precision_at_k(Y_check, idx[:, :1], 1), 5),
        }
    out["gain"] = round(out["adapted"]["micro_f1"] - out["base"]["micro_f1"], 5)
    return out
