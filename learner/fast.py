"""The fast tier: cheap features and a multi-label head, retrained every active-learning round on a CPU.

One interface for every label-set size::

    model = FastTier.train(Inputs(texts=..., embeddings=...), Y, labels, FastTierConfig(), validation=None)
    model.save(folder); model = FastTier.load(folder)
    idx, probs = model.predict_topk(Inputs(...), k)        # (N, k) label indices and calibrated probabilities
    Y_hat = model.predict(Inputs(...), objective="micro_f1")  # (N, L) 0/1 by the tuned decision rule

- Features: TF-IDF of the texts (``learner.features``), frozen-encoder embeddings, or both.
- Head: ``flat`` (up to ``flat_max_labels`` labels): one linear layer in torch over [TF-IDF, standardised
  embeddings], BCE or ZLPR, early-stopped on validation. ``tree`` (more labels): the XR-Linear style label tree of
  ``learner.xmc`` over TF-IDF, with beam search, so prediction cost grows with the beam, not with L.
- Decision rule and calibration (``learner.decision``): Platt scaling fitted on validation shortlists, then the
  global threshold that maximises micro-F1 (and, separately, macro-F1), with or without an at-least-one-label
  fallback; per-label thresholds where validation has enough positives. Without a validation set a split of the
  training data is held out for this, and the model is then refitted on everything.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from learner.artifacts import write_folder, write_json
from learner.config import LOSSES, Params, check_device, check_float, check_int, check_positive_int
from learner.decision import DecisionRule, RuleBasedPredictions, apply_platt, calibrated_tick_curve, tune_rule
from learner.device import run_batches
from learner.prior import LabelPrior, topk_rows
from learner.tier import (
    Inputs,
    label_names,
    model_header,
    old_label_columns,
    prior_logits,
    read_model_header,
    split_rows,
    target_matrix,
    tuned_decision,
)

__all__ = ["FastTier", "FastTierConfig", "Inputs"]

logger = logging.getLogger(__name__)

FEATURES = ("auto", "tfidf", "embeddings", "both")
HEADS = ("auto", "flat", "tree")
FORMAT = "learner.FastTier"
FORMAT_VERSION = 1
CONFIG_FILE = "fast_tier.json"


# --- config ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FastTierConfig(Params):
    """Settings of the fast tier. ``resolve(n_labels)`` turns the "auto" choices into concrete ones."""

    features: str = "auto"  # auto: both for flat heads, tfidf for trees
    head: str = "auto"  # auto: flat up to flat_max_labels labels, tree above
    flat_max_labels: int = 1000
    loss: str = "bce"
    # Flat head: L2-regularised multi-label logistic regression (or ZLPR), solved full-batch with L-BFGS.
    # C is the inverse regularisation strength, as in scikit-learn; with validation data it is chosen from C_grid.
    C: float = 4.0
    C_grid: tuple[float, ...] = (1.0, 4.0, 16.0)
    max_iter: int = 300  # L-BFGS iterations per fit (warm-started fits along the grid need fewer)
    update_max_iter: int = 20  # L-BFGS iterations of an incremental update (warm start from the previous model)
    embedding_weight: float = 1.0  # weight of the embedding block, whose rows are scaled to unit mean norm first
    positive_weight_power: float = 0.0  # BCE weighs label l's positives by (mean positives / positives of l) ** this
    max_flat_cells: int = 50_000_000  # TF-IDF features x labels of a flat head; TF-IDF vocabulary capped to fit
    # Fields of learner.features.TfidfConfig / learner.xmc.XRConfig to override. A tree head trained on at least
    # learner.xmc.config.LARGE_DATA_DOCUMENTS documents starts from the large-data settings (stemmed word unigrams
    # with min_df 3, negatives from the beam's 5 best nodes; large_data_settings) instead of the classes' defaults.
    tfidf: dict[str, Any] = field(default_factory=dict)
    tree: dict[str, Any] = field(default_factory=dict)
    # Tree heads: a label-name matcher (learner.xmc.lexical) re-ranks the tree's best `lexical_candidates`; it also
    # proposes labels whose name occurs in the text even without training documents. 0 switches it off.
    lexical_weight: float = 0.1
    # ... for a tree trained on learner.xmc.config.LARGE_DATA_DOCUMENTS or more (tibkat-gnd's tune splits choose it);
    # a lexical_weight of 0 still switches the matcher off
    large_data_lexical_weight: float = 0.3
    lexical_candidates: int = 20
    lexical: dict[str, Any] = field(default_factory=dict)  # learner.xmc.lexical.LexicalConfig fields to override
    # Tree heads: nearest-neighbour label voting (learner.xmc.neighbours: the labels of the most similar training
    # documents) joins that blend with this weight; 0 (the default below LARGE_DATA_DOCUMENTS) switches it off ...
    neighbour_weight: float = 0.0
    # ... and this one for a tree trained on LARGE_DATA_DOCUMENTS or more (tibkat-gnd's tune split chooses it)
    large_data_neighbour_weight: float = 0.2
    neighbours: dict[str, Any] = field(default_factory=dict)  # learner.xmc.neighbours.NeighbourConfig overrides
    val_fraction: float = 0.1
    min_tune_documents: int = 20  # below this, no tuning: threshold 0.5, no calibration
    # Up to cv_max_documents documents, C, calibration and decision rules are tuned on cv_folds-fold out-of-fold
    # predictions of every document instead of a held-out val_fraction (a 10 % hold-out of 100 documents is 10).
    cv_folds: int = 5
    cv_max_documents: int = 2000
    calibrate: bool = True
    per_label_min_positives: int = 20
    shortlist: int = 100  # candidates per document used for tuning and calibration
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {', '.join(FEATURES)}; got {self.features!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}; got {self.head!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        for name, minimum in (
            ("flat_max_labels", 1),
            ("max_iter", 1),
            ("update_max_iter", 1),
            ("max_flat_cells", 1),
            ("min_tune_documents", 2),
            ("cv_folds", 2),
            ("cv_max_documents", 0),
            ("per_label_min_positives", 1),
            ("shortlist", 1),
            ("seed", 0),
        ):
            check_int(name, getattr(self, name), minimum)
        check_float(self, "C", 0.0, 1e9, low_open=True, high_open=False)
        check_float(self, "embedding_weight", 0.0, 1e3, low_open=True, high_open=False)
        check_float(self, "positive_weight_power", 0.0, 2.0, low_open=False, high_open=False)
        check_float(self, "lexical_weight", 0.0, 10.0, low_open=False, high_open=False)
        check_float(self, "large_data_lexical_weight", 0.0, 10.0, low_open=False, high_open=False)
        check_int("lexical_candidates", self.lexical_candidates, 1)
        check_float(self, "neighbour_weight", 0.0, 10.0, low_open=False, high_open=False)
        check_float(self, "large_data_neighbour_weight", 0.0, 10.0, low_open=False, high_open=False)
        grid = tuple(self.C_grid) if isinstance(self.C_grid, list | tuple) else None
        if not grid or not all(isinstance(c, int | float) and not isinstance(c, bool) and c > 0 for c in grid):
            raise ValueError(f"C_grid must be a non-empty list of positive numbers; got {self.C_grid!r}")
        object.__setattr__(self, "C_grid", tuple(sorted(float(c) for c in grid)))
        check_float(self, "val_fraction", 0.0, 0.5, low_open=True, high_open=False)
        check_device(self.device)
        for name in ("tfidf", "tree", "lexical", "neighbours"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict of settings")
        if self.head == "tree" and self.features in ("embeddings", "both"):
            raise ValueError("the tree head works on TF-IDF features: use features 'tfidf' (or 'auto')")

    def resolve(self, n_labels: int) -> FastTierConfig:
        """Concrete `head` and `features` for a label set of `n_labels` labels."""
        head = self.head
        if head == "auto":
            head = "flat" if n_labels <= self.flat_max_labels else "tree"
        features = self.features
        if features == "auto":
            features = "both" if head == "flat" else "tfidf"
        return dataclasses.replace(self, head=head, features=features)

    @property
    def needs_texts(self) -> bool:
        return self.features in ("tfidf", "both")

    @property
    def needs_embeddings(self) -> bool:
        return self.features in ("embeddings", "both")


# --- the flat head --------------------------------------------------------------------------------------------------
class _FlatHead:
    """A linear layer over [TF-IDF (sparse), embeddings (standardised, scaled)] in torch, on one device.

    scores = X_s @ sparse + ((X_d - mean) / scale) @ dense + bias, with `scale` chosen so that the embedding rows
    have mean norm 1 / embedding_weight (TF-IDF rows have norm 1).
    """

    def __init__(self, n_sparse: int, n_dense: int, n_labels: int, device: str) -> None:
        import torch

        self.device = device
        self.sparse = torch.zeros(n_sparse, n_labels, device=device, requires_grad=True) if n_sparse else None
        self.dense = torch.zeros(n_dense, n_labels, device=device, requires_grad=True) if n_dense else None
        self.bias = torch.zeros(n_labels, device=device, requires_grad=True)
        self.mean = torch.zeros(n_dense, device=device)
        self.scale = torch.ones((), device=device)

    def parameters(self) -> list[Any]:
        return [p for p in (self.sparse, self.dense, self.bias) if p is not None]

    def weights(self) -> list[Any]:
        """The regularised parameters (everything but the bias)."""
        return [p for p in (self.sparse, self.dense) if p is not None]

    def state(self) -> dict[str, Any]:
        out = {"bias": self.bias, "mean": self.mean, "scale": self.scale}
        if self.sparse is not None:
            out["sparse"] = self.sparse
        if self.dense is not None:
            out["dense"] = self.dense
        return {name: tensor.detach().clone() for name, tensor in out.items()}

    def load_state(self, state: dict[str, Any]) -> None:
        for name, tensor in state.items():
            value = tensor.detach().to(self.device).clone()
            if name in ("sparse", "dense", "bias"):
                value.requires_grad_(True)
            setattr(self, name, value)

    def sparse_tensor(self, xs: sp.csr_matrix) -> Any:
        import torch

        coo = xs.tocoo()
        indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        values = torch.from_numpy(coo.data.astype(np.float32))
        return torch.sparse_coo_tensor(
            indices, values, size=coo.shape, device=self.device, check_invariants=False
        ).coalesce()  # (B, F)

    def dense_tensor(self, xd: np.ndarray) -> Any:
        import torch

        return (torch.from_numpy(xd).to(self.device) - self.mean) / self.scale  # (B, D)

    def forward(self, xs_t: Any | None, xd_t: Any | None) -> Any:
        """Scores (B, L) from prepared tensors (see sparse_tensor / dense_tensor)."""
        import torch

        out = self.bias.unsqueeze(0)  # (1, L)
        if self.sparse is not None and xs_t is not None:
            out = out + torch.sparse.mm(xs_t, self.sparse)  # (B, L)
        if self.dense is not None and xd_t is not None:
            out = out + xd_t @ self.dense  # (B, L)
        return out

    def scores(self, xs: sp.csr_matrix | None, xd: np.ndarray | None) -> Any:
        """Raw scores (B, L) for a batch of sparse rows (B, F) and dense rows (B, D)."""
        return self.forward(
            self.sparse_tensor(xs) if xs is not None and self.sparse is not None else None,
            self.dense_tensor(xd) if xd is not None and self.dense is not None else None,
        )


def _loss(scores: Any, targets: Any, loss: str, pos_weight: Any = None) -> Any:
    """Per-document losses (B,): the sum of the L binary cross-entropies, or the ZLPR loss."""
    import torch.nn.functional as F

    from learner.losses import zlpr_loss

    if loss == "zlpr":
        return zlpr_loss(scores, targets, reduction="none")
    entries = F.binary_cross_entropy_with_logits(scores, targets, pos_weight=pos_weight, reduction="none")  # (B, L)
    return entries.sum(dim=1)


def _positive_weights(Y: sp.csr_matrix, power: float) -> np.ndarray | None:
    """(L,) weights of the positive terms: rarer labels count more (power 0: None, every label alike)."""
    if power == 0:
        return None
    positives = np.asarray(Y.sum(axis=0), dtype=np.float64).ravel() + 1.0  # (L,)
    return ((positives.mean() / positives) ** power).astype(np.float32)


def _probabilities(scores: Any, loss: str) -> Any:
    from learner.losses import probabilities

    return probabilities(scores, loss)


def _fit_flat(
    head: _FlatHead,
    xs: sp.csr_matrix | None,
    xd: np.ndarray | None,
    Y: sp.csr_matrix,
    *,
    loss: str,
    C: float,
    max_iter: int,
    positive_weight_power: float = 0.0,
    sample_weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Minimises the weighted mean per-document loss + lambda/2 * ||W||^2 over the whole training set with
    L-BFGS, from the head's current weights (so consecutive fits warm-start). The per-document loss is the sum
    of the L binary cross-entropies (BCE) or the ZLPR loss; lambda = 1 / (C * sum of weights), so C means what it
    means in scikit-learn's logistic regression and a document of weight w counts as w documents (an incremental
    update weighs its replay sample to stand for all the old documents). Keeping the objective on this scale
    matters: L-BFGS's gradient tolerance is absolute. The problem is convex: no learning rate or epochs to tune.
    Returns solver statistics."""
    import torch

    n_docs = Y.shape[0]
    weights_np = np.ones(n_docs, dtype=np.float32) if sample_weight is None else sample_weight.astype(np.float32)
    total = float(weights_np.sum())
    lam = 1.0 / (C * total)
    xs_t = head.sparse_tensor(xs) if xs is not None and head.sparse is not None else None  # (N, F)
    xd_t = head.dense_tensor(xd) if xd is not None and head.dense is not None else None  # (N, D)
    targets = torch.from_numpy(Y.toarray()).to(head.device)  # (N, L)
    doc_weight = torch.from_numpy(weights_np / total).to(head.device)  # (N,) sums to 1
    label_weights = _positive_weights(Y, positive_weight_power) if loss == "bce" else None
    pos_weight = torch.from_numpy(label_weights).to(head.device) if label_weights is not None else None  # (L,)
    optimizer = torch.optim.LBFGS(
        head.parameters(),
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )
    evaluations = 0

    def closure() -> Any:
        nonlocal evaluations
        evaluations += 1
        optimizer.zero_grad(set_to_none=True)
        per_document = _loss(head.forward(xs_t, xd_t), targets, loss, pos_weight)  # (N,)
        objective = (doc_weight * per_document).sum() + 0.5 * lam * sum((w * w).sum() for w in head.weights())
        objective.backward()
        return objective

    final = float(optimizer.step(closure).detach())
    return {"C": C, "objective": final, "evaluations": evaluations}


# --- the model ------------------------------------------------------------------------------------------------------
class FastTier(RuleBasedPredictions):
    """A trained fast-tier model: featurizer, head, calibration and decision rules, label vocabulary.

    ``chunk_cap``: None, or the largest scoring chunk that fit after a CUDA out-of-memory error (runtime state,
    not saved; see ``predict_topk``).
    """

    def __init__(
        self,
        *,
        labels: list[str],
        config: FastTierConfig,
        featurizer: Any | None,
        embedding_dim: int | None,
        flat: _FlatHead | None,
        tree: Any | None,
        platt: tuple[float, float],
        matcher: Any | None = None,
        voter: Any | None = None,
        rules: dict[str, DecisionRule],
        metrics: dict[str, float],
        train_info: dict[str, Any],
        prior: LabelPrior | None = None,
        positives: np.ndarray | None = None,
        tick_curve: dict[str, Any] | None = None,
    ) -> None:
        self.labels = labels
        self.config = config
        self.featurizer = featurizer
        self.embedding_dim = embedding_dim
        self.flat = flat
        self.tree = tree
        self.matcher = matcher
        self.voter = voter  # learner.xmc.neighbours.NeighbourVoter of a tree head, or None
        self.platt = platt
        self.rules = rules
        self.metrics = metrics
        self.train_info = train_info
        self.prior = prior
        self.positives = (
            np.asarray(positives, dtype=np.float32) if positives is not None else np.zeros(len(labels), np.float32)
        )  # (L,) labelled positives per label: the trained head's share of the blend with the prior
        self.tick_curve = tick_curve
        self.chunk_cap: int | None = None

    def __repr__(self) -> str:
        return f"FastTier(head={self.config.head!r}, features={self.config.features!r}, labels={len(self.labels)})"

    # ----------------------------------------------------------------- features
    @property
    def uses_texts(self) -> bool:
        return self.config.needs_texts

    @property
    def uses_embeddings(self) -> bool:
        return self.config.needs_embeddings or self.prior is not None

    def _features(
        self, inputs: Inputs, sparse: sp.csr_matrix | None = None
    ) -> tuple[sp.csr_matrix | None, np.ndarray | None]:
        """(TF-IDF rows, embeddings) of `inputs`, each None where this model does not read it; `sparse`: the TF-IDF
        rows of these texts, already computed (training: ``fit_transform`` tokenises the texts once)."""
        xs = xd = None
        if self.uses_texts and sparse is not None:
            xs = sparse
        elif self.uses_texts:
            if inputs.texts is None:
                raise ValueError("this model reads texts (TF-IDF features): pass Inputs(texts=...)")
            if self.featurizer is None:
                raise ValueError("this model reads texts but has no TF-IDF featurizer (corrupt model folder?)")
            xs = self.featurizer.transform(list(inputs.texts))
        if self.uses_embeddings:
            if inputs.embeddings is None:
                raise ValueError("this model reads embeddings: pass Inputs(embeddings=...)")
            expected = self.embedding_dim if self.config.needs_embeddings else self.prior.dim  # type: ignore[union-attr]
            if inputs.embeddings.shape[1] != expected:
                raise ValueError(
                    f"embeddings have {inputs.embeddings.shape[1]} dimensions; the model was trained on {expected}"
                )
            xd = inputs.embeddings
        return xs, xd

    # ----------------------------------------------------------------- training
    @classmethod
    def train(
        cls,
        inputs: Inputs,
        Y: Any,
        labels: Sequence[str],
        config: FastTierConfig | None = None,
        *,
        validation: tuple[Inputs, Any] | None = None,
        prior: LabelPrior | None = None,
        evidence: Any = None,
        on_progress: Callable[[float], None] | None = None,
        progress: bool = False,
    ) -> FastTier:
        """Trains on `inputs` (N documents) with targets `Y` (N, L) 0/1 over `labels`.

        With a label-name `prior` (``learner.prior.LabelPrior`` holding every label of `labels`), the model blends
        the head's probability of each label with the prior's, p = w_l p_head + (1 - w_l) p_prior, w_l growing
        with the label's positives (``PriorConfig.pseudo_positives``); the prior is recalibrated on the training
        documents, and every prediction then needs the documents' embeddings.

        With `validation` = (inputs, Y), C is chosen from `config.C_grid` and calibration and decision rules are
        tuned on it. Without, when there are at least `config.min_tune_documents`: up to `config.cv_max_documents`
        documents, on out-of-fold predictions of a `config.cv_folds`-fold cross-validation (flat heads; every
        document is used for tuning), above, on a held-out `config.val_fraction`; then the model is refitted on
        all documents with the chosen C. `on_progress(fraction)` reports progress in [0, 1].

        `evidence` (N,) bools: the documents whose out-of-fold or held-out predictions may count towards the pre-tick
        curve (``tick_curve``), e.g. those an adapted encoder never trained on (its embeddings of the others are
        optimistic); None: all of them. Calibration and decision rules still use every document.
        """
        names = label_names(labels)
        config = (config or FastTierConfig()).resolve(len(names))
        n_docs = len(inputs)
        if n_docs < 1:
            raise ValueError("no training documents")
        targets = target_matrix(Y, n_docs, len(names))
        if evidence is not None:
            evidence = np.asarray(evidence)
            if evidence.shape != (n_docs,) or evidence.dtype != bool:
                raise ValueError(f"evidence must be ({n_docs},) booleans; got {evidence.dtype} {evidence.shape}")
        if config.needs_texts and inputs.texts is None:
            raise ValueError(f"features {config.features!r} need the documents' texts")
        if config.needs_embeddings and inputs.embeddings is None:
            raise ValueError(f"features {config.features!r} need the documents' embeddings")
        if prior is not None and config.head == "tree" and not prior.config.blend_trees:
            prior = None  # the prior then serves before the first model only (PriorConfig.blend_trees)
        if prior is not None:
            if inputs.embeddings is None:
                raise ValueError("a label-name prior needs the documents' embeddings")
            prior = prior.subset(names)
            if inputs.embeddings.shape[1] != prior.dim:
                raise ValueError(f"embeddings have {inputs.embeddings.shape[1]} dimensions; the prior {prior.dim}")
        report = on_progress or (lambda fraction: None)
        started = time.monotonic()
        if validation is not None:
            val_inputs, val_y = validation
            val_targets = target_matrix(val_y, len(val_inputs), len(names))
            model = cls._fit(inputs, targets, names, config, val_inputs, val_targets, report, progress, prior=prior)
        elif n_docs >= config.min_tune_documents and n_docs <= config.cv_max_documents and config.head == "flat":
            model = cls._train_cv(inputs, targets, names, config, report, progress, prior=prior, evidence=evidence)
        elif n_docs >= config.min_tune_documents:
            fit_rows, val_rows = split_rows(n_docs, config.val_fraction, config.seed)
            probe = cls._fit(
                inputs.take(fit_rows),
                targets[fit_rows],
                names,
                config,
                inputs.take(val_rows),
                targets[val_rows],
                lambda f: report(0.5 * f),
                progress,
                prior=prior,
            )
            final_config = dataclasses.replace(config, C=probe.config.C)  # the C chosen on the held-out part
            model = cls._fit(
                inputs, targets, names, final_config, None, None, lambda f: report(0.5 + 0.5 * f), progress, prior=prior
            )
            model.platt, model.rules, model.metrics = probe.platt, probe.rules, probe.metrics
            model.tick_curve = probe.tick_curve
            if evidence is not None:  # only the held-out documents that may count
                rows = val_rows[evidence[val_rows]]
                k = min(len(names), config.shortlist)
                idx, raw = np.full((0, k), -1, dtype=np.int64), np.zeros((0, k), dtype=np.float32)
                if len(rows):
                    probe_platt, probe.platt = probe.platt, (1.0, 0.0)  # raw scores, as _tune read them
                    idx, raw = probe.predict_topk(inputs.take(rows), k)
                    probe.platt = probe_platt
                model.tick_curve = calibrated_tick_curve(idx, raw, targets[rows], probe.platt)
            model.train_info["validation_f1_by_C"] = probe.train_info.get("validation_f1_by_C", {})
        else:
            model = cls._fit(inputs, targets, names, config, None, None, report, progress, prior=prior)
        model.train_info["seconds"] = round(time.monotonic() - started, 3)
        model.train_info["n_documents"] = n_docs
        report(1.0)
        return model

    @classmethod
    def _train_cv(
        cls,
        inputs: Inputs,
        targets: sp.csr_matrix,
        names: list[str],
        config: FastTierConfig,
        report: Callable[[float], None],
        progress: bool,
        *,
        prior: LabelPrior | None = None,
        evidence: np.ndarray | None = None,
    ) -> FastTier:
        """Small training sets: k-fold cross-validation gives out-of-fold raw scores of every document for each C
        of the grid (warm-started along the grid inside each fold); C is the one with the best out-of-fold
        micro-F1, calibration and rules are tuned on its out-of-fold scores, and the model is fitted on all
        documents with it."""
        n_docs = len(inputs)
        folds = np.array_split(np.random.default_rng(config.seed).permutation(n_docs), min(config.cv_folds, n_docs))
        k = min(len(names), config.shortlist)
        oof = {
            C: (np.full((n_docs, k), -1, dtype=np.int64), np.zeros((n_docs, k), dtype=np.float32))
            for C in config.C_grid
        }  # per C: (N, k) label indices and raw scores

        for number, held in enumerate(folds):
            held = np.sort(held)
            rest = np.setdiff1d(np.arange(n_docs), held)
            held_inputs = inputs.take(held)

            def keep(C: float, fold: FastTier, held: np.ndarray = held, held_inputs: Inputs = held_inputs) -> None:
                oof[C][0][held], oof[C][1][held] = fold.predict_topk(held_inputs, k)  # untuned: raw scores

            def fold_progress(fraction: float, number: int = number) -> None:
                report(0.8 * (number + fraction) / len(folds))

            cls._fit(
                inputs.take(rest),
                targets[rest],
                names,
                config,
                held_inputs,
                targets[held],
                fold_progress,
                progress,
                tune=False,
                on_grid=keep,
                prior=prior,
            )
        by_C = {
            C: float(tune_rule(idx, raw, targets, objective="micro_f1").validation_score or 0.0)
            for C, (idx, raw) in oof.items()
        }
        best_C = max(by_C, key=lambda C: (by_C[C], -C))  # ties: the more regularised
        model = cls._fit(
            inputs,
            targets,
            names,
            dataclasses.replace(config, C=best_C),
            None,
            None,
            lambda f: report(0.8 + 0.2 * f),
            progress,
            prior=prior,
        )
        model.platt, model.rules, model.metrics = tuned_decision(*oof[best_C], targets, config)
        idx, raw = oof[best_C]
        counted = np.ones(n_docs, dtype=bool) if evidence is None else evidence  # the documents that may count
        model.tick_curve = calibrated_tick_curve(idx[counted], raw[counted], targets[counted], model.platt)
        model.train_info["tuning"] = f"{len(folds)}-fold cross-validation"
        model.train_info["validation_f1_by_C"] = {f"{C:g}": round(score, 5) for C, score in by_C.items()}
        return model

    @classmethod
    def _fit(
        cls,
        inputs: Inputs,
        targets: sp.csr_matrix,
        names: list[str],
        config: FastTierConfig,
        val_inputs: Inputs | None,
        val_targets: sp.csr_matrix | None,
        report: Callable[[float], None],
        progress: bool,
        *,
        tune: bool = True,
        on_grid: Callable[[float, FastTier], None] | None = None,
        prior: LabelPrior | None = None,
    ) -> FastTier:
        from learner.device import resolve_device
        from learner.xmc.config import large_data_settings

        featurizer = fitted = matcher = None
        n_texts = len(inputs.texts or [])
        large_tfidf, large_xr = large_data_settings(n_texts) if config.head == "tree" else ({}, {})
        lexical_weight = config.lexical_weight
        if large_xr and config.lexical_weight > 0:
            lexical_weight = config.large_data_lexical_weight
        if config.needs_texts:
            from learner.features import TfidfConfig, TfidfFeaturizer
            from learner.xmc.solver import ForkedCall

            tfidf = TfidfConfig.from_dict({**TfidfConfig().to_dict(), **large_tfidf, **config.tfidf})
            if config.head == "flat":  # cap the vocabulary so features x labels stays within budget
                cap = max(1000, config.max_flat_cells // len(names))
                if tfidf.max_features > cap:
                    tfidf = dataclasses.replace(tfidf, max_features=cap)
            matcher_call = None
            if config.head == "tree" and lexical_weight > 0:  # the label-name matcher fits beside TF-IDF (2 cores)
                from learner.xmc.lexical import LabelNameMatcher, LexicalConfig

                lexical = LexicalConfig.from_dict({**LexicalConfig().to_dict(), **config.lexical})
                texts = list(inputs.texts or [])
                matcher_call = ForkedCall(LabelNameMatcher.fit, names, texts, targets, lexical, fork=bool(large_xr))
            try:
                featurizer, fitted = TfidfFeaturizer.fit_transform(list(inputs.texts or []), tfidf, progress=progress)
                matcher = matcher_call.result() if matcher_call is not None else None
            finally:
                if matcher_call is not None:
                    matcher_call.stop()
        embedding_dim = (
            int(inputs.embeddings.shape[1]) if config.needs_embeddings and inputs.embeddings is not None else None
        )
        model = cls(
            labels=names,
            config=config,
            featurizer=featurizer,
            embedding_dim=embedding_dim,
            flat=None,
            tree=None,
            platt=(1.0, 0.0),
            rules={"micro_f1": DecisionRule(threshold=0.5, objective="micro_f1")},
            metrics={},
            train_info={"head": config.head, "features": config.features},
            prior=prior.calibrated(inputs.embeddings, targets) if prior is not None else None,
            positives=np.asarray(targets.sum(axis=0), dtype=np.float32).ravel(),
        )
        if model.prior is not None:
            model.train_info["prior"] = {"scale": round(model.prior.scale, 4), "offset": round(model.prior.offset, 4)}
        xs, xd = model._features(inputs, fitted)
        validation = None
        if val_inputs is not None and val_targets is not None:
            vs, vd = model._features(val_inputs)
            validation = (vs, vd, val_targets)
        if config.head == "flat":
            device = resolve_device(config.device)
            head = _FlatHead(xs.shape[1] if xs is not None else 0, embedding_dim or 0, len(names), device)
            cls._initialise(head, xd, targets, config)
            model.flat = head
            grid = config.C_grid if validation is not None else (config.C,)
            tried: dict[str, float] = {}
            best: tuple[float, float, dict[str, Any], dict[str, Any]] | None = None
            for step, C in enumerate(grid):  # ascending C: each fit warm-starts from the more regularised one
                info = _fit_flat(
                    head,
                    xs,
                    xd,
                    targets,
                    loss=config.loss,
                    C=C,
                    max_iter=config.max_iter,
                    positive_weight_power=config.positive_weight_power,
                )
                report(0.9 * (step + 1) / len(grid))
                if validation is None:
                    best = (0.0, C, head.state(), info)
                    break
                if on_grid is not None:  # cross-validation: the caller keeps this C's validation predictions
                    on_grid(C, model)
                    best = (0.0, C, head.state(), info)  # the fold model itself is not used
                    continue
                score = model._validation_f1(*validation)
                tried[f"{C:g}"] = round(score, 5)
                if best is None or score > best[0]:
                    best = (score, C, head.state(), info)
            assert best is not None
            head.load_state(best[2])
            model.config = dataclasses.replace(config, C=best[1])
            model.train_info.update({"C": best[1], "solver": best[3], "device": device, "validation_f1_by_C": tried})
        else:
            from learner.xmc import XRConfig, XRLinear

            xr_config = XRConfig.from_dict({**XRConfig().to_dict(), **large_xr, **config.tree})
            model.tree = XRLinear.train(
                xs, targets, xr_config, on_progress=lambda f: report(0.85 * f), progress=progress
            )
            model.config = dataclasses.replace(model.config, lexical_weight=lexical_weight)
            model.matcher = matcher
            neighbour_weight = config.large_data_neighbour_weight if large_xr else config.neighbour_weight
            model.config = dataclasses.replace(model.config, neighbour_weight=neighbour_weight)
            if neighbour_weight > 0:
                from learner.xmc.neighbours import NeighbourConfig, NeighbourVoter

                neighbours = NeighbourConfig.from_dict({**NeighbourConfig().to_dict(), **config.neighbours})
                model.voter = NeighbourVoter.fit(xs, targets, neighbours)
            model.train_info.update({"device": "cpu", "large_data_settings": bool(large_tfidf or large_xr)})
        if tune and validation is not None and val_targets is not None and val_targets.shape[0] >= 2:
            model._tune(val_inputs, val_targets)  # type: ignore[arg-type]
        return model

    @staticmethod
    def _initialise(head: _FlatHead, xd: np.ndarray | None, targets: sp.csr_matrix, config: FastTierConfig) -> None:
        """Centre the embeddings and scale their rows to mean norm 1 / embedding_weight (TF-IDF rows have norm 1),
        so one C regularises both blocks alike; start each label's bias at its prior log-odds."""
        import torch

        with torch.no_grad():
            if xd is not None and head.dense is not None:
                mean = xd.mean(axis=0)
                norm = float(np.linalg.norm(xd - mean, axis=1).mean()) or 1.0
                head.mean.copy_(torch.from_numpy(mean))
                head.scale.fill_(norm / config.embedding_weight)
            head.bias.copy_(torch.from_numpy(prior_logits(targets, config.loss)))

    def _validation_f1(self, xs: sp.csr_matrix | None, xd: np.ndarray | None, targets: sp.csr_matrix) -> float:
        """micro-F1 on validation at the best global threshold: the score C is chosen by."""
        k = min(len(self.labels), self.config.shortlist)
        idx, probs = self._raw_topk(xs, xd, k)
        return float(tune_rule(idx, probs, targets, objective="micro_f1").validation_score or 0.0)

    def _tune(self, inputs: Inputs, targets: sp.csr_matrix) -> None:
        """Calibration (Platt) and decision rules from validation shortlists; validation metrics."""
        self.platt = (1.0, 0.0)  # predict_topk below then returns raw scores
        idx, raw = self.predict_topk(inputs, min(len(self.labels), self.config.shortlist))
        self.platt, self.rules, self.metrics = tuned_decision(idx, raw, targets, self.config)
        self.tick_curve = calibrated_tick_curve(idx, raw, targets, self.platt)

    # ----------------------------------------------------------------- incremental update
    def update(
        self,
        inputs: Inputs,
        Y: Any,
        labels: Sequence[str],
        *,
        replay: tuple[Inputs, Any] | None = None,
        validation: tuple[Inputs, Any] | None = None,
        max_iter: int | None = None,
        prior: LabelPrior | None = None,
        on_progress: Callable[[float], None] | None = None,
    ) -> FastTier:
        """Continues training from this model on new documents plus a replay sample of old ones.

        A model with a label-name prior keeps it (recalibrated on the update and replay documents); `prior`, the
        prior over `labels`, gives new labels their label-name prior at once (without it they have none).

        `labels` must contain every label of this model (in any order) and may add new ones: their weights start
        at zero (bias at the prior). The previous weights are the solver's starting point and L-BFGS runs
        `config.update_max_iter` iterations (unless `max_iter` is given) on new + replay documents, instead of a
        full fit per C of the grid plus the held-out probe: an update costs a few percent of a full retrain. How
        close it comes to the full retrain depends on the replay: with every old document replayed it refines the
        same objective from an almost optimal start (measured: within 1 point of micro-F1, docs/benchmarks.md);
        with a small sample the old documents' evidence is only kept through the starting point. The TF-IDF
        vocabulary is kept (words first seen now are ignored until a full retrain). The solver sees every
        update document. Calibration and decision rules are re-tuned on `validation` = (inputs, Y) when given;
        otherwise the previous ones are kept (per-label thresholds follow their labels; new labels use the global
        threshold): re-tuning on replayed documents the previous model was fitted on would tune on training data
        (measured: up to 3 points of micro-F1 lost at 1,000 documents). Returns a new model; this one is
        unchanged.

        Tree heads keep their tree, featurizer and cluster layers (``XRLinear.update``): new labels join the leaf
        the beam sends their documents to, and only the classifiers of labels with a positive among the new
        documents are retrained. Their label order is the old one with the new labels appended (not the order
        of `labels`); the label-name matcher learns the new names.
        """
        names, old_to_new = old_label_columns(self.labels, labels)
        if self.tree is not None:
            if prior is not None and not prior.config.blend_trees:
                prior = None
            return self._update_tree(
                inputs, Y, names, replay=replay, validation=validation, prior=prior, on_progress=on_progress
            )
        if self.flat is None:
            raise ValueError("this model has neither a flat nor a tree head")
        import torch

        targets = target_matrix(Y, len(inputs), len(names))
        n_new = len(inputs)
        if replay is not None:
            replay_inputs, replay_y = replay
            replay_targets = target_matrix(replay_y, len(replay_inputs), len(names))

            texts = list(inputs.texts or []) + list(replay_inputs.texts or []) if self.uses_texts else None
            emb = None
            if self.uses_embeddings and inputs.embeddings is not None and replay_inputs.embeddings is not None:
                emb = np.vstack([inputs.embeddings, replay_inputs.embeddings])
            inputs = Inputs(texts=texts, embeddings=emb)
            targets = sp.vstack([targets, replay_targets]).tocsr()
        report = on_progress or (lambda fraction: None)
        started = time.monotonic()
        old_columns = torch.from_numpy(old_to_new)
        head = _FlatHead(
            self.flat.sparse.shape[0] if self.flat.sparse is not None else 0,
            self.flat.dense.shape[0] if self.flat.dense is not None else 0,
            len(names),
            self.flat.device,
        )
        self._initialise(head, None, targets, self.config)  # priors for every label, new ones included
        with torch.no_grad():
            head.mean.copy_(self.flat.mean)
            head.scale.copy_(self.flat.scale)
            head.bias[old_columns] = self.flat.bias.detach()
            if head.sparse is not None and self.flat.sparse is not None:
                head.sparse[:, old_columns] = self.flat.sparse.detach()
            if head.dense is not None and self.flat.dense is not None:
                head.dense[:, old_columns] = self.flat.dense.detach()
        model = FastTier(
            labels=names,
            config=self.config,
            featurizer=self.featurizer,
            embedding_dim=self.embedding_dim,
            flat=head,
            tree=None,
            platt=self.platt,
            rules={name: rule.remapped(old_to_new) for name, rule in self.rules.items()},
            metrics=dict(self.metrics),
            train_info=dict(self.train_info),
            prior=self._updated_prior(names, prior, inputs, targets),
            positives=self._updated_positives(names, targets[:n_new]),
            tick_curve=self.tick_curve,
        )
        xs, xd = model._features(inputs)
        info = _fit_flat(
            head,
            xs,
            xd,
            targets,
            loss=self.config.loss,
            C=self.config.C,
            max_iter=max_iter or self.config.update_max_iter,
            positive_weight_power=self.config.positive_weight_power,
        )
        report(0.9)
        if validation is not None:
            val_inputs, val_y = validation
            model._tune(val_inputs, target_matrix(val_y, len(val_inputs), len(names)))
        model.train_info.update(
            {
                "incremental": True,
                "solver": info,
                "n_documents": int(self.train_info.get("n_documents", 0)) + n_new,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        report(1.0)
        return model

    def _updated_prior(
        self, names: list[str], prior: LabelPrior | None, inputs: Inputs | None, targets: sp.csr_matrix
    ) -> LabelPrior | None:
        """The prior over `names` after an update: the given one, else this model's (new labels without a label
        vector, so without a prior), recalibrated on the update + replay documents when their embeddings are here."""
        if prior is None and self.prior is None:
            return None
        if prior is not None:
            updated = prior.subset(names)
        else:
            assert self.prior is not None
            known = set(self.prior.labels)
            new = [name for name in names if name not in known]
            vectors = np.vstack([self.prior.vectors, np.zeros((len(new), self.prior.dim), dtype=np.float32)])
            updated = self.prior.with_labels(self.prior.labels + new, vectors).subset(names)
        if inputs is not None and inputs.embeddings is not None and len(inputs) == targets.shape[0]:
            updated = updated.calibrated(inputs.embeddings, targets)
        return updated

    def _updated_positives(self, names: list[str], new_targets: sp.csr_matrix) -> np.ndarray:
        """(len(names),) labelled positives per label: this model's counts plus the update documents'."""
        old = dict(zip(self.labels, self.positives.tolist(), strict=True))
        counts = np.array([old.get(name, 0.0) for name in names], dtype=np.float32)
        return counts + np.asarray(new_targets.sum(axis=0), dtype=np.float32).ravel()

    def _update_tree(
        self,
        inputs: Inputs,
        Y: Any,
        names: list[str],
        *,
        replay: tuple[Inputs, Any] | None,
        validation: tuple[Inputs, Any] | None,
        prior: LabelPrior | None = None,
        on_progress: Callable[[float], None] | None,
    ) -> FastTier:
        assert self.tree is not None
        known = set(self.labels)
        ordered = self.labels + [name for name in names if name not in known]  # old order, new labels appended
        column = {name: j for j, name in enumerate(names)}
        to_ordered = np.array([column[name] for name in ordered], dtype=np.int64)  # ordered j -> column of Y
        n_new = len(inputs)
        if n_new < 1:
            raise ValueError("no update documents")
        targets = target_matrix(Y, n_new, len(names))[:, to_ordered]
        texts = list(inputs.texts or [])
        embeddings = inputs.embeddings
        if replay is not None:
            replay_inputs, replay_y = replay
            texts += list(replay_inputs.texts or [])
            if embeddings is not None and replay_inputs.embeddings is not None:
                embeddings = np.vstack([embeddings, replay_inputs.embeddings])
            targets = sp.vstack(
                [targets, target_matrix(replay_y, len(replay_inputs), len(names))[:, to_ordered]]
            ).tocsr()
        if len(texts) != targets.shape[0]:
            raise ValueError("tree models need the texts of every update and replay document")
        report = on_progress or (lambda fraction: None)
        started = time.monotonic()
        assert self.featurizer is not None
        xs = self.featurizer.transform(texts)
        featurize_seconds = time.monotonic() - started
        tree = self.tree.update(xs, targets, new_rows=np.arange(n_new), on_progress=lambda f: report(0.9 * f))
        matcher = self.matcher
        if matcher is not None and len(ordered) > len(self.labels):
            matcher = matcher.with_labels(ordered[len(self.labels) :], texts, targets[:, len(self.labels) :])
        voter = self.voter
        if voter is not None:  # the update documents join the index (replayed ones are in it already)
            voter = voter.with_documents(xs[:n_new], targets[:n_new])
        model = FastTier(
            labels=ordered,
            config=self.config,
            featurizer=self.featurizer,
            embedding_dim=self.embedding_dim,
            flat=None,
            tree=tree,
            matcher=matcher,
            voter=voter,
            platt=self.platt,
            rules=dict(self.rules),  # old labels keep their indices
            metrics=dict(self.metrics),
            train_info=dict(self.train_info),
            prior=self._updated_prior(
                ordered, prior, Inputs(texts=texts, embeddings=embeddings) if embeddings is not None else None, targets
            ),
            positives=self._updated_positives(ordered, targets[:n_new]),
            tick_curve=self.tick_curve,
        )
        if validation is not None:
            val_inputs, val_y = validation
            val_targets = target_matrix(val_y, len(val_inputs), len(names))[:, to_ordered]
            model._tune(val_inputs, val_targets)
        model.train_info.update(
            {
                "incremental": True,
                "n_documents": int(self.train_info.get("n_documents", 0)) + n_new,
                "retrained_labels": int(tree.train_info.get("update_retrained_labels", 0)),
                "featurize_seconds": round(featurize_seconds, 3),
                **{key: value for key, value in tree.train_info.items() if key.startswith("update_")},
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        report(1.0)
        return model

    # ----------------------------------------------------------------- prediction
    def _raw_topk(
        self, xs: sp.csr_matrix | None, xd: np.ndarray | None, k: int, texts: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.prior is not None:
            if xd is None:
                raise ValueError("this model blends a label-name prior: pass the documents' embeddings")
            return self._blended_topk(xs, xd, k, texts)
        return self._head_topk(xs, xd, k, texts)

    def _blended_topk(
        self, xs: sp.csr_matrix | None, xd: np.ndarray, k: int, texts: Sequence[str] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The head's probabilities blended with the label-name prior's, label by label:
        p = w_l p_head + (1 - w_l) p_prior, w_l = n_l / (n_l + pseudo_positives). Flat heads blend every label;
        tree heads blend the union of their shortlist and the prior's `candidates` best labels (a label outside
        the tree's shortlist has head probability 0) with one weight for every label, ``PriorConfig.tree_weight``."""
        assert self.prior is not None
        if self.flat is not None:
            weights = self.prior.weights(self.positives)  # (L,)
            import torch

            with torch.inference_mode():
                head = _probabilities(self.flat.scores(xs, xd), self.config.loss).cpu().numpy()  # (C, L)
            blended = weights * head + (1.0 - weights) * self.prior.dense(xd)  # (C, L)
            idx, values = topk_rows(blended, k)
            return idx, values.astype(np.float32)
        wide = max(k, min(self.config.lexical_candidates, len(self.labels)))
        tree_idx, tree_p = self._head_topk(xs, xd, wide, texts)  # (C, W)
        prior_idx, _ = self.prior.topk_cosines(xd, self.prior.config.candidates)  # (C, P)
        duplicate = (prior_idx[:, :, None] == tree_idx[:, None, :]).any(axis=2)  # (C, P)
        candidates = np.hstack([tree_idx, np.where(duplicate, -1, prior_idx)])  # (C, W + P)
        head = np.hstack([tree_p, np.zeros(prior_idx.shape, dtype=np.float32)])
        prior = self.prior.probabilities(self.prior.similarities(xd, candidates))
        w = np.float32(self.prior.config.tree_weight)
        blended = np.where(candidates >= 0, w * head + (1.0 - w) * prior, -1.0)  # (C, W + P)
        order = np.argsort(-blended, axis=1, kind="stable")[:, :k]
        idx = np.take_along_axis(candidates, order, axis=1)
        probs = np.clip(np.take_along_axis(blended, order, axis=1), 0.0, 1.0).astype(np.float32)
        return idx, np.where(idx >= 0, probs, np.float32(0.0))

    def _head_topk(
        self, xs: sp.csr_matrix | None, xd: np.ndarray | None, k: int, texts: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.tree is not None:
            lexical = self.matcher is not None and texts is not None and self.config.lexical_weight > 0
            neighbours = self.voter is not None and self.config.neighbour_weight > 0
            if not lexical and not neighbours:
                return self.tree.predict_topk(xs, k)
            from learner.xmc.lexical import blend_topk

            wide = max(k, min(self.config.lexical_candidates, len(self.labels)))
            idx, raw = self.tree.predict_topk(xs, wide)  # (C, wide)
            # (tree + w_lex * names + w_nn * neighbours) / (1 + w_lex + w_nn), over the union of their candidates
            w_lex = self.config.lexical_weight if lexical else 0.0
            w_nn = self.config.neighbour_weight if neighbours else 0.0
            extra = sp.csr_matrix((len(idx), len(self.labels)), dtype=np.float32)
            if lexical and self.matcher is not None:
                extra = extra + (w_lex / (w_lex + w_nn)) * self.matcher.score(list(texts or []))
            if neighbours and self.voter is not None:
                extra = extra + (w_nn / (w_lex + w_nn)) * self.voter.score(xs)
            return blend_topk(idx, raw, extra, w_lex + w_nn, k)
        import torch

        assert self.flat is not None
        with torch.inference_mode():
            scores = self.flat.scores(xs, xd)  # (C, L)
            top, index = torch.topk(scores, k, dim=1)
            return index.cpu().numpy().astype(np.int64), _probabilities(top, self.config.loss).cpu().numpy()

    def predict_topk(self, inputs: Inputs, k: int, *, chunk_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """The k best labels per document: (N, k) int64 indices and (N, k) float32 calibrated probabilities,
        best first. Streams `chunk_size` documents at a time (never an N x L matrix for trees).

        A chunk whose scores run out of GPU memory (the flat head on CUDA) is retried with half as many
        documents; the smaller size is kept, in ``chunk_cap``, for the rest of the call and later calls."""
        check_positive_int(k)
        k = min(int(k), len(self.labels))
        out_idx: list[np.ndarray] = []
        out_p: list[np.ndarray] = []

        def score(start: int, stop: int) -> None:
            part = inputs.take(np.arange(start, stop))
            xs, xd = self._features(part)
            idx, raw = self._raw_topk(xs, xd, k, part.texts)
            out_idx.append(idx)
            out_p.append(apply_platt(raw, *self.platt))

        size = chunk_size if self.chunk_cap is None else min(chunk_size, self.chunk_cap)
        used = run_batches(len(inputs), size, score, what="scoring chunk")
        if used < size:
            self.chunk_cap = used
        if not out_idx:
            return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
        return np.concatenate(out_idx), np.concatenate(out_p)

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Writes a self-describing folder atomically (temp folder + rename)."""
        payload = {**model_header(self, FORMAT, FORMAT_VERSION, "torch"), "embedding_dim": self.embedding_dim}

        def write(tmp: Path) -> None:
            if self.featurizer is not None:
                self.featurizer.save(tmp / "tfidf")
            if self.tree is not None:
                self.tree.save(tmp / "tree")
            if self.matcher is not None:
                self.matcher.save(tmp / "lexical")
            if self.voter is not None:
                self.voter.save(tmp / "neighbours")
            if self.prior is not None:
                self.prior.save(tmp / "prior")
            np.save(tmp / "positives.npy", self.positives, allow_pickle=False)
            if self.flat is not None:
                from safetensors.torch import save_file

                save_file(
                    {n: t.cpu().contiguous() for n, t in self.flat.state().items()}, str(tmp / "flat.safetensors")
                )
            write_json(tmp / CONFIG_FILE, payload, indent=2, sort_keys=True)

        return write_folder(directory, write)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, device: str = "auto") -> FastTier:
        folder = Path(directory)
        payload, config, labels, platt, rules = read_model_header(
            folder, CONFIG_FILE, FORMAT, FORMAT_VERSION, FastTierConfig, "fast-tier"
        )
        prior = LabelPrior.load(folder / "prior") if (folder / "prior").is_dir() else None
        positives = None
        if (folder / "positives.npy").is_file():
            positives = np.load(folder / "positives.npy", allow_pickle=False)
            if positives.shape != (len(labels),):
                raise ValueError(f"corrupt fast-tier model {folder}: positives.npy does not match the labels")
        featurizer = tree = flat = None
        if config.needs_texts:
            from learner.features import TfidfFeaturizer

            featurizer = TfidfFeaturizer.load(folder / "tfidf")
        matcher = voter = None
        if config.head == "tree":
            from learner.xmc import XRLinear

            tree = XRLinear.load(folder / "tree")
            if (folder / "lexical").is_dir():
                from learner.xmc.lexical import LabelNameMatcher

                matcher = LabelNameMatcher.load(folder / "lexical")
            if (folder / "neighbours").is_dir():
                from learner.xmc.neighbours import NeighbourVoter

                voter = NeighbourVoter.load(folder / "neighbours")
        else:
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            from learner.device import resolve_device

            resolved = resolve_device(device)
            try:
                state = load_file(str(folder / "flat.safetensors"), device="cpu")
            except (OSError, SafetensorError) as exc:
                raise ValueError(f"corrupt fast-tier weights in {folder}: {exc}") from exc
            n_sparse = int(state["sparse"].shape[0]) if "sparse" in state else 0
            n_dense = int(state["dense"].shape[0]) if "dense" in state else 0
            flat = _FlatHead(n_sparse, n_dense, len(labels), resolved)
            flat.load_state(state)
        return cls(
            labels=labels,
            config=config,
            featurizer=featurizer,
            embedding_dim=payload.get("embedding_dim"),
            flat=flat,
            tree=tree,
            platt=platt,
            matcher=matcher,
            voter=voter,
            rules=rules,
            metrics=payload.get("metrics") or {},
            train_info=payload.get("train_info") or {},
            prior=prior,
            positives=positives,
            tick_curve=payload["decision"].get("tick_curve"),
        )
