"""Benchmark a tier of the learner on a train/test split, next to a TF-IDF + logistic-regression baseline.

Command line (a public contract: keep it stable)::

    python -m learner.benchmark --train T.jsonl.gz --test E.jsonl.gz [--dev D.jsonl.gz] [--tier fast|full]
        [--config JSON] [--encoder PATH] [--cache-dir DIR] [--no-baseline] [--no-progress] [--threads N]
        --out results.json

Input files are JSONL (plain or gzip) of ``{"id", "text", "labels"}``, the format of ``shared/datasets``. It prints
a Markdown table and writes ``--out`` (parent folders are created)::

    {"metrics": {"P@1", "P@3", "P@5", "nDCG@5", "PSP@5", "micro_f1", "macro_f1"},   # fractions in [0, 1]
     "train_seconds", "predict_ms_per_doc", "peak_rss_mb", "n_labels", "config",
     "tier", "model", "decision", "ranking", "validation_metrics", "timings", "data", "baseline",
     "baseline_skipped", "conventions", "environment"}

  ``baseline`` is ``{"model", "metrics" (the same 7 keys), "train_seconds", "predict_ms_per_doc", "peak_rss_mb",
  "config", "decision", "ranking"}``, or null with the reason in ``baseline_skipped``; ``ranking`` holds every
  ``learner.metrics.ranking_report`` value at k = 1, 3, 5, 10 (P, nDCG, PSP, R).

- The label vocabulary is the union of the labels of the train, dev and test files: a label absent from the
  training data still counts in the truth (a miss for any model). PSP@5 uses the propensities of
  ``learner.metrics.propensities`` (A = 0.55, B = 1.5) computed from the training label counts.
- ``micro_f1`` is measured with the decision rule tuned on the dev file for micro-F1, ``macro_f1`` with the rule
  tuned for macro-F1 (macro over the labels present in the test file). Ranking metrics use the top 10 labels.
- ``train_seconds`` is wall time of training, including featurisation and, when the embeddings were not cached,
  encoding the train and dev texts (also reported alone in ``timings``). ``predict_ms_per_doc`` is the batch
  ``predict_topk`` over the test file divided by its size, from precomputed embeddings (their encoding is in
  ``timings.encode_seconds.test``). ``peak_rss_mb`` is the process's peak resident memory after the tier ran
  (before the baseline, whose own figure is the process peak after it).
- ``--config`` is a JSON object of ``FastTierConfig`` fields (or ``@file.json``); ``"config"`` in the output holds
  the trained model's settings ("auto" resolved, and what training chose, e.g. C). Embeddings (only when the
  features need them) come from ``learner.encoder.Encoder`` (the bundled MiniLM unless ``--encoder``) and are
  cached under ``--cache-dir`` per input file sha256 and encoder fingerprint, so a second run does not encode again.
- The baseline (label sets of at most ``BASELINE_MAX_LABELS`` labels): TF-IDF of word 1-2-grams with sublinear tf
  + one-vs-rest ``LogisticRegression``, C chosen from ``BASELINE_C_GRID`` by micro-F1 on the dev file (or, without
  one, on a seeded 10% of train, then refitted on all of train), thresholds by ``learner.decision.tune_rule``.
- Exit status: 0 on success, 2 on a usage or input error (bad ``--config``, unreadable file, ``--tier full``
  without ``learner.full``), with a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import importlib
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from learner import metrics
from learner.data import multi_hot, read_jsonl

__all__ = ["BASELINE_C_GRID", "BASELINE_MAX_LABELS", "METRIC_KEYS", "main"]

PROG = "learner.benchmark"
logger = logging.getLogger(PROG)  # not __name__, which is "__main__" under python -m
METRIC_KEYS: tuple[str, ...] = ("P@1", "P@3", "P@5", "nDCG@5", "PSP@5", "micro_f1", "macro_f1")
TOP_K = 10  # labels ranked per test document
BASELINE_MAX_LABELS = 1000
BASELINE_C_GRID: tuple[float, ...] = (1.0, 4.0, 16.0)
BASELINE_HOLDOUT = 0.1  # share of train used to tune the baseline when no dev file is given
BASELINE_SHORTLIST = 100  # candidates per document for threshold tuning, as the fast tier's default shortlist
DEFAULT_CACHE_DIR = Path(".cache") / "alabel-benchmark"
_CHUNK = 1 << 20

CONVENTIONS = {
    "P@k": "mean over all test documents of (1/k) * hits in the top k; a document without positives scores 0",
    "nDCG@k": "DCG@k = sum_r y_(r) / log2(r + 1), ideal over min(k, #positives); no positives contributes 0",
    "PSP@k": "normalised: sum of y_l / p_l over the top k divided by the best achievable (true labels by 1/p_l); "
    "p_l from training counts, A = 0.55, B = 1.5",
    "R@k": "|top-k ∩ positives| / |positives|, mean over test documents with at least one positive",
    "micro_f1": "pooled over all (document, label) decisions, at the rule tuned on validation for micro-F1",
    "macro_f1": "mean per-label F1 over labels present in the test file, at the rule tuned for macro-F1",
    "labels": "vocabulary = union of train, dev and test labels; labels absent from train count as misses",
    "predict_ms_per_doc": "batch predict_topk(k=10) over the test file / its size, embeddings precomputed",
}


class BenchmarkError(Exception):
    """A usage or input problem, reported as one line on stderr with exit status 2."""


@dataclass(frozen=True)
class Split:
    """One input file: its texts and label lists, in file order."""

    name: str
    path: Path
    sha256: str
    texts: list[str]
    label_lists: list[list[str]]
    ids: list[str] = field(default_factory=list)  # the records' ids, in file order

    def __len__(self) -> int:
        return len(self.texts)


# --- input ----------------------------------------------------------------------------------------------------------
def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_split(name: str, path: str | os.PathLike[str]) -> Split:
    """Read one JSONL(.gz) file; raises ``BenchmarkError`` when it is missing, invalid or empty."""
    file = Path(path)
    if not file.is_file():
        raise BenchmarkError(f"--{name}: no such file: {file}")
    try:
        records = read_jsonl(file)
    except ValueError as exc:
        raise BenchmarkError(f"--{name}: {exc}") from exc
    if not records:
        raise BenchmarkError(f"--{name}: {file} holds no documents")
    texts = [record["text"] for record in records]
    label_lists = [list(dict.fromkeys(record.get("labels") or [])) for record in records]
    ids = [str(record["id"]) for record in records]
    return Split(name=name, path=file, sha256=_file_sha256(file), texts=texts, label_lists=label_lists, ids=ids)


def label_vocabulary(splits: Sequence[Split]) -> list[str]:
    """Sorted union of the labels of all splits."""
    return sorted({label for split in splits for labels in split.label_lists for label in labels})


def parse_config(text: str | None) -> dict[str, Any]:
    """The ``--config`` value as a dict: inline JSON, or ``@path`` to a JSON file; None gives {}."""
    if text is None:
        return {}
    source = "--config"
    if text.startswith("@"):
        source = f"--config file {text[1:]}"
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise BenchmarkError(f"{source}: cannot read it ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchmarkError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from exc
    if not isinstance(data, dict):
        raise BenchmarkError(f"{source} must be a JSON object of settings; got {type(data).__name__}")
    return data


# --- embeddings -----------------------------------------------------------------------------------------------------
def _cache_file(cache_dir: Path, fingerprint: str, split: Split) -> Path:
    return cache_dir / "embeddings" / fingerprint / f"{split.sha256}.npy"


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def embed_splits(
    splits: Sequence[Split], *, encoder_path: str | None, cache_dir: Path, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Embeddings (N, D) float32 per split name, from the cache or encoded (and then cached).

    The cache key is the input file's sha256 and the encoder fingerprint, so the model is loaded only when a
    file is not cached yet. Returns (embeddings by split name, info with the fingerprint, per-split cache hits
    and encoding seconds; the model load is counted in the first encoded split).
    """
    from learner.config import EncoderConfig
    from learner.encoder import Encoder, encoder_fingerprint

    try:
        encoder_config = EncoderConfig(path=encoder_path)
        fingerprint = encoder_fingerprint(encoder_config)
    except ValueError as exc:
        raise BenchmarkError(f"--encoder: {exc}") from exc
    out: dict[str, np.ndarray] = {}
    cached: dict[str, bool] = {}
    seconds: dict[str, float] = {}
    encoder: Encoder | None = None
    for split in splits:
        file = _cache_file(cache_dir, fingerprint, split)
        if file.is_file():
            vectors = np.load(file, allow_pickle=False)
            if vectors.ndim == 2 and vectors.shape[0] == len(split):
                logger.info("%s: %d cached embeddings from %s", split.name, len(split), file)
                out[split.name], cached[split.name], seconds[split.name] = vectors, True, 0.0
                continue
            logger.warning("ignoring %s: shape %s does not match %d documents", file, vectors.shape, len(split))
        started = time.perf_counter()
        if encoder is None:
            encoder = Encoder.load(encoder_config)
        logger.info("%s: encoding %d texts with %s", split.name, len(split), encoder)
        vectors = encoder.encode(split.texts, progress=progress)  # (N, D)
        _save_npy_atomic(file, vectors)
        out[split.name], cached[split.name] = vectors, False
        seconds[split.name] = round(time.perf_counter() - started, 3)
    info = {"fingerprint": fingerprint, "cached": cached, "encode_seconds": seconds, "cache_dir": str(cache_dir)}
    return out, info


def embed_texts(texts: Sequence[str], *, encoder_path: str | None, cache_dir: Path, progress: bool) -> np.ndarray:
    """Embeddings (N, D) of a list of short texts (label names), cached by the texts' sha256 and the encoder."""
    from learner.config import EncoderConfig
    from learner.encoder import Encoder, encoder_fingerprint

    try:
        encoder_config = EncoderConfig(path=encoder_path)
        fingerprint = encoder_fingerprint(encoder_config)
    except ValueError as exc:
        raise BenchmarkError(f"--encoder: {exc}") from exc
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()
    file = cache_dir / "embeddings" / fingerprint / f"texts-{digest}.npy"
    if file.is_file():
        vectors = np.load(file, allow_pickle=False)
        if vectors.shape[0] == len(texts):
            return vectors
    vectors = Encoder.load(encoder_config).encode(list(texts), progress=progress)
    _save_npy_atomic(file, vectors)
    return vectors


# --- measuring ------------------------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)


def pad_topk(idx: np.ndarray, width: int) -> np.ndarray:
    """Pad (N, k) label indices to (N, width) with -1 ("no prediction") when k < width (fewer labels than width)."""
    if idx.shape[1] >= width:
        return idx
    return np.hstack([idx, np.full((idx.shape[0], width - idx.shape[1]), metrics.PAD, dtype=idx.dtype)])


def evaluate(
    Y_true: sp.csr_matrix,
    topk: np.ndarray,
    Y_micro: Any,
    Y_macro: Any,
    propensities: np.ndarray,
) -> tuple[dict[str, float], dict[str, float]]:
    """(the contract's metrics, every ranking metric at k = 1, 3, 5, 10) for one model's test predictions."""
    ranking = metrics.ranking_report(Y_true, pad_topk(topk, TOP_K), ks=(1, 3, 5, TOP_K), propensities=propensities)
    scores = {key: ranking[key] for key in METRIC_KEYS[:5]}
    scores["micro_f1"] = metrics.micro_f1(Y_true, Y_micro)
    scores["macro_f1"] = metrics.macro_f1(Y_true, Y_macro)
    return scores, ranking


def _jsonable(value: Any) -> Any:
    """Plain JSON values from numpy scalars and arrays, dataclasses, paths and tuples."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value))
    if isinstance(value, Path):
        return str(value)
    return value


# --- the tier -------------------------------------------------------------------------------------------------------
def _tier_api(tier: str) -> tuple[Any, Any, Any]:
    """(Model class, Config class, Inputs class) of a tier; ``BenchmarkError`` naming what is missing."""
    if tier == "fast":
        module_name, names = "learner.fast", ("FastTier", "FastTierConfig", "Inputs")
    else:
        module_name, names = "learner.full", ("FullTier", "FullTierConfig", "Inputs")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            what = "the GPU fine-tuning tier" if tier == "full" else "the fast tier"
            raise BenchmarkError(
                f"--tier {tier} needs the module {module_name} ({what}), which is not in this installation"
                + ("; use --tier fast" if tier == "full" else "")
            ) from exc
        raise BenchmarkError(f"--tier {tier}: {module_name} cannot be imported: missing module {exc.name}") from exc
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        raise BenchmarkError(f"--tier {tier}: {module_name} has no {', '.join(missing)}")
    return tuple(getattr(module, name) for name in names)


def run_tier(
    tier: str,
    config_data: dict[str, Any],
    train: Split,
    dev: Split | None,
    test: Split,
    labels: list[str],
    Y: dict[str, sp.csr_matrix],
    propensities: np.ndarray,
    *,
    encoder_path: str | None,
    cache_dir: Path,
    progress: bool,
) -> dict[str, Any]:
    """Train the tier on train (tuned on dev), predict the test file; the tier's part of the output JSON."""
    model_cls, config_cls, inputs_cls = _tier_api(tier)
    try:
        config = config_cls.from_dict(config_data).resolve(len(labels))
    except (ValueError, TypeError) as exc:
        raise BenchmarkError(f"--config: {exc}") from exc
    splits = [split for split in (train, dev, test) if split is not None]
    embeddings: dict[str, np.ndarray | None] = {split.name: None for split in splits}
    embedding_info: dict[str, Any] | None = None
    if config.needs_embeddings:
        found, embedding_info = embed_splits(splits, encoder_path=encoder_path, cache_dir=cache_dir, progress=progress)
        embeddings.update(found)
    encode_seconds = embedding_info["encode_seconds"] if embedding_info else {}

    def inputs(split: Split) -> Any:
        texts = split.texts if config.needs_texts else None
        return inputs_cls(texts=texts, embeddings=embeddings[split.name])

    validation = (inputs(dev), Y["dev"]) if dev is not None else None
    logger.info("training the %s tier (%s) on %d documents x %d labels", tier, config.features, len(train), len(labels))
    started = time.perf_counter()
    model = model_cls.train(inputs(train), Y["train"], labels, config, validation=validation, progress=progress)
    fit_seconds = time.perf_counter() - started

    test_inputs = inputs(test)
    started = time.perf_counter()
    idx, _ = model.predict_topk(test_inputs, k=TOP_K)  # (N, min(10, L))
    predict_seconds = time.perf_counter() - started
    Y_micro = model.predict(test_inputs, objective="micro_f1")
    Y_macro = model.predict(test_inputs, objective="macro_f1")
    scores, ranking = evaluate(Y["test"], idx, Y_micro, Y_macro, propensities)
    encoded_for_training = sum(encode_seconds.get(name, 0.0) for name in ("train", "dev"))
    return {
        "metrics": scores,
        "train_seconds": round(fit_seconds + encoded_for_training, 3),
        "predict_ms_per_doc": round(1000.0 * predict_seconds / len(test), 4),
        "peak_rss_mb": peak_rss_mb(),
        "config": _jsonable(getattr(model, "config", config)),  # the model's own: includes what training chose
        "decision": _jsonable(model.decision),
        "ranking": ranking,
        "timings": {
            "fit_seconds": round(fit_seconds, 3),
            "predict_seconds": round(predict_seconds, 3),
            "encode_seconds": encode_seconds,
            "embeddings": embedding_info,
        },
        "validation_metrics": _jsonable(getattr(model, "metrics", {})),
        "model": f"{tier} tier ({config.features}, {getattr(config, 'head', '?')} head)",
    }


# --- the baseline ---------------------------------------------------------------------------------------------------
def _fit_ovr(X: sp.csr_matrix, Y: sp.csr_matrix, C: float) -> Any:
    """One-vs-rest logistic regression on the labels with both classes in Y; the others get constant scores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    counts = np.asarray(Y.sum(axis=0)).ravel()  # (L,)
    trainable = np.flatnonzero((counts > 0) & (counts < Y.shape[0]))
    model = None
    if trainable.size:
        model = OneVsRestClassifier(LogisticRegression(C=C, solver="liblinear", max_iter=1000, random_state=0))
        model.fit(X, Y[:, trainable].toarray())
    constant = (counts >= Y.shape[0]).astype(np.float32)  # (L,) 1 for a label every document has, else 0
    return model, trainable, constant


def _proba_ovr(fitted: Any, X: sp.csr_matrix) -> np.ndarray:
    model, trainable, constant = fitted
    out = np.tile(constant, (X.shape[0], 1))  # (N, L)
    if model is not None:
        out[:, trainable] = model.predict_proba(X)
    return out


def _shortlist(proba: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best labels per row of (N, L) probabilities: (N, k) indices and scores, best first."""
    k = min(k, proba.shape[1])
    part = (
        np.argpartition(-proba, k - 1, axis=1)[:, :k] if k < proba.shape[1] else np.tile(np.arange(k), (len(proba), 1))
    )
    order = np.argsort(-np.take_along_axis(proba, part, axis=1), axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return idx, np.take_along_axis(proba, idx, axis=1)


def baseline_skip_reason(n_labels: int, *, disabled: bool) -> str | None:
    """Why the baseline is not run (``--no-baseline``, or more than ``BASELINE_MAX_LABELS`` labels), or None."""
    if disabled:
        return "--no-baseline"
    if n_labels > BASELINE_MAX_LABELS:
        return f"{n_labels:,} labels > {BASELINE_MAX_LABELS:,}: one-vs-rest logistic regression is not run"
    return None


def run_baseline(
    train: Split,
    dev: Split | None,
    test: Split,
    Y: dict[str, sp.csr_matrix],
    propensities: np.ndarray,
    *,
    progress: bool,
) -> dict[str, Any]:
    """TF-IDF (word 1-2-grams, sublinear tf, min_df 2) + one-vs-rest logistic regression; see the module docstring."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from learner.decision import tune_rule

    tfidf_settings = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2, "dtype": np.float32}
    started = time.perf_counter()
    if dev is not None:
        fit_texts, fit_Y, tune_texts, tune_Y, tuned_on = train.texts, Y["train"], dev.texts, Y["dev"], "dev"
    else:
        order = np.random.default_rng(0).permutation(len(train))
        n_hold = min(len(train) - 1, max(1, round(BASELINE_HOLDOUT * len(train))))
        hold, keep = np.sort(order[:n_hold]), np.sort(order[n_hold:])
        fit_texts, fit_Y = [train.texts[i] for i in keep], Y["train"][keep]
        tune_texts, tune_Y = [train.texts[i] for i in hold], Y["train"][hold]
        tuned_on = f"{n_hold} held-out training documents ({BASELINE_HOLDOUT:.0%}), then refitted on all of train"
    vectorizer = TfidfVectorizer(**tfidf_settings)
    try:
        X_fit = vectorizer.fit_transform(fit_texts)
    except ValueError:  # a tiny corpus where no term reaches min_df
        vectorizer = TfidfVectorizer(**{**tfidf_settings, "min_df": 1})
        X_fit = vectorizer.fit_transform(fit_texts)
    X_tune = vectorizer.transform(tune_texts)
    grid: dict[str, float] = {}
    candidates: list[tuple[float, int, float, Any, np.ndarray, np.ndarray]] = []
    for C in tqdm(BASELINE_C_GRID, desc="baseline C grid", unit="fit", disable=not progress):
        fitted = _fit_ovr(X_fit, fit_Y, C)
        idx, scores = _shortlist(_proba_ovr(fitted, X_tune), BASELINE_SHORTLIST)
        rule = tune_rule(idx, scores, tune_Y, objective="micro_f1")
        grid[f"{C:g}"] = round(float(rule.validation_score or 0.0), 6)
        logger.info("baseline C=%g: micro-F1 %.4f on %s", C, grid[f"{C:g}"], tuned_on)
        candidates.append((grid[f"{C:g}"], -len(candidates), C, fitted, idx, scores))
    _, _, C, fitted, idx, scores = max(candidates, key=lambda item: item[:2])  # the first of equal scores
    rules = {
        "micro_f1": tune_rule(idx, scores, tune_Y, objective="micro_f1"),
        "macro_f1": tune_rule(idx, scores, tune_Y, objective="macro_f1"),
    }
    if dev is None:
        vectorizer = TfidfVectorizer(**{**tfidf_settings, "min_df": vectorizer.min_df})
        fitted = _fit_ovr(vectorizer.fit_transform(train.texts), Y["train"], C)
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    test_idx, test_scores = _shortlist(_proba_ovr(fitted, vectorizer.transform(test.texts)), BASELINE_SHORTLIST)
    predict_seconds = time.perf_counter() - started
    n_labels = Y["test"].shape[1]
    Y_micro = rules["micro_f1"].apply(test_idx, test_scores, n_labels)
    Y_macro = rules["macro_f1"].apply(test_idx, test_scores, n_labels)
    scores_out, ranking = evaluate(Y["test"], test_idx[:, :TOP_K], Y_micro, Y_macro, propensities)
    return {
        "model": f"baseline TF-IDF + OvR LR (C={C:g})",
        "metrics": scores_out,
        "train_seconds": round(train_seconds, 3),
        "predict_ms_per_doc": round(1000.0 * predict_seconds / len(test), 4),
        "peak_rss_mb": peak_rss_mb(),
        "config": {
            "tfidf": {**_jsonable(tfidf_settings), "dtype": "float32", "min_df": vectorizer.min_df},
            "n_features": len(vectorizer.vocabulary_),
            "classifier": "OneVsRestClassifier(LogisticRegression(solver='liblinear', max_iter=1000))",
            "C": C,
            "C_grid_micro_f1": grid,
            "tuned_on": tuned_on,
        },
        "decision": {name: rule.to_dict() for name, rule in rules.items()},
        "ranking": ranking,
    }


# --- output ---------------------------------------------------------------------------------------------------------
def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of the metrics (fractions, 4 decimals) and costs, one row per model."""
    header = ["model", *METRIC_KEYS[:5], "micro-F1 ¹", "macro-F1 ²", "train s", "predict ms/doc", "peak RSS MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [f"{row['metrics'][key]:.4f}" for key in METRIC_KEYS]
        costs = [f"{row['train_seconds']:.1f}", f"{row['predict_ms_per_doc']:.3f}", f"{row['peak_rss_mb']:.0f}"]
        lines.append("| " + " | ".join([row["model"], *values, *costs]) + " |")
    lines += [
        "",
        "Metrics are fractions in [0, 1] on the test file. P@k and nDCG@5 over all test documents; PSP@5 normalised "
        "(A = 0.55, B = 1.5, train counts).",
        "¹ micro-F1 at the decision rule tuned for micro-F1 on validation. "
        "² macro-F1 (over labels present in the test file) at the rule tuned for macro-F1.",
    ]
    return "\n".join(lines)


def _environment(argv: Sequence[str], load_at_start: Sequence[float]) -> dict[str, Any]:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("scipy", "sklearn", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    torch = sys.modules.get("torch")
    return {
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": list(argv),
        "cpu_count": os.cpu_count(),
        "load_average_start": [round(value, 2) for value in load_at_start],
        "load_average_end": [round(value, 2) for value in os.getloadavg()],
        "platform": platform.platform(),
        "versions": versions,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description="Train a learner tier on --train, tune it on --dev, measure it on --test; "
        "print a Markdown table and write the numbers as JSON.",
    )
    parser.add_argument("--train", required=True, help="training JSONL(.gz) of {id, text, labels}")
    parser.add_argument("--test", required=True, help="test JSONL(.gz), measured")
    parser.add_argument(
        "--dev", help="validation JSONL(.gz): early stopping and decision rules (default: a train split)"
    )
    parser.add_argument("--tier", choices=("fast", "full"), default="fast", help="which tier to train (default fast)")
    parser.add_argument("--config", help="tier settings as a JSON object, or @file.json (default {})")
    parser.add_argument("--out", required=True, help="where to write the JSON results (folders are created)")
    parser.add_argument("--encoder", help="local encoder folder (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE_DIR), help=f"embedding cache (default {DEFAULT_CACHE_DIR})"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF + logistic-regression baseline")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads for this run (default: torch's own); 1 is much faster for small heads on a busy "
        "machine",
    )
    return parser


def _run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    load_at_start = os.getloadavg()  # (1, 5, 15 minutes): the machine may be shared; read timings with it
    config_data = parse_config(args.config)
    _tier_api(args.tier)  # fail before reading data when the tier is not there
    progress = not args.no_progress
    train = load_split("train", args.train)
    dev = load_split("dev", args.dev) if args.dev else None
    test = load_split("test", args.test)
    splits = [split for split in (train, dev, test) if split is not None]
    labels = label_vocabulary(splits)
    if not labels:
        raise BenchmarkError("no document in the input files has a label")
    Y = {split.name: multi_hot(split.label_lists, labels) for split in splits}
    train_counts = np.asarray(Y["train"].sum(axis=0)).ravel()  # (L,)
    if len(train) < 3:
        raise BenchmarkError(f"--train: {len(train)} documents; the propensities of PSP@k need at least 3")
    propensities = metrics.propensities(train_counts, len(train))
    test_counts = np.asarray(Y["test"].sum(axis=0)).ravel()
    data = {
        name: {"path": str(split.path), "sha256": split.sha256, "documents": len(split)}
        for name, split in zip(("train", "dev", "test"), (train, dev, test), strict=True)
        if split is not None
    }
    data["labels"] = {
        "vocabulary": len(labels),
        "in_train": int((train_counts > 0).sum()),
        "in_test": int((test_counts > 0).sum()),
        "in_test_not_in_train": int(((test_counts > 0) & (train_counts == 0)).sum()),
        "test_positives_on_labels_not_in_train": int(test_counts[train_counts == 0].sum()),
    }
    logger.info("%d labels (%d of them never in train)", len(labels), int((train_counts == 0).sum()))

    result = run_tier(
        args.tier,
        config_data,
        train,
        dev,
        test,
        labels,
        Y,
        propensities,
        encoder_path=args.encoder,
        cache_dir=Path(args.cache_dir),
        progress=progress,
    )
    skipped = baseline_skip_reason(len(labels), disabled=args.no_baseline)
    baseline = None if skipped else run_baseline(train, dev, test, Y, propensities, progress=progress)
    return {
        "metrics": result["metrics"],
        "train_seconds": result["train_seconds"],
        "predict_ms_per_doc": result["predict_ms_per_doc"],
        "peak_rss_mb": result["peak_rss_mb"],
        "n_labels": len(labels),
        "config": result["config"],
        "tier": args.tier,
        "model": result["model"],
        "decision": result["decision"],
        "ranking": result["ranking"],
        "validation_metrics": result["validation_metrics"],
        "timings": result["timings"],
        "data": data,
        "baseline": baseline,
        "baseline_skipped": skipped,
        "conventions": CONVENTIONS,
        "environment": _environment(argv, load_at_start),
    }


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(threads)`` (when given), restoring the previous count afterwards."""
    if threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark with command-line arguments ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Prints the Markdown table on stdout and writes the JSON file. A usage or input error prints one line on
    stderr and returns 2 (argparse's own errors exit with 2 as well).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"argument --threads: must be >= 1; got {args.threads}")
    try:
        with _torch_threads(args.threads):
            output = _run(args, argv)
    except BenchmarkError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(output), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    rows = [output] + ([output["baseline"]] if output["baseline"] else [])
    print(format_table(rows))
    if output["baseline_skipped"]:
        print(f"Baseline not run: {output['baseline_skipped']}.")
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
