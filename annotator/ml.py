"""The only module that imports `learner`: turns project rows into arrays and back.

Heavy imports (torch, transformers) happen inside `learner`'s lazily imported modules, called from here only in
worker processes. Loaded encoders and models are cached per process.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings

from learner.config import EncoderConfig
from learner.decision import PRETICK_CONFIDENCE as PRETICK_CONFIDENCE  # the pre-tick rule, in words on the page
from learner.fast import FastTierConfig

if TYPE_CHECKING:
    from learner.embeddings import EmbeddingStore
    from learner.encoder import Encoder
    from learner.fast import FastTier
    from learner.full import FullTier, FullTierConfig
    from learner.prior import LabelPrior

    Model = FastTier | FullTier  # what a training run builds: the project's tier (Project.model_tier)

logger = logging.getLogger(__name__)


def encoder_config(encoder_path: str | None = None) -> EncoderConfig:
    """The project's encoder: an adapted one (`encoder_path`, a folder under ARTIFACTS_DIR: an EncoderVersion's or a
    model version's config "encoder_path"), else the configured base encoder (ALABEL_ENCODER_PATH or the bundled
    MiniLM)."""
    path = str(Path(settings.ARTIFACTS_DIR) / encoder_path) if encoder_path else settings.ALABEL_ENCODER_PATH or None
    return EncoderConfig(path=path, device=settings.ALABEL_DEVICE)


@functools.lru_cache(maxsize=2)
def _encoder(config_json: str) -> Encoder:
    import json

    from learner.encoder import Encoder

    return Encoder.load(EncoderConfig.from_dict(json.loads(config_json)))


def encoder(encoder_path: str | None = None) -> Encoder:
    import json

    return _encoder(json.dumps(encoder_config(encoder_path).to_dict(), sort_keys=True))


@functools.lru_cache(maxsize=16)
def _fingerprint(config_json: str) -> str:
    import json

    from learner.encoder import encoder_fingerprint

    return encoder_fingerprint(EncoderConfig.from_dict(json.loads(config_json)))


def fingerprint(encoder_path: str | None = None) -> str:
    """The encoder's fingerprint (see `encoder_config`), from its files alone: scoring never loads the encoder."""
    import json

    return _fingerprint(json.dumps(encoder_config(encoder_path).to_dict(), sort_keys=True))


def device() -> str:
    """The device this process computes on ("cuda" or "cpu"), from ALABEL_DEVICE; "?" when it is misconfigured
    (the job then fails with the learner's message)."""
    from learner.device import resolve_device

    try:
        return resolve_device(settings.ALABEL_DEVICE)
    except ValueError:
        return "?"


def project_dir(project_id: int) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "projects" / str(project_id)


def embedding_store(project_id: int, encoder_path: str | None = None) -> EmbeddingStore:
    """The project's cached document embeddings of one encoder (each encoder keeps its own, by fingerprint)."""
    from learner.embeddings import EmbeddingStore

    return EmbeddingStore(project_dir(project_id) / "embeddings", fingerprint(encoder_path))


def encode_into_store(
    store: EmbeddingStore,
    ids: Sequence[int],
    texts: Sequence[str],
    on_progress: Callable[[int, int], None] | None = None,
    encoder_path: str | None = None,
) -> None:
    vectors = encoder(encoder_path).encode(list(texts), on_progress=on_progress)
    store.add(list(ids), vectors)


# --- the label-name prior --------------------------------------------------------------------------------------------
def label_texts(labels: Sequence[tuple[str, str]]) -> list[str]:
    """What each (name, description) is embedded as for the label-name prior."""
    from learner.prior import label_text

    return [label_text(name, description) for name, description in labels]


def label_keys(texts: Sequence[str]) -> list[int]:
    """A stable 63-bit key per label text: the label-embedding cache is keyed by what was embedded, so a changed
    description is embedded again and a renamed label never reads a stale vector."""
    import hashlib

    return [int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1 for text in texts]


def label_store(project_id: int, encoder_path: str | None = None) -> EmbeddingStore:
    from learner.embeddings import EmbeddingStore

    return EmbeddingStore(project_dir(project_id) / "label-embeddings", fingerprint(encoder_path))


def encode_labels(project_id: int, labels: Sequence[tuple[str, str]], encoder_path: str | None = None) -> int:
    """Embeds the label texts not cached yet with the project's encoder (worker side). Returns how many."""
    texts = label_texts(labels)
    keys = label_keys(texts)
    store = label_store(project_id, encoder_path)
    missing = set(store.missing(keys))
    todo = [(key, text) for key, text in zip(keys, texts, strict=True) if key in missing]
    todo = list(dict(todo).items())  # two labels with the same text share one vector
    if todo:
        store.add([key for key, _ in todo], encoder(encoder_path).encode([text for _, text in todo]))
    return len(todo)


def label_prior(
    project_id: int, labels: Sequence[tuple[str, str]], encoder_path: str | None = None
) -> LabelPrior | None:
    """The label-name prior over `labels` (name, description) from cached label vectors; a label whose vector is
    not cached yet has none (zero vector). None when no label is cached (nothing encoded yet)."""
    from learner.prior import LabelPrior

    if not labels:
        return None
    store = label_store(project_id, encoder_path)
    keys = label_keys(label_texts(labels))
    missing = set(store.missing(keys))
    cached = sorted({key for key in keys if key not in missing})
    if not cached:
        return None
    found = dict(zip(cached, store.get(cached), strict=True))
    dim = next(iter(found.values())).shape[0]
    vectors = np.stack([found.get(key, np.zeros(dim, dtype=np.float32)) for key in keys])  # (L, D)
    return LabelPrior([name for name, _ in labels], vectors)


def label_vectors(
    project_id: int, labels: Sequence[tuple[str, str]], encoder_path: str | None = None
) -> np.ndarray | None:
    """The label-name vectors (L, D) of `labels` (a label not embedded yet: a zero row); None when none is."""
    prior = label_prior(project_id, labels, encoder_path)
    return None if prior is None else prior.vectors


# --- the semantic label index (label search's fallback) ---------------------------------------------------------------
def label_index_folder(project_id: int) -> Path:
    return project_dir(project_id) / "label-index"


def label_index_build(
    project_id: int,
    entries: Sequence[tuple[int, str]],
    documents: tuple[Sequence[int], Sequence[Sequence[int]]] = ((), ()),
) -> int:
    """Builds the project's semantic label index from (label id, text) pairs (a label's name + description and each
    alternative name) with the base encoder (worker side), plus one row per label that `documents` (document ids,
    the label ids of each) use: the centroid of those documents' base-encoder vectors (`label_centroids`; documents
    not embedded by the base encoder yet are left out; labels not in `entries` too). Texts already in the
    label-embedding cache (keyed by their hash, shared with the label-name prior) are not embedded again: a changed
    name, description or alternative name is a new text, embedded here; an unchanged one costs nothing. The index is
    replaced atomically. Returns how many texts were embedded."""
    from learner.label_index import LabelIndex, label_centroids

    store = label_store(project_id, None)
    texts = [text for _, text in entries]
    keys = label_keys(texts)
    missing = set(store.missing(keys))
    todo = list({key: text for key, text in zip(keys, texts, strict=True) if key in missing}.items())
    if todo:
        store.add([key for key, _ in todo], encoder(None).encode([text for _, text in todo]))
    if keys:
        unique = sorted(set(keys))
        found = dict(zip(unique, store.get(unique), strict=True))
        vectors = np.stack([found[key] for key in keys])  # (R, D)
    else:
        vectors = np.zeros((0, 1), dtype=np.float32)
    ids = np.array([label_id for label_id, _ in entries], dtype=np.int64)  # (R,)
    doc_ids, rows = documents
    if len(doc_ids) and keys:
        store = embedding_store(project_id, None)
        missing = set(store.missing(doc_ids))
        kept = [(doc_id, labels) for doc_id, labels in zip(doc_ids, rows, strict=True) if doc_id not in missing]
        offered = set(ids.tolist())
        label_lists = [[label_id for label_id in labels if label_id in offered] for _, labels in kept]
        if kept:
            centroid_ids, centroids = label_centroids(label_lists, store.get([doc_id for doc_id, _ in kept]))
            if len(centroid_ids) and centroids.shape[1] == vectors.shape[1]:
                ids = np.concatenate([ids, centroid_ids])
                vectors = np.concatenate([vectors, centroids])
    LabelIndex(ids, vectors, fingerprint(None)).save(label_index_folder(project_id))
    return len(todo)


@functools.lru_cache(maxsize=8)
def _label_index(folder: str, _version: int) -> Any:
    from learner.label_index import LabelIndex

    return LabelIndex.load(folder)


def label_index_search(project_id: int, query: str, k: int) -> list[tuple[int, float]]:
    """The `k` labels closest in meaning to `query` [(label id, cosine)], best first, from the project's semantic
    index; only the query is embedded (the base encoder is loaded once per process). Empty when the index was not
    built yet or was built by another encoder."""
    folder = label_index_folder(project_id)
    try:
        version = (folder / "index.json").stat().st_mtime_ns
    except FileNotFoundError:
        return []
    index = _label_index(str(folder), version)
    if len(index) == 0 or index.fingerprint != fingerprint(None):
        return []
    return index.search(encoder(None).encode([query])[0], k)


def embeddings_drop(project_id: int, encoder_path: str) -> None:
    """Removes the document and label embeddings cached for the encoder `encoder_path` (one not adopted)."""
    import shutil

    for store in (embedding_store(project_id, encoder_path), label_store(project_id, encoder_path)):
        shutil.rmtree(store.folder, ignore_errors=True)


def adapt_encoder(
    *, texts: Sequence[str], Y: Any, out: Path, seed: int, on_progress: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """learner.adapt: the configured base encoder fine-tuned on the labelled documents, saved into `out` (its
    statistics returned). Always from the base encoder, on every label so far: adaptations never compound."""
    from learner.adapt import AdaptConfig
    from learner.adapt import adapt_encoder as adapt

    config = AdaptConfig(seed=seed, device=settings.ALABEL_DEVICE)
    return adapt(settings.ALABEL_ENCODER_PATH or None, list(texts), Y, out, config, on_progress=on_progress)


def check_split(n_documents: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, check) row numbers: the documents an adaptation trains on and those held out to check it
    (learner.adapt.check_split: a fifth, at least 10; none of fewer than 20)."""
    from learner.adapt import check_split as split

    return split(n_documents, seed=seed)


def check_adaptation(
    *,
    texts: Sequence[str],
    base_X: np.ndarray,
    adapted_X: np.ndarray,
    Y: Any,
    fit: np.ndarray,
    check: np.ndarray,
    labels: Sequence[str],
    config: FastTierConfig,
    priors: tuple[LabelPrior | None, LabelPrior | None],
) -> dict[str, Any]:
    """learner.adapt.check_adaptation: the fast tier on the `fit` documents' base and adapted embeddings, measured on
    the held-out `check` documents ({"documents", "base", "adapted", "gain"})."""
    from scipy.sparse import csr_matrix

    from learner.adapt import check_adaptation as measure
    from learner.fast import Inputs

    Y = csr_matrix(Y)

    def part(X: np.ndarray, rows: np.ndarray) -> Inputs:
        return Inputs(texts=[texts[i] for i in rows], embeddings=X[rows])

    return measure(
        (part(base_X, fit), part(base_X, check)),
        (part(adapted_X, fit), part(adapted_X, check)),
        Y[fit],
        Y[check],
        labels,
        config,
        priors=priors,
    )


def model_encoder(model: Model) -> str | None:
    """The encoder a model was trained on (`encoder_path` as `encoder_config` takes it; None: the base one)."""
    value = model.train_info.get("encoder_path")
    return str(value) if value else None


def set_model_encoder(model: Model, encoder_path: str | None) -> None:
    """Records in the model (saved with it) which encoder it reads, so every later use embeds with that one."""
    model.train_info["encoder_path"] = encoder_path


def prior_info(model: Model) -> dict[str, Any] | None:
    """How the model's label-name prior is calibrated and handed over (None: the model has no prior, as a full-tier
    model never has)."""
    prior = getattr(model, "prior", None)
    if prior is None:
        return None
    return {
        "scale": round(prior.scale, 4),
        "offset": round(prior.offset, 4),
        "pseudo_positives": prior.config.pseudo_positives,
        "labels_with_vectors": int((~prior.missing).sum()),
    }


def prior_shortlists(prior: LabelPrior, X: np.ndarray, k: int) -> tuple[Any, Any]:
    """Zero-shot suggestions before any model: the prior's k best labels per document with probabilities."""
    return prior.predict_topk(X, k)


def fast_config(*, loss: str, seed: int) -> FastTierConfig:
    """The fast tier's settings for a project: learner defaults, the project's loss, this machine's device."""
    return FastTierConfig(loss=loss, seed=seed, device=settings.ALABEL_DEVICE)


# What a project and the machine decide in the full tier's settings; ALABEL_FULL_TIER sets the rest.
FULL_TIER_FIXED = ("loss", "seed", "device", "encoder")


def full_config(*, loss: str, seed: int, encoder_path: str | None) -> FullTierConfig:
    """The full tier's settings for a project: learner defaults, the operator's ALABEL_FULL_TIER (FullTierConfig
    fields as a JSON object: epochs, max_length, batch_size, head, ...), the project's loss, the run's seed, this
    machine's device and the encoder it fine-tunes (`encoder_path`: the newest adapted one, else the base one, as
    `encoder_config` takes it). The head stays "auto" unless the operator sets one: flat up to flat_max_labels
    labels, the label tree above. Raises ValueError naming a bad or unknown key (the training job fails with it)."""
    from learner.full import FullTierConfig

    overrides = settings.ALABEL_FULL_TIER
    if not isinstance(overrides, dict):
        raise ValueError(f"ALABEL_FULL_TIER must be a JSON object of FullTierConfig fields; got {overrides!r}")
    fixed = sorted(set(overrides) & set(FULL_TIER_FIXED))
    if fixed:
        raise ValueError(
            f"ALABEL_FULL_TIER may not set {', '.join(fixed)}: the project's loss, the run's seed, ALABEL_DEVICE and "
            "the project's encoder decide them"
        )
    try:
        return FullTierConfig.from_dict(
            {
                **overrides,
                "loss": loss,
                "seed": seed,
                "device": settings.ALABEL_DEVICE,
                "encoder": encoder_config(encoder_path).path,
            }
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ALABEL_FULL_TIER: {exc}") from exc


def model_tier(model: Model) -> str:
    """ "full" for a full-tier model (learner.full: the fine-tuned encoder and its head), else "fast"."""
    from learner.full import FullTier

    return "full" if isinstance(model, FullTier) else "fast"


def train(
    *,
    texts: Sequence[str],
    X: np.ndarray | None,
    Y: Any,
    labels: Sequence[str],
    config: FastTierConfig | FullTierConfig,
    prior: LabelPrior | None = None,
    evidence: np.ndarray | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> Model:
    """The tier `config` names, trained: FastTier.train on texts and embeddings `X` (N, D) with the label-name
    `prior`; `evidence` (N,) bools: the documents whose out-of-fold predictions may count as pre-tick evidence
    (those the encoder did not adapt on), None: all. FullTier.train (a FullTierConfig) fine-tunes the encoder on
    the texts alone: `X`, `prior` and `evidence` are not used (it holds out val_fraction of the documents for
    calibration and thresholds from min_tune_documents on)."""
    from learner.fast import FastTier, Inputs
    from learner.full import FullTier, FullTierConfig

    if isinstance(config, FullTierConfig):
        return FullTier.train(Inputs(texts=list(texts)), Y, labels, config, on_progress=on_progress)
    return FastTier.train(
        Inputs(texts=list(texts), embeddings=X),
        Y,
        labels,
        config,
        prior=prior,
        evidence=evidence,
        on_progress=on_progress,
    )


def savings_estimate(
    *,
    picks_texts: Sequence[str],
    picks_X: np.ndarray,
    Y_picks: Any,
    eval_texts: Sequence[str],
    eval_X: np.ndarray,
    Y_eval: Any,
    labels: Sequence[str],
    config: FastTierConfig,
    prior: LabelPrior | None,
    strategy: str,
    seed: int,
    min_evaluation: int,
    min_picks: int,
    orders: int,
    n_boot: int,
    on_progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """learner.replay.estimate: the labels the picks (in pick order) saved against random picks, the random arm
    cross-fitted on the labelled evaluation documents, with the project's learner (`config`, `prior`). JSON, with
    "tier": "fast": the replay trains the fast tier dozens of times, also for a project whose model_tier is "full"
    (fine-tuning the encoder that often would hold the gpu queue for hours)."""
    from learner.replay import Labelled, estimate

    result = estimate(
        picks=Labelled(Y_picks, texts=list(picks_texts), embeddings=picks_X),
        evaluation=Labelled(Y_eval, texts=list(eval_texts), embeddings=eval_X),
        labels=list(labels),
        config=config.to_dict(),
        prior=prior,
        strategy=strategy,
        seed=seed,
        orders=orders,
        n_boot=n_boot,
        min_evaluation=min_evaluation,
        min_picks=min_picks,
        on_progress=on_progress,
    )
    return {**result, "tier": "fast"}


def update(
    model: Model,
    new: Any,
    new_y: Any,
    labels: Sequence[str],
    *,
    replay: Any,
    prior: LabelPrior | None,
    on_progress: Callable[[float], None] | None = None,
) -> Model:
    """The model continued on new answers plus a replay: `FastTier.update` (the prior gives new labels theirs), or
    `FullTier.update` (update_epochs more of fine-tuning; it blends no prior, so `prior` must be None)."""
    from learner.full import FullTier

    if isinstance(model, FullTier):
        if prior is not None:
            raise ValueError("a full-tier model blends no label-name prior: update it without one")
        return model.update(new, new_y, labels, replay=replay, on_progress=on_progress)
    return model.update(new, new_y, labels, replay=replay, prior=prior, on_progress=on_progress)


def multi_hot(rows: Sequence[Sequence[int]], label_ids: Sequence[int]) -> Any:
    """Targets (N, L) as a sparse 0/1 matrix: row i has a 1 in the column of each label id of `rows[i]`."""
    from scipy.sparse import csr_matrix

    column = {label_id: j for j, label_id in enumerate(label_ids)}
    indptr, indices = [0], []
    for row in rows:
        indices.extend(sorted(column[label_id] for label_id in row))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    return csr_matrix((data, np.array(indices, dtype=np.int64), np.array(indptr)), shape=(len(rows), len(label_ids)))


def model_labels(model: Model) -> list[str]:
    """The model's label names, one per column."""
    return list(model.labels)


def model_reads(model: Model) -> tuple[bool, bool]:
    """What the model reads of a document: (its text, its embedding)."""
    return bool(model.uses_texts), bool(model.uses_embeddings)


def model_has_prior(model: Model) -> bool:
    """Whether the model blends a label-name prior (an update then needs the prior again; never a full-tier one)."""
    return getattr(model, "prior", None) is not None


def model_save(model: Model, folder: Path, *, encoder_path: str | None) -> dict[str, Any]:
    """Saves the model to `folder`, recording the encoder it reads, and returns what the model registry keeps about
    it: held-out metrics, the device it trained on, and its decision settings ("tier": "fast" or "full", the
    tier's config under "fast_tier" or "full_tier" (a full tier's with its resolved head), the micro-F1 rule's
    threshold and fallback, calibration, the pre-tick curve, the label-name prior; the last two None where the
    model has none)."""
    set_model_encoder(model, encoder_path)
    model.save(folder)
    rule = model.rules["micro_f1"]
    tier = model_tier(model)
    return {
        "metrics": model_metrics(model),
        "device": str(model.train_info.get("device", "")),
        "config": {
            "tier": tier,
            f"{tier}_tier": model.config.to_dict(),
            "threshold": rule.threshold,
            "tick_curve": tick_curve(model),  # pre-ticks: selectors.pretick_rule
            "at_least_one": rule.at_least_one,
            "platt": list(model.platt),
            "label_prior": prior_info(model),  # None: no prior blended (switched off, or a tree)
        },
    }


def inputs(*, texts: Sequence[str] | None, X: np.ndarray | None) -> Any:
    """learner.fast.Inputs for documents' texts and/or embeddings."""
    from learner.fast import Inputs

    return Inputs(texts=list(texts) if texts is not None else None, embeddings=X)


def model_metrics(model: Model) -> dict[str, float]:
    """Held-out metrics under template-friendly names ("P@1" -> "p_at_1")."""
    return {name.replace("@", "_at_").lower(): round(float(value), 5) for name, value in model.metrics.items()}


def tier_config(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A model version's tier and its tier config from the version's `config` (what `model_save` returned):
    ("full", config["full_tier"]) or ("fast", config["fast_tier"]; {} for a version that recorded none)."""
    if config.get("tier") == "full" or "full_tier" in config:
        return "full", dict(config.get("full_tier") or {})
    return "fast", dict(config.get("fast_tier") or {})


@functools.lru_cache(maxsize=4)
def load_model(path: str) -> Model:
    """The model saved in folder `path`, of the tier its files say (a full tier writes full_tier.json, a fast tier
    fast_tier.json), onto ALABEL_DEVICE."""
    from learner.fast import FastTier
    from learner.full import FullTier
    from learner.full.tier import CONFIG_FILE as FULL_TIER_FILE

    if (Path(path) / FULL_TIER_FILE).is_file():
        return FullTier.load(path, device=settings.ALABEL_DEVICE)
    return FastTier.load(path, device=settings.ALABEL_DEVICE)


def shortlists(model: Model, *, texts: Sequence[str] | None, X: np.ndarray | None, k: int) -> tuple[Any, Any]:
    """The model's k best labels per document with calibrated probabilities, (N, k) each, best first."""
    from learner.fast import Inputs

    inputs = Inputs(
        texts=list(texts) if model.uses_texts and texts is not None else None,
        embeddings=X if model.uses_embeddings else None,
    )
    return model.predict_topk(inputs, k)


def evaluate(
    model: Model,
    *,
    texts: Sequence[str] | None,
    X: np.ndarray | None,
    indptr: list[int],
    indices: list[int],
    n_labels: int,
    label_counts: np.ndarray,
    n_train: int,
    n_boot: int,
) -> dict[str, Any]:
    """The model on labelled documents (gold labels as CSR rows over the model's columns): micro/macro-F1 at its
    micro-F1 decision rule, P@1/3/5, nDCG@5, PSP@5 (propensities from the training counts) and per-label F1, each
    with a bootstrap 95 % interval (learner.evaluation)."""
    import scipy.sparse as sp

    from learner.evaluation import evaluate as evaluate_set
    from learner.metrics import propensities

    idx, probs = shortlists(model, texts=texts, X=X, k=max(5, min(n_labels, model.config.shortlist)))
    predicted = model.rules["micro_f1"].apply(idx, probs, n_labels)
    Y_true = sp.csr_matrix(
        (np.ones(len(indices)), np.array(indices, dtype=np.int64), np.array(indptr)), shape=(len(indptr) - 1, n_labels)
    )
    top = idx[:, :5] if idx.shape[1] >= 5 else np.pad(idx, ((0, 0), (0, 5 - idx.shape[1])), constant_values=-1)
    prop = propensities(label_counts, n_train) if n_train >= 3 else None
    result = evaluate_set(Y_true, predicted, top, labels=list(model.labels), propensities=prop, n_boot=n_boot)
    result["threshold"] = float(model.rules["micro_f1"].threshold)
    return result


def label_decisions(model: Model, *, texts: Sequence[str] | None, X: np.ndarray | None) -> list[list[int]]:
    """The model's positive labels per document (column indices), at its micro-F1 decision rule."""
    n_labels = len(model.labels)
    idx, probs = shortlists(model, texts=texts, X=X, k=max(1, min(n_labels, model.config.shortlist)))
    predicted = model.rules["micro_f1"].apply(idx, probs, n_labels).tocsr()
    return [predicted.indices[predicted.indptr[i] : predicted.indptr[i + 1]].tolist() for i in range(idx.shape[0])]


def decisions_with_top(model: Model, *, texts: Sequence[str] | None, X: np.ndarray | None) -> tuple[list, list]:
    """The model's positive labels per document (column indices, at its micro-F1 decision rule) and its best label
    per document (a column index), from one prediction."""
    n_labels = len(model.labels)
    idx, probs = shortlists(model, texts=texts, X=X, k=max(1, min(n_labels, model.config.shortlist)))
    predicted = model.rules["micro_f1"].apply(idx, probs, n_labels).tocsr()
    decided = [predicted.indices[predicted.indptr[i] : predicted.indptr[i + 1]].tolist() for i in range(idx.shape[0])]
    return decided, [int(best) for best in idx[:, 0]]


def decision_scores(
    true: Sequence[Sequence[int]], decided: Sequence[Sequence[int]], top: Sequence[int], n_labels: int
) -> dict[str, float]:
    """Micro-F1, macro-F1, micro precision of label decisions and P@1 of a best label (-1: none) against the true
    labels, all as column indices in [0, n_labels) per document (learner.metrics)."""
    from learner.metrics import macro_f1, micro_f1, micro_precision, precision_at_k

    Y_true, Y_pred = multi_hot(true, list(range(n_labels))), multi_hot(decided, list(range(n_labels)))
    best = np.asarray(list(top), dtype=np.int64).reshape(-1, 1)  # (N, 1)
    return {
        "micro_f1": round(micro_f1(Y_true, Y_pred), 4),
        "macro_f1": round(macro_f1(Y_true, Y_pred), 4),
        "precision": round(micro_precision(Y_true, Y_pred), 4),
        "p_at_1": round(precision_at_k(Y_true, best, 1), 4),
    }


def agreement(first: Sequence[Sequence[int]], second: Sequence[Sequence[int]]) -> float:
    """Cohen's kappa between two models' decisions on the same documents (label ids per document)."""
    from learner.curves import agreement as kappa

    columns = {label: j for j, label in enumerate(sorted({x for row in [*first, *second] for x in row}))}
    a = np.zeros((len(first), max(len(columns), 1)), dtype=bool)
    b = np.zeros_like(a)
    for i, row in enumerate(first):
        a[i, [columns[x] for x in row]] = True
    for i, row in enumerate(second):
        b[i, [columns[x] for x in row]] = True
    return float(kappa(a, b))


def agreement_compute(
    *,
    units: Sequence[dict[str, set[int]]],
    gold: Sequence[set[int] | None],
    label_ids: Sequence[int],
    names: dict[int, str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Inter-annotator agreement (learner.agreement) of answers per document (username -> label ids), with the
    label ids of the per-label rows replaced by their names (a JSON-able dict)."""
    from learner.agreement import agreement as compute

    result = compute(units, labels=label_ids, gold=gold, n_boot=n_boot, seed=seed)
    for row in result["labels"]:
        row["label"] = names.get(row["label"], str(row["label"]))
    return result


def learning_curve(points: Sequence[tuple[float, float, float]], *, n_boot: int = 300) -> Any:
    """learner.curves.fit over (labels, value, half interval width) points; None when it cannot be fitted."""
    from learner.curves import fit

    return fit([p[0] for p in points], [p[1] for p in points], sigma=[p[2] for p in points], n_boot=n_boot)


def strategy_choices() -> list[tuple[str, str]]:
    """The strategies a project can use: "default" (the measured default) and every scorer with its batch rules.
    modAL's peers are left out: they are dense-only baselines for the simulator."""
    from learner.strategies import (
        DEFAULT_STRATEGY,
        DEFAULT_STRATEGY_LARGE,
        LARGE_LABEL_SPACE,
        MODAL_STRATEGIES,
        STRATEGIES,
    )

    names = [name for name in STRATEGIES if name not in MODAL_STRATEGIES]
    default = f"Default (now {DEFAULT_STRATEGY}; {DEFAULT_STRATEGY_LARGE} above {LARGE_LABEL_SPACE:,} labels)"
    return [("default", default)] + [(name, _strategy_title(name)) for name in names]


def _strategy_title(name: str) -> str:
    from learner.strategies import SCORERS

    scorer, _, rule = name.partition("+")
    if scorer not in SCORERS:  # auto: its own description
        from learner.strategies import STRATEGIES

        return f"{name}: {STRATEGIES[name].split(':')[0].capitalize()}, the default's way of choosing among strategies"
    title = SCORERS[scorer].split(";")[0].split(":")[0].split(" (")[0].split(",")[0]
    title = title[0].upper() + title[1:]
    return f"{name}: {title}" + {"": "", "kmeans": ", diverse batch (k-means)", "ranked": ", ranked batch"}[rule]


def resolve_strategy(strategy: str, n_labels: int | None = None) -> tuple[str, str, str]:
    """(the name actually used, scorer, batch rule): "default" becomes the library's measured default for a label
    space of `n_labels`."""
    from learner.strategies import default_for, resolve

    name = default_for(n_labels) if strategy == "default" else strategy
    scorer, rule = resolve(name)
    return name, scorer, rule


def per_label_thresholds(model: Any) -> dict[int, float]:
    """The per-label thresholds (model column -> threshold) of the model's micro-F1 decision rule (may be empty)."""
    return dict(model.rules["micro_f1"].per_label)


def is_coverage_rule(rule: str) -> bool:
    """Whether a batch rule covers the pool's embeddings (TypiClust, ProbCover) instead of reading scores."""
    from learner.strategies import COVERAGE_RULES

    return rule in COVERAGE_RULES


def probcover_delta(embeddings: np.ndarray, n_labels: int, seed: int) -> float:
    """ProbCover's delta for the pool's embeddings (`learner.strategies.probcover_delta`)."""
    from learner.strategies import probcover_delta as _probcover_delta

    return _probcover_delta(embeddings, n_labels, seed=seed)


def auto_arm(state: dict[str, Any] | None, n_labelled: int, n_labels: int, seed: int) -> str:
    """The strategy `auto` runs this time (`learner.strategies.auto_arm`)."""
    from learner.strategies import auto_arm as _auto_arm

    return _auto_arm(state, n_labelled, n_labels, seed)


def chooser_update(state: dict[str, Any] | None, arm: str, Y_batch: Any, counts_before: Any) -> dict[str, Any]:
    """The chooser's state after `arm`'s batch was answered with labels `Y_batch` (rows: documents), given the
    labelled positives per label before it (`learner.chooser.reward` and `update`)."""
    from learner import chooser

    current = chooser.ChooserState.from_dict(state) if state else chooser.ChooserState()
    return chooser.update(current, arm, chooser.reward(Y_batch, counts_before)).to_dict()


def is_auto(strategy: str) -> bool:
    from learner.strategies import AUTO

    return strategy == AUTO


def score_strategy(strategy: str, probs: np.ndarray, **context: Any) -> np.ndarray:
    """`learner.strategies.score_pool` (context: idx, threshold, mean_cardinality, label_counts, per_label, seed)."""
    from learner.strategies import score_pool

    return score_pool(strategy, probs, **context)


def _chunk_inputs(
    model: Model,
    ids: list[int],
    texts_for: Callable[[list[int]], list[str]],
    vectors_for: Callable[[list[int]], np.ndarray],
) -> tuple[list[str] | None, np.ndarray | None]:
    """What the model reads of these documents, loaded only when it reads it."""
    return (texts_for(ids) if model.uses_texts else None), (vectors_for(ids) if model.uses_embeddings else None)


def pool_shortlists(
    model: Model,
    doc_ids: list[int],
    k: int,
    *,
    texts_for: Callable[[list[int]], list[str]],
    vectors_for: Callable[[list[int]], np.ndarray],
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """The model's k best labels of each document with calibrated probabilities, (N, k) each, scored in chunks;
    `texts_for` / `vectors_for` load a chunk's texts / embeddings (called only when the model reads them)."""
    idx = np.empty((len(doc_ids), k), dtype=np.int64)  # (N, k)
    probs = np.empty((len(doc_ids), k), dtype=np.float32)  # (N, k)
    for start in range(0, len(doc_ids), chunk):
        ids = doc_ids[start : start + chunk]
        texts, X = _chunk_inputs(model, ids, texts_for, vectors_for)
        idx[start : start + len(ids)], probs[start : start + len(ids)] = shortlists(model, texts=texts, X=X, k=k)
    return idx, probs


def score_pool(
    model: Model,
    doc_ids: list[int],
    strategy: str,
    *,
    width: int,
    kept: int,
    chunk: int,
    texts_for: Callable[[list[int]], list[str]],
    vectors_for: Callable[[list[int]], np.ndarray],
    on_chunk: Callable[[list[int], np.ndarray, np.ndarray, np.ndarray], bool] | None = None,
    seed: int,
    **context: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Scores the pool `doc_ids` for `strategy` in chunks of `chunk` documents: each chunk's shortlists of the
    model's `width` best labels are scored (`learner.strategies.score_pool`; context: threshold,
    mean_cardinality, label_counts, per_label), and the best `kept` of each shortlist are kept, never the
    documents x labels matrix. After each chunk `on_chunk(ids, scores, idx, probs)` (the chunk's (C,), (C, kept),
    (C, kept)) may publish it; it returns False to stop (then None is returned).

    Returns scores (U,), top label columns (U, kept) and their probabilities (U, kept)."""
    scores = np.empty(len(doc_ids), dtype=np.float64)  # (U,)
    top_idx = np.empty((len(doc_ids), kept), dtype=np.int32)  # (U, kept)
    top_p = np.empty((len(doc_ids), kept), dtype=np.float32)  # (U, kept)
    for start in range(0, len(doc_ids), chunk):
        ids = doc_ids[start : start + chunk]
        texts, X = _chunk_inputs(model, ids, texts_for, vectors_for)
        idx, probs = shortlists(model, texts=texts, X=X, k=width)  # (C, width) each, best first
        rows = slice(start, start + len(ids))
        scores[rows] = score_strategy(strategy, probs, idx=idx, seed=seed * 7919 + start, **context)
        top_idx[rows], top_p[rows] = idx[:, :kept], probs[:, :kept]
        if on_chunk is not None and not on_chunk(ids, scores[rows], top_idx[rows], top_p[rows]):
            return None
    return scores, top_idx, top_p


def select_batch(strategy: str, scores: np.ndarray, n: int, **context: Any) -> np.ndarray:
    """`learner.strategies.select_batch` (context: embeddings, labelled_embeddings, idx, probs, threshold,
    per_label, n_labels, delta, label_vectors, label_counts, seed)."""
    from learner.strategies import select_batch as _select_batch

    return _select_batch(strategy, scores, n, **context)


def cold_start(embeddings: np.ndarray, n: int, seed: int) -> np.ndarray:
    from learner.strategies import cold_start as _cold_start

    return _cold_start(embeddings, n, seed=seed)


def tick_curve(model: Model) -> dict[str, Any] | None:
    """The model's pre-tick evidence (learner.decision.tick_curve on its out-of-fold or held-out calibrated
    shortlists; a full-tier model's from the documents it held out), JSON; None for a model whose thresholds were
    not tuned (too few labelled documents)."""
    curve = model.decision.get("tick_curve")
    return dict(curve) if curve else None


def pretick(
    curve: dict[str, Any], bins: Sequence[Sequence[int]], *, floor: float, threshold: float | None = None
) -> dict[str, Any] | None:
    """The pre-tick rule from a model's tick curve plus the experts' decisions on its suggestions.

    `bins` [[j, shown, accepted], ...]: suggestions shown with a score in [j / 100, (j + 1) / 100) and how many
    of them the experts kept. Without `threshold`: the lowest grid threshold whose pre-ticks are right at least
    `floor` of the time, with PRETICK_CONFIDENCE (learner.decision.pretick_threshold; None when none is); with it,
    that threshold's record. Returns {"threshold", "precision", "recall", "ticked", "documents", "decisions"}, or
    None when the stored curve is unusable (it is logged)."""
    from learner.decision import GRID, curve_add, pretick_threshold, tick_stats

    try:
        rows = np.asarray(list(bins), dtype=np.int64).reshape(-1, 3)  # (B, 3)
        merged = curve_add(
            curve,
            np.repeat(np.clip(rows[:, 0], 0, GRID) / GRID, 2),
            np.tile([True, False], len(rows)),
            counts=np.stack([rows[:, 2], rows[:, 1] - rows[:, 2]], axis=1).clip(0).ravel(),
        )
        chosen = pretick_threshold(merged, floor) if threshold is None else float(threshold)
        stats = tick_stats(merged, chosen) if chosen is not None else {"precision": None, "recall": None, "ticked": 0}
    except (TypeError, ValueError) as exc:
        logger.warning("unusable tick curve or decision counts, nothing pre-ticked: %s", exc)
        return None
    return {
        "threshold": chosen,
        **stats,
        "documents": int(merged["documents"]),
        "decisions": int(merged["decisions"]),
    }
