"""The full tier: fine-tunes the transformer encoder together with a multi-label head (GPU, CPU fallback).

Same interface as the fast tier (``learner.fast``)::

    model = FullTier.train(Inputs(texts=...), Y, labels, FullTierConfig(), validation=None)
    model.save(folder); model = FullTier.load(folder)
    idx, probs = model.predict_topk(Inputs(texts=...), k)        # (N, k) label indices, calibrated probabilities
    Y_hat = model.predict(Inputs(texts=...), objective="micro_f1")  # (N, L) 0/1 by the tuned decision rule
    vectors = model.embed(texts)                                 # (N, H) the fine-tuned encoder's embeddings
    model = model.update(Inputs(texts=...), Y_new, labels, replay=(old_inputs, Y_old))

- Encoder: a local Hugging Face model (default: the bundled all-MiniLM-L6-v2, sha256-checked by
  ``learner.encoder``); a document's features are its mean-pooled last hidden states, L2-normalised and scaled by
  sqrt(H) (``embed`` returns them without that scale: the vectors the fast tier reads).
- Head ``flat`` (up to ``flat_max_labels`` labels): one linear layer over all labels, bias started at each label's
  prior. Head ``tree`` (XR-Transformer, SCIENCE.md §2): a label tree of balanced spherical 2-means on PIFA label
  features (``learner.xmc.tree``); one linear layer per tree level, trained coarse to fine: stage t adds level t,
  whose rows start as copies of their parent's (bootstrapping), and trains levels 0..t jointly with the encoder.
  Level 0 is scored whole; below it only the children of the document's true parents and of the beam of the
  level above (teacher forcing + matcher-aware hard negatives). Inference is beam search; a label's score is the
  product of the probabilities down its path, so prediction costs O(depth * beam * branching) per document.
- Head ``aplc`` (APLC-XLNet, SCIENCE.md §2; only when asked for): the labels sorted by training frequency are cut
  into a head cluster and tail clusters at ``aplc_cutoffs`` (fractions of the labels, or of the training
  positives with ``aplc_cutoff_by="frequency"``). The head layer scores the head labels plus one gate per tail
  cluster; tail cluster i reads relu(LayerNorm(P_i x)), P_i projecting the H features to H // aplc_dim_factor**i
  dims (as in the public APLC-XLNet code), and scores its labels. p(tail label) = sigmoid(gate_i) * sigmoid(s):
  p(cluster) * p(label | cluster). The loss is that factorisation's likelihood: BCE (or ZLPR) on every head-layer
  output, gates included (target: the document has a label in the cluster), plus the loss of a tail cluster's
  labels on the documents whose gate target is 1 only - tail clusters are not evaluated for the others, which is
  where APLC saves compute. (The public code instead puts BCE on the product for those documents and the gate's
  BCE only on the others.) Prediction scores every label; the probabilities feed calibration like any head's.
- Training: AdamW (separate learning rates for encoder and head; no decay on biases and LayerNorm), linear warmup
  and decay, gradient accumulation and clipping, bf16 autocast on CUDA (``precision``), deterministic on CPU for a
  seed, an optional wall-time budget. BCE (summed over the scored labels) or ZLPR (``learner.losses``).
- Decision rule and calibration as in the fast tier (``learner.decision``): Platt scaling fitted on validation
  shortlists, global thresholds tuned for micro-F1 and macro-F1 (with or without an at-least-one fallback) and
  per-label thresholds where validation has enough positives. Without a validation set, ``val_fraction`` of the
  documents is held out for this and not trained on (fine-tuning twice would double the GPU cost).
- Scoring streams documents in chunks (longest texts together), with at most ``max_score_cells`` floats of scores
  (document x candidate, plus a tree's gathered weight rows) alive at once, so no dense documents x labels matrix
  is built for a pool.

torch and transformers are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
import hashlib
import itertools
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from learner.config import LOSSES, _check_device, _check_float, _check_int, _from_dict
from learner.decision import DecisionRule, RuleBasedPredictions, apply_platt, tune_decision
from learner.device import retry_on_oom, run_batches
from learner.fast import Inputs, _labels, _prior_logits, _split, _targets, _versions
from learner.files import publish_folder

__all__ = ["FullTier", "FullTierConfig", "Inputs"]

logger = logging.getLogger(__name__)

HEADS = ("auto", "flat", "tree", "aplc")
PRECISIONS = ("auto", "bf16", "fp32")
TREE_FEATURES = ("tfidf", "encoder")
APLC_CUTOFF_BY = ("labels", "frequency")
FORMAT = "learner.FullTier"
FORMAT_VERSION = 1
CONFIG_FILE = "full_tier.json"
HEAD_FILE = "head.safetensors"
ENCODER_DIR = "encoder"
WEIGHTS_FILE = "model.safetensors"


# --- config ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FullTierConfig:
    """Settings of the full tier. ``resolve(n_labels)`` turns ``head="auto"`` into "flat" or "tree"; "aplc" is
    only used when asked for.

    ``device`` and ``precision`` stay as given ("auto" = CUDA with bf16 autocast when present, else CPU with
    fp32): they are resolved on the machine that trains and recorded in ``train_info``.
    """

    encoder: str | None = None  # local Hugging Face model folder; None: the bundled all-MiniLM-L6-v2
    max_length: int = 128  # tokens per document
    epochs: int = 3  # epochs of the last stage (the whole flat head, or every tree level)
    coarse_epochs: int = 1  # epochs of each earlier (coarse) stage of a tree head
    update_epochs: int = 1  # epochs of an incremental update
    batch_size: int = 32  # documents per forward pass
    grad_accumulation: int = 1  # forward passes per optimizer step
    lr_encoder: float = 5e-5  # 0: the encoder stays frozen (only the head trains)
    lr_head: float = 1e-3
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0  # 0: no clipping
    loss: str = "bce"
    precision: str = "auto"
    device: str = "auto"
    head: str = "auto"
    flat_max_labels: int = 2000
    tree: dict[str, Any] = field(default_factory=dict)  # learner.xmc.TreeConfig fields to override
    tree_features: str = "tfidf"  # PIFA label features: TF-IDF of the texts, or the frozen encoder's embeddings
    beam: int = 10  # tree nodes kept per level, in training (hard negatives) and inference
    aplc_cutoffs: tuple[float, ...] = (0.2, 0.5)  # APLC cluster boundaries in (0, 1), increasing: k -> k + 1 clusters
    aplc_cutoff_by: str = "labels"  # the cutoffs are fractions of the labels, or ("frequency") of training positives
    aplc_dim_factor: float = 2.0  # APLC tail cluster i = 1, 2, ... projects the H features to H // factor**i dims
    val_fraction: float = 0.1
    min_tune_documents: int = 50  # below this, no held-out tuning: threshold 0.5, no calibration
    calibrate: bool = True
    per_label_min_positives: int = 20
    shortlist: int = 100  # candidates per document used for tuning and calibration (and by predict)
    seed: int = 0
    max_train_seconds: float | None = None  # wall-time budget of the optimisation; None: no limit
    predict_batch_size: int = 128  # documents per forward pass when scoring or embedding
    max_score_cells: int = 67_108_864  # floats of scores (and a tree's gathered weight rows) alive when scoring

    def __post_init__(self) -> None:
        if self.encoder is not None and (not isinstance(self.encoder, str) or not self.encoder.strip()):
            raise ValueError(f"encoder must be None (the bundled model) or a folder path; got {self.encoder!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}; got {self.head!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.tree_features not in TREE_FEATURES:
            raise ValueError(f"tree_features must be one of {', '.join(TREE_FEATURES)}; got {self.tree_features!r}")
        if self.aplc_cutoff_by not in APLC_CUTOFF_BY:
            raise ValueError(f"aplc_cutoff_by must be one of {', '.join(APLC_CUTOFF_BY)}; got {self.aplc_cutoff_by!r}")
        object.__setattr__(self, "aplc_cutoffs", _check_cutoffs(self.aplc_cutoffs))
        _check_float(self, "aplc_dim_factor", 1.0, float("inf"), low_open=False, high_open=True)
        _check_device(self.device)
        for name, minimum in (
            ("max_length", 2),
            ("epochs", 1),
            ("coarse_epochs", 1),
            ("update_epochs", 1),
            ("batch_size", 1),
            ("grad_accumulation", 1),
            ("flat_max_labels", 1),
            ("beam", 1),
            ("min_tune_documents", 2),
            ("per_label_min_positives", 1),
            ("shortlist", 1),
            ("seed", 0),
            ("predict_batch_size", 1),
            ("max_score_cells", 1),
        ):
            _check_int(name, getattr(self, name), minimum)
        _check_float(self, "lr_encoder", 0.0, 1.0, low_open=False, high_open=False)
        _check_float(self, "lr_head", 0.0, 10.0, low_open=True, high_open=False)
        _check_float(self, "warmup_fraction", 0.0, 1.0, low_open=False, high_open=True)
        _check_float(self, "weight_decay", 0.0, 10.0, low_open=False, high_open=False)
        _check_float(self, "max_grad_norm", 0.0, float("inf"), low_open=False, high_open=True)
        _check_float(self, "val_fraction", 0.0, 0.5, low_open=True, high_open=False)
        if self.max_train_seconds is not None:
            _check_float(self, "max_train_seconds", 0.0, float("inf"), low_open=True, high_open=True)
        if not isinstance(self.calibrate, bool):
            raise ValueError(f"calibrate must be a bool; got {self.calibrate!r}")
        if not isinstance(self.tree, dict):
            raise ValueError(f"tree must be a dict of learner.xmc.TreeConfig settings; got {self.tree!r}")
        self.tree_config()  # unknown keys or bad values raise here, not after the encoder has loaded

    def tree_config(self) -> Any:
        """The ``learner.xmc.TreeConfig`` of the label tree (defaults overridden by ``tree``)."""
        from learner.xmc.config import TreeConfig

        return TreeConfig.from_dict({**TreeConfig().to_dict(), **self.tree})

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "aplc_cutoffs": list(self.aplc_cutoffs)}

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        return _from_dict(cls, data)

    def resolve(self, n_labels: int) -> FullTierConfig:
        """The concrete `head` for a label set of `n_labels` labels: flat up to `flat_max_labels`, else tree (an
        explicit head, "aplc" included, is kept)."""
        head = self.head
        if head == "auto":
            head = "flat" if n_labels <= self.flat_max_labels else "tree"
        return dataclasses.replace(self, head=head)

    @property
    def features(self) -> str:
        """What the head reads: the fine-tuned encoder's pooled output (for reports; not a setting)."""
        return "encoder"

    @property
    def needs_texts(self) -> bool:
        return True

    @property
    def needs_embeddings(self) -> bool:
        return False


def _check_cutoffs(value: Any) -> tuple[float, ...]:
    """``aplc_cutoffs`` as a tuple of floats; ValueError unless a non-empty, strictly increasing sequence in (0, 1)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(f"aplc_cutoffs must be a list of numbers in (0, 1); got {value!r}")
    for cutoff in value:
        if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) or not 0.0 < float(cutoff) < 1.0:
            raise ValueError(f"aplc_cutoffs must be numbers in (0, 1); got {value!r}")
    cutoffs = tuple(float(cutoff) for cutoff in value)
    if not cutoffs:
        raise ValueError("aplc_cutoffs must hold at least one cutoff (one cluster is the flat head)")
    if any(later <= earlier for earlier, later in itertools.pairwise(cutoffs)):
        raise ValueError(f"aplc_cutoffs must be strictly increasing; got {list(cutoffs)}")
    return cutoffs


# --- the head -------------------------------------------------------------------------------------------------------
def _tree_parents(tree: Any) -> list[np.ndarray]:
    """Per layer of a ``learner.xmc.LabelTree``, (n_t,) the parent of each node in layer t - 1 (layer 0: the root,
    0). Nodes of the last layer are label ids."""
    return [matrix.tocsr().indices.astype(np.int64) for matrix in tree.matrices()]  # one parent per row


def _ancestors(parents: list[np.ndarray]) -> list[np.ndarray]:
    """Per layer, (L,) the ancestor node of each label in that layer (the last layer: the label itself)."""
    out = [np.arange(len(parents[-1]), dtype=np.int64)]
    for layer in range(len(parents) - 1, 0, -1):
        out.insert(0, parents[layer][out[0]])
    return out


def _children_table(parent: np.ndarray, n_parents: int) -> np.ndarray:
    """(n_parents, C) the children of each parent, padded with -1 (C = the largest number of children)."""
    counts = np.bincount(parent, minlength=n_parents)  # (P,)
    table = np.full((n_parents, max(1, int(counts.max(initial=0)))), -1, dtype=np.int64)
    ordered = np.argsort(parent, kind="stable")  # children grouped by parent
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # (P,)
    slots = np.arange(len(parent)) - starts[parent[ordered]]
    table[parent[ordered], slots] = ordered
    return table


class _Head:
    """One linear layer per level: weights[t] (n_t, H), biases[t] (n_t,), on one device.

    A flat head has one layer over the labels. A tree head's layers are its levels, top first; the last one scores
    the labels (rows indexed by label id), and ``parents[t]`` (n_t,) links each node of layer t to its parent in
    layer t - 1. Scores of layer t are ``features @ weights[t].T + biases[t]``.
    """

    def __init__(self, weights: list[Any], biases: list[Any], parents: list[np.ndarray], loss: str) -> None:
        import torch

        if not weights or len(weights) != len(biases) or len(weights) != len(parents):
            raise ValueError("a head needs as many weight matrices, bias vectors and parent arrays as layers")
        self.weights = weights
        self.biases = biases
        self.parents = [np.asarray(parent, dtype=np.int64) for parent in parents]
        self.loss = loss
        device = weights[0].device
        self.children: list[Any] = [None]  # layer t >= 1: (n_{t-1}, C_t) long tensor, -1 padded
        for layer in range(1, len(weights)):
            table = _children_table(self.parents[layer], int(weights[layer - 1].shape[0]))
            self.children.append(torch.from_numpy(table).to(device))
        for layer, weight in enumerate(weights):
            if weight.shape[0] != len(self.parents[layer]) or biases[layer].shape != (weight.shape[0],):
                raise ValueError(f"head layer {layer}: weights {tuple(weight.shape)} do not match its nodes")

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def sizes(self) -> list[int]:
        return [int(weight.shape[0]) for weight in self.weights]

    @property
    def dim(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def n_labels(self) -> int:
        return self.sizes[-1]

    def tensors(self) -> list[Any]:
        """Every trainable tensor of the head."""
        return [*self.weights, *self.biases]

    def parameter_groups(self, upto: int) -> tuple[list[Any], list[Any]]:
        """The tensors of layers 0..upto: (weight matrices, which take weight decay; biases, which do not)."""
        return self.weights[: upto + 1], self.biases[: upto + 1]

    def ancestors(self) -> list[np.ndarray]:
        """Per layer, (L,) the ancestor node of each label in that layer (the last layer: the label itself)."""
        return _ancestors(self.parents)

    def cells(self, beam: int) -> int:
        """Floats alive per document while scoring: the scores of all of layer 0, or in a deeper layer the scores
        of a beam's children and their gathered weight rows (H floats each)."""
        dim = int(self.weights[0].shape[1])
        widths = [self.sizes[0]] + [beam * int(table.shape[1]) * (dim + 1) for table in self.children[1:]]
        return max(widths)

    def state(self) -> dict[str, Any]:
        import torch

        out: dict[str, Any] = {}
        for layer in range(self.n_layers):
            out[f"weight_{layer}"] = self.weights[layer].detach().cpu().contiguous()
            out[f"bias_{layer}"] = self.biases[layer].detach().cpu().contiguous()
            out[f"parent_{layer}"] = torch.from_numpy(self.parents[layer].copy())
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any], loss: str, device: str) -> _Head:
        layers = sum(1 for name in state if name.startswith("weight_"))
        weights, biases, parents = [], [], []
        for layer in range(layers):
            weights.append(state[f"weight_{layer}"].float().to(device).requires_grad_(True))
            biases.append(state[f"bias_{layer}"].float().to(device).requires_grad_(True))
            parents.append(state[f"parent_{layer}"].cpu().numpy().astype(np.int64))
        return cls(weights, biases, parents, loss)

    # ----------------------------------------------------------------- scoring
    def dense(self, feats: Any, layer: int) -> Any:
        """Scores (B, n_t) of every node of `layer` for features (B, H)."""
        return feats @ self.weights[layer].T + self.biases[layer]  # (B, n_t)

    def at(self, feats: Any, layer: int, nodes: Any) -> Any:
        """Scores (B, S) of the nodes (B, S) of `layer` (-1 padding gets an arbitrary score: mask it)."""
        import torch

        safe = nodes.clamp(min=0)  # (B, S)
        rows = self.weights[layer][safe]  # (B, S, H)
        return torch.bmm(rows, feats.unsqueeze(2).to(rows.dtype)).squeeze(2) + self.biases[layer][safe]  # (B, S)

    def search(self, feats: Any, beam: int, k: int, upto: int | None = None) -> list[tuple[Any, Any]]:
        """Beam search from the top: per layer 0..upto, (B, K_t) node ids (-1: no node) and path probabilities
        (-1 for no node), best first. Layers above the last keep `beam` nodes, the last layer keeps `k`.

        A node's path probability is its parent's times its own (sigmoid(s), or sigmoid(2s) for ZLPR).
        """
        import torch

        from learner.losses import probabilities

        last = self.n_layers - 1 if upto is None else upto
        width = k if self.n_layers == 1 else beam
        probs = probabilities(self.dense(feats, 0).float(), self.loss)  # (B, n_0)
        path, nodes = probs.topk(min(width, probs.shape[1]), dim=1)  # (B, K)
        out = [(nodes, path)]
        for layer in range(1, last + 1):
            children = self.children[layer][nodes.clamp(min=0)]  # (B, K, C)
            valid = (children >= 0) & (nodes >= 0).unsqueeze(2)  # (B, K, C)
            candidates = children.flatten(1)  # (B, K * C)
            valid = valid.flatten(1)
            own = probabilities(self.at(feats, layer, candidates).float(), self.loss)  # (B, K * C)
            parent = path.unsqueeze(2).expand(-1, -1, children.shape[2]).flatten(1)  # (B, K * C)
            scores = torch.where(valid, parent * own, torch.full_like(own, -1.0))  # (B, K * C)
            width = k if layer == self.n_layers - 1 else beam
            path, position = scores.topk(min(width, scores.shape[1]), dim=1)  # (B, K')
            nodes = torch.where(path >= 0, candidates.gather(1, position), torch.full_like(position, -1))
            out.append((nodes, path))
        return out


def _layer_targets(targets: sp.csr_matrix, parents: list[np.ndarray]) -> list[sp.csr_matrix]:
    """Per layer of a head with these parent arrays, (N, n_t) 0/1: whether the document has a label under each
    node."""
    out = []
    n_labels = targets.shape[1]
    for ancestor, parent in zip(_ancestors(parents), parents, strict=True):
        n_nodes = len(parent)
        if n_nodes == n_labels and np.array_equal(ancestor, np.arange(n_labels)):
            out.append(targets)
            continue
        assign = sp.csr_matrix(
            (np.ones(n_labels, dtype=np.float32), (np.arange(n_labels), ancestor)), shape=(n_labels, n_nodes)
        )  # (L, n_t)
        layer = (targets @ assign).tocsr()  # (N, n_t)
        layer.data[:] = 1.0
        out.append(layer)
    return out


def _batch_loss(scores: Any, targets: Any, mask: Any | None, loss: str) -> Any:
    """Mean over documents of the per-document loss on the scored entries: the summed binary cross-entropies, or
    ZLPR. scores, targets (B, S) float32; mask (B, S) bool (None: every entry counts)."""
    import torch
    import torch.nn.functional as F

    from learner.losses import zlpr_loss

    if loss == "zlpr":
        return zlpr_loss(scores, targets, mask, reduction="none").mean()
    entries = F.binary_cross_entropy_with_logits(scores, targets, reduction="none")  # (B, S)
    if mask is not None:
        entries = torch.where(mask, entries, torch.zeros_like(entries))
    return entries.sum(dim=1).mean()


# --- the APLC head --------------------------------------------------------------------------------------------------
def _aplc_clusters(targets: sp.csr_matrix, cutoffs: Sequence[float], by: str) -> list[np.ndarray]:
    """The label ids of each APLC cluster, [head, tail 1, tail 2, ...], from the labels sorted by their number of
    positives in `targets` (N, L) (most frequent first, ties by label id).

    A cutoff c ends a cluster after the first ceil(c * L) labels (`by` = "labels") or after the fewest labels that
    hold at least a share c of the positives ("frequency"). Cutoffs that would leave a cluster empty are dropped,
    so a small label set can get fewer clusters than cutoffs + 1 (one label: only the head cluster)."""
    counts = np.asarray(targets.sum(axis=0)).ravel()  # (L,)
    n_labels = len(counts)
    order = np.argsort(-counts, kind="stable")  # (L,) most frequent first
    if by == "labels":
        bounds = [math.ceil(cutoff * n_labels - 1e-9) for cutoff in cutoffs]
    else:
        share = np.cumsum(counts[order]) / max(float(counts.sum()), 1.0)  # (L,)
        bounds = [int(np.searchsorted(share, cutoff - 1e-12, side="left")) + 1 for cutoff in cutoffs]
    edges = sorted({bound for bound in bounds if 1 <= bound <= n_labels - 1})
    return [order[start:stop] for start, stop in zip([0, *edges], [*edges, n_labels], strict=True)]


def _cluster_hits(targets: sp.csr_matrix, members: Sequence[np.ndarray]) -> np.ndarray:
    """(N, C) float32: 1 where the document has a label in cluster c (an APLC gate's target)."""
    out = np.zeros((targets.shape[0], len(members)), dtype=np.float32)
    for column, labels in enumerate(members):
        out[:, column] = targets[:, labels].getnnz(axis=1) > 0
    return out


class _AplcHead:
    """APLC-XLNet's adaptive probabilistic label clusters (SCIENCE.md §2), on one device.

    ``members[0]`` are the head cluster's label ids, ``members[i]`` (i >= 1) tail cluster i's, each in the order of
    its output rows. The head layer scores the head labels and one gate per tail cluster: ``head_weight``
    (n_0 + T, H), ``head_bias`` (n_0 + T,). Tail cluster i reads relu(LayerNorm(P_i x)) with the projection P_i
    (d_i, H), no bias, as in the public APLC-XLNet code; its labels' scores are ``out_weight[i-1]`` (n_i, d_i) and
    ``out_bias[i-1]`` (n_i,). A head label's probability is sigmoid(s); a tail label's is sigmoid(gate_i) *
    sigmoid(s): p(cluster) * p(label | cluster) (sigmoid(2s) for ZLPR, as everywhere in this module).
    """

    def __init__(
        self,
        members: list[np.ndarray],
        head_weight: Any,
        head_bias: Any,
        tails: list[tuple[Any, Any, Any, Any, Any]],
        loss: str,
    ) -> None:
        import torch

        self.members = [np.asarray(labels, dtype=np.int64) for labels in members]
        self.head_weight = head_weight
        self.head_bias = head_bias
        self.projections = [tail[0] for tail in tails]  # (d_i, H) each
        self.norm_weights = [tail[1] for tail in tails]  # (d_i,)
        self.norm_biases = [tail[2] for tail in tails]  # (d_i,)
        self.out_weights = [tail[3] for tail in tails]  # (n_i, d_i)
        self.out_biases = [tail[4] for tail in tails]  # (n_i,)
        self.loss = loss
        n_labels = sum(len(labels) for labels in self.members)
        every = np.concatenate(self.members) if self.members else np.empty(0, dtype=np.int64)
        if not self.members or len(self.members[0]) == 0 or not np.array_equal(np.sort(every), np.arange(n_labels)):
            raise ValueError("the APLC clusters must hold every label exactly once, the head cluster at least one")
        if len(tails) != len(self.members) - 1:
            raise ValueError(f"{len(self.members) - 1} APLC tail clusters need as many tail layers; got {len(tails)}")
        if tuple(head_weight.shape) != (len(self.members[0]) + len(tails), head_weight.shape[1]) or tuple(
            head_bias.shape
        ) != (head_weight.shape[0],):
            raise ValueError(f"APLC head layer {tuple(head_weight.shape)} does not match its labels and gates")
        dim = int(head_weight.shape[1])
        for i, (projection, norm_weight, norm_bias, out_weight, out_bias) in enumerate(tails, start=1):
            width = int(projection.shape[0])
            if (
                tuple(projection.shape) != (width, dim)
                or tuple(norm_weight.shape) != (width,)
                or tuple(norm_bias.shape) != (width,)
                or tuple(out_weight.shape) != (len(self.members[i]), width)
                or tuple(out_bias.shape) != (len(self.members[i]),)
            ):
                raise ValueError(f"APLC tail cluster {i}: its tensors do not match its {len(self.members[i])} labels")
        device = head_weight.device
        self.index = [torch.from_numpy(labels).to(device) for labels in self.members]  # (n_c,) long each

    @classmethod
    def build(cls, targets: sp.csr_matrix, config: FullTierConfig, dim: int, device: str) -> _AplcHead:
        """Clusters from the label frequencies of `targets` (N, L); zero label weights, biases at the prior
        log-odds (a tail label's: given its cluster), random projections (seeded by ``config.seed``)."""
        import torch

        members = _aplc_clusters(targets, config.aplc_cutoffs, config.aplc_cutoff_by)
        gates = _cluster_hits(targets, members[1:])  # (N, T)
        head_targets = sp.hstack([targets[:, members[0]], sp.csr_matrix(gates)]).tocsr()  # (N, n_0 + T)
        head_weight = torch.zeros(head_targets.shape[1], dim, device=device)
        head_bias = torch.from_numpy(_prior_logits(head_targets, config.loss)).to(device)
        generator = torch.Generator().manual_seed(config.seed)
        tails = []
        for i, labels in enumerate(members[1:], start=1):
            width = max(1, int(dim // config.aplc_dim_factor**i))
            projection = torch.randn(width, dim, generator=generator) / math.sqrt(dim)  # (d_i, H)
            active = np.flatnonzero(gates[:, i - 1])
            out_bias = _prior_logits(targets[active][:, labels], config.loss)  # (n_i,)
            tails.append(
                (
                    projection.to(device),
                    torch.ones(width, device=device),
                    torch.zeros(width, device=device),
                    torch.zeros(len(labels), width, device=device),
                    torch.from_numpy(out_bias).to(device),
                )
            )
        return cls(members, head_weight, head_bias, tails, config.loss)._trainable()

    def _trainable(self) -> _AplcHead:
        for tensor in self.tensors():
            tensor.requires_grad_(True)
        return self

    @property
    def n_layers(self) -> int:
        """One: every cluster trains in one stage."""
        return 1

    @property
    def sizes(self) -> list[int]:
        """The number of labels of each cluster, head first."""
        return [len(labels) for labels in self.members]

    @property
    def widths(self) -> list[int]:
        """The width of each cluster's input: H for the head cluster, d_i for tail cluster i."""
        return [self.dim] + [int(projection.shape[0]) for projection in self.projections]

    @property
    def dim(self) -> int:
        return int(self.head_weight.shape[1])

    @property
    def n_labels(self) -> int:
        return sum(self.sizes)

    def tensors(self) -> list[Any]:
        """Every trainable tensor of the head."""
        matrices, vectors = self.parameter_groups(0)
        return [*matrices, *vectors]

    def parameter_groups(self, upto: int) -> tuple[list[Any], list[Any]]:
        """(weight matrices, which take weight decay; biases and LayerNorm vectors, which do not)."""
        return (
            [self.head_weight, *self.projections, *self.out_weights],
            [self.head_bias, *self.norm_weights, *self.norm_biases, *self.out_biases],
        )

    def cells(self, beam: int) -> int:
        """Floats alive per document while scoring: every label's probability (twice: the scatter and the top-k),
        the head layer's outputs and the tail clusters' hidden vectors."""
        return 2 * self.n_labels + int(self.head_weight.shape[0]) + sum(self.widths[1:])

    def state(self) -> dict[str, Any]:
        import torch

        out: dict[str, Any] = {
            "aplc_head_weight": self.head_weight.detach().cpu().contiguous(),
            "aplc_head_bias": self.head_bias.detach().cpu().contiguous(),
        }
        for cluster, labels in enumerate(self.members):
            out[f"aplc_members_{cluster}"] = torch.from_numpy(labels.copy())
        names = ("projection", "norm_weight", "norm_bias", "out_weight", "out_bias")
        for i, tail in enumerate(self._tails(), start=1):
            for name, tensor in zip(names, tail, strict=True):
                out[f"aplc_{name}_{i}"] = tensor.detach().cpu().contiguous()
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any], loss: str, device: str) -> _AplcHead:
        clusters = sum(1 for name in state if name.startswith("aplc_members_"))
        members = [state[f"aplc_members_{c}"].cpu().numpy().astype(np.int64) for c in range(clusters)]
        names = ("projection", "norm_weight", "norm_bias", "out_weight", "out_bias")
        tails = [tuple(state[f"aplc_{name}_{i}"].float().to(device) for name in names) for i in range(1, clusters)]
        head_weight = state["aplc_head_weight"].float().to(device)
        head_bias = state["aplc_head_bias"].float().to(device)
        return cls(members, head_weight, head_bias, tails, loss)._trainable()

    def _tails(self) -> list[tuple[Any, Any, Any, Any, Any]]:
        return list(
            zip(self.projections, self.norm_weights, self.norm_biases, self.out_weights, self.out_biases, strict=True)
        )

    # ----------------------------------------------------------------- scoring
    def head_scores(self, feats: Any) -> Any:
        """Scores (B, n_0 + T) of the head labels, then of the gates, for features (B, H)."""
        return feats @ self.head_weight.T + self.head_bias  # (B, n_0 + T)

    def tail_scores(self, feats: Any, cluster: int) -> Any:
        """Scores (B, n_i) of the labels of tail cluster `cluster` (1-based) for features (B, H)."""
        import torch.nn.functional as F

        i = cluster - 1
        hidden = feats @ self.projections[i].T  # (B, d_i)
        hidden = F.relu(F.layer_norm(hidden.float(), (hidden.shape[1],), self.norm_weights[i], self.norm_biases[i]))
        return hidden @ self.out_weights[i].T + self.out_biases[i]  # (B, n_i)

    def probabilities(self, feats: Any) -> Any:
        """(B, L) float32 every label's probability, columns in label-id order, for features (B, H)."""
        import torch

        from learner.losses import probabilities

        head = probabilities(self.head_scores(feats).float(), self.loss)  # (B, n_0 + T)
        n_head = len(self.members[0])
        out = torch.empty(feats.shape[0], self.n_labels, dtype=torch.float32, device=feats.device)  # (B, L)
        out[:, self.index[0]] = head[:, :n_head]
        for cluster in range(1, len(self.members)):
            own = probabilities(self.tail_scores(feats, cluster).float(), self.loss)  # (B, n_i)
            out[:, self.index[cluster]] = head[:, n_head + cluster - 1 : n_head + cluster] * own
        return out

    def search(self, feats: Any, beam: int, k: int, upto: int | None = None) -> list[tuple[Any, Any]]:
        """[(B, k) label ids, (B, k) probabilities], best first: every label is scored (`beam` is not used)."""
        probs = self.probabilities(feats)  # (B, L)
        values, labels = probs.topk(min(k, probs.shape[1]), dim=1)  # (B, k)
        return [(labels, values)]

    def loss_on(self, feats: Any, targets: Any) -> Any:
        """The mean over documents of the summed losses of the head layer's outputs (head labels and gates), plus,
        for each tail cluster, those of its labels on the documents that have a label in it (the gate's target):
        the negative log-likelihood of p(cluster) * p(label | cluster). feats (B, H); targets (B, L) float 0/1."""
        import torch

        batch = feats.shape[0]
        clusters = len(self.members)
        head_targets = targets[:, self.index[0]]  # (B, n_0)
        gates = [targets[:, self.index[cluster]].amax(dim=1) for cluster in range(1, clusters)]  # (B,) each
        truth = torch.cat([head_targets, *(gate.unsqueeze(1) for gate in gates)], dim=1)  # (B, n_0 + T)
        total = _batch_loss(self.head_scores(feats).float(), truth, None, self.loss)
        for cluster in range(1, clusters):
            rows = (gates[cluster - 1] > 0).nonzero().squeeze(1)  # (A,)
            if rows.numel() == 0:
                continue
            scores = self.tail_scores(feats[rows], cluster).float()  # (A, n_i)
            tail_truth = targets[rows][:, self.index[cluster]]  # (A, n_i)
            total = total + _batch_loss(scores, tail_truth, None, self.loss) * (rows.numel() / batch)
        return total

    # ----------------------------------------------------------------- new labels
    def grown(self, old_to_new: np.ndarray, n_labels: int, targets: sp.csr_matrix) -> _AplcHead:
        """A copy over `n_labels` labels: old label ids moved by `old_to_new` (L_old,), new labels appended to the
        last tail cluster (the head cluster when there is none) with zero weights and their prior as bias (in a
        tail cluster: the prior given the cluster, on `targets` (N, L) with the new label ids)."""
        import torch

        added = np.setdiff1d(np.arange(n_labels), old_to_new)  # new label ids
        members = [old_to_new[labels] for labels in self.members]
        last = len(members) - 1
        members[last] = np.concatenate([members[last], added])
        head_weight = self.head_weight.detach().clone()
        head_bias = self.head_bias.detach().clone()
        tails = [tuple(tensor.detach().clone() for tensor in tail) for tail in self._tails()]
        if added.size:
            device = head_weight.device
            if last == 0:  # no tail cluster, hence no gate rows: the new labels' rows go at the end of the head
                prior = torch.from_numpy(_prior_logits(targets[:, added], self.loss)).to(device)
                head_weight = torch.cat([head_weight, torch.zeros(len(added), self.dim, device=device)])
                head_bias = torch.cat([head_bias, prior])
            else:
                projection, norm_weight, norm_bias, out_weight, out_bias = tails[-1]
                active = np.flatnonzero(_cluster_hits(targets, [members[last]])[:, 0])
                prior = torch.from_numpy(_prior_logits(targets[active][:, added], self.loss)).to(device)
                zeros = torch.zeros(len(added), out_weight.shape[1], device=device)
                tails[-1] = (
                    projection,
                    norm_weight,
                    norm_bias,
                    torch.cat([out_weight, zeros]),
                    torch.cat([out_bias, prior]),
                )
        return _AplcHead(members, head_weight, head_bias, tails, self.loss)._trainable()


# --- the model ------------------------------------------------------------------------------------------------------
class FullTier(RuleBasedPredictions):
    """A fine-tuned encoder, its multi-label head, calibration and decision rules, the label vocabulary.

    A CUDA out-of-memory error halves the batch and retries it (``learner.device.retry_on_oom``). The sizes that
    fit are kept on the model (runtime state, not saved), so later calls start from them: ``train_batch_cap``
    caps the training micro-batch (``_optimise``), ``inference_batch_cap`` the documents per forward pass of
    ``embed`` and scoring; both are None until an out-of-memory error happened.
    """

    def __init__(
        self,
        *,
        labels: list[str],
        config: FullTierConfig,
        tokenizer: Any,
        encoder: Any,
        head: _Head | _AplcHead,
        device: str,
        max_length: int,
        platt: tuple[float, float],
        rules: dict[str, DecisionRule],
        metrics: dict[str, float],
        train_info: dict[str, Any],
    ) -> None:
        self.labels = labels
        self.config = config
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.head = head
        self.device = device
        self.max_length = max_length
        self.platt = platt
        self.rules = rules
        self.metrics = metrics
        self.train_info = train_info
        self.train_batch_cap: int | None = None
        self.inference_batch_cap: int | None = None
        self._fingerprint: str | None = None

    def __repr__(self) -> str:
        return (
            f"FullTier(head={self.config.head!r}, labels={len(self.labels)}, levels={self.head.sizes}, "
            f"device={self.device!r})"
        )

    @property
    def uses_texts(self) -> bool:
        return True

    @property
    def uses_embeddings(self) -> bool:
        return False

    @property
    def dim(self) -> int:
        """Size H of the encoder's embeddings."""
        return self.head.dim

    @property
    def scale(self) -> float:
        """The head reads the L2-normalised embeddings times sqrt(H), so its inputs have unit-size entries."""
        return math.sqrt(self.dim)

    # ----------------------------------------------------------------- encoding
    def _use_bf16(self) -> bool:
        return _bf16(self.config, self.device)

    @contextmanager
    def _autocast(self) -> Iterator[None]:
        import torch

        with torch.autocast(device_type=self.device, dtype=torch.bfloat16, enabled=self._use_bf16()):
            yield

    def _embed_batch(self, texts: Sequence[str]) -> Any:
        """L2-normalised mean-pooled embeddings (B, H) float32 of a batch, with gradients when the encoder trains."""
        import torch.nn.functional as F

        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        batch = {name: value.to(self.device) for name, value in batch.items()}
        with self._autocast():
            hidden = self.encoder(**batch).last_hidden_state  # (B, T, H)
        mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        pooled = (hidden.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
        return F.normalize(pooled, p=2.0, dim=1)  # (B, H)

    @staticmethod
    def _longest_first(texts: Sequence[str]) -> np.ndarray:
        """(N,) row indices of the texts, longest first (batches of similar lengths need less padding)."""
        lengths = np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts))
        return np.argsort(-lengths, kind="stable")

    def _inference_batches(self, rows: np.ndarray, size: int, work: Callable[[np.ndarray], None], *, what: str) -> None:
        """``work(part)`` on consecutive parts of `rows` of at most `size` rows (and at most
        ``inference_batch_cap``). A part that runs out of GPU memory is retried with half as many rows; the
        smaller size is kept for the rest of the call and, in ``inference_batch_cap``, for later calls. `work`
        must write its results only once they are computed."""
        if self.inference_batch_cap is not None:
            size = min(size, self.inference_batch_cap)
        used = run_batches(len(rows), size, lambda start, stop: work(rows[start:stop]), what=what)
        if used < size:
            self.inference_batch_cap = used

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """The fine-tuned encoder's embeddings: (N, H) float32, mean-pooled and L2-normalised, row i for
        ``texts[i]``: what the fast tier reads (re-embed the pool with it after fine-tuning).

        `batch_size` texts per forward pass (default `config.predict_batch_size`), halved after a CUDA
        out-of-memory error (see ``FullTier``)."""
        import torch

        texts = _texts(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # (N, H)
        self.encoder.eval()
        with (
            torch.inference_mode(),
            tqdm(total=len(texts), disable=not progress, desc="embed", unit="text") as bar,
        ):

            def embed_rows(rows: np.ndarray) -> None:
                out[rows] = self._embed_batch([texts[i] for i in rows]).cpu().numpy()
                bar.update(len(rows))

            size = batch_size or self.config.predict_batch_size
            self._inference_batches(self._longest_first(texts), size, embed_rows, what="embedding batch")
        return out

    @property
    def fingerprint(self) -> str:
        """16 hex digits naming the fine-tuned encoder's weights, max_length and pooling: embeddings from
        models with different fingerprints must not be mixed (computed once, from the weights)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.encoder.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().numpy().tobytes())
            digest.update(json.dumps({"max_length": self.max_length, "pooling": "mean", "normalize": True}).encode())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    # ----------------------------------------------------------------- training
    @classmethod
    def train(
        cls,
        inputs: Inputs,
        Y: Any,
        labels: Sequence[str],
        config: FullTierConfig | None = None,
        *,
        validation: tuple[Inputs, Any] | None = None,
        on_progress: Callable[[float], None] | None = None,
        progress: bool = False,
    ) -> FullTier:
        """Fine-tunes the encoder with a multi-label head on `inputs` (N texts) with targets `Y` (N, L) 0/1 over
        `labels`.

        With `validation` = (inputs, Y), calibration and decision rules are tuned on it. Without, when there are
        at least `config.min_tune_documents` documents, `config.val_fraction` of them is held out for that (and
        not trained on); with fewer, the threshold is 0.5 and scores are not calibrated. `on_progress(fraction)`
        reports progress in [0, 1]; `progress` shows a progress bar. Raises ValueError on bad input.
        """
        names = _labels(labels)
        config = (config or FullTierConfig()).resolve(len(names))
        texts = _input_texts(inputs)
        if not texts:
            raise ValueError("no training documents")
        targets = _targets(Y, len(texts), len(names))
        val_texts: list[str] | None = None
        val_targets: sp.csr_matrix | None = None
        if validation is not None:
            val_inputs, val_y = validation
            val_texts = _input_texts(val_inputs)
            val_targets = _targets(val_y, len(val_texts), len(names))
        elif len(texts) >= config.min_tune_documents:
            fit_rows, val_rows = _split(len(texts), config.val_fraction, config.seed)
            val_texts, val_targets = [texts[i] for i in val_rows], targets[val_rows]
            texts, targets = [texts[i] for i in fit_rows], targets[fit_rows]
        report = on_progress or (lambda fraction: None)
        started = time.monotonic()

        from learner.config import EncoderConfig
        from learner.encoder import Encoder

        base = Encoder.load(EncoderConfig(path=config.encoder, max_length=config.max_length, device=config.device))
        head: _Head | _AplcHead
        if config.head == "aplc":
            head = _AplcHead.build(targets, config, base.dim, base.device)
            logger.info("full tier APLC clusters: %s labels, widths %s", head.sizes, head.widths)
        else:
            if config.head == "tree":
                parents = cls._build_tree(texts, targets, config, base, progress)
            else:
                parents = [np.zeros(len(names), dtype=np.int64)]
            head = cls._new_head(parents, targets, config, base.dim, base.device)
        model = cls(
            labels=names,
            config=config,
            tokenizer=base.tokenizer,
            encoder=base.model,
            head=head,
            device=base.device,
            max_length=base.max_length,
            platt=(1.0, 0.0),
            rules={"micro_f1": DecisionRule(threshold=0.5, objective="micro_f1")},
            metrics={},
            train_info={
                "head": config.head,
                "levels": head.sizes,
                "device": base.device,
                "precision": "bf16" if _bf16(config, base.device) else "fp32",
                "base_encoder": base.path,
                "base_encoder_fingerprint": base.fingerprint,
                **({"cluster_widths": head.widths} if isinstance(head, _AplcHead) else {}),
            },
        )
        layers = head.n_layers
        stages = [(layer, config.coarse_epochs) for layer in range(layers - 1)] + [(layers - 1, config.epochs)]
        info = model._optimise(
            texts, targets, stages, bootstrap=True, report=lambda f: report(0.9 * f), progress=progress
        )
        model.train_info.update(info)
        report(0.9)
        if val_texts is not None and val_targets is not None and len(val_texts) >= 2:
            model._tune(val_texts, val_targets)
        model.train_info.update(
            {
                "n_documents": len(texts),
                "n_validation": len(val_texts) if val_texts is not None else 0,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        report(1.0)
        return model

    @staticmethod
    def _build_tree(
        texts: list[str], targets: sp.csr_matrix, config: FullTierConfig, base: Any, progress: bool
    ) -> list[np.ndarray]:
        """The label tree's parent arrays, from PIFA label features of TF-IDF or frozen-encoder embeddings."""
        from learner.xmc.tree import LabelTree, pifa

        if config.tree_features == "tfidf":
            from learner.features import TfidfConfig, TfidfFeaturizer

            features: Any = TfidfFeaturizer.fit(texts, TfidfConfig(min_df=1), progress=progress).transform(texts)
        else:
            features = base.encode(texts, progress=progress)  # (N, H)
        tree = LabelTree.build(pifa(features, targets), config.tree_config(), progress=progress)
        logger.info("full tier label tree: %s", tree)
        return _tree_parents(tree)

    @staticmethod
    def _new_head(
        parents: list[np.ndarray], targets: sp.csr_matrix, config: FullTierConfig, dim: int, device: str
    ) -> _Head:
        """Zero weights; biases at the prior log-odds of each node (deeper levels are bootstrapped later)."""
        import torch

        layer_targets = _layer_targets(targets, parents)
        weights = [torch.zeros(len(parent), dim, device=device, requires_grad=True) for parent in parents]
        biases = [
            torch.from_numpy(_prior_logits(layer, config.loss)).to(device).requires_grad_(True)
            for layer in layer_targets
        ]
        return _Head(weights, biases, parents, config.loss)

    def _optimise(
        self,
        texts: list[str],
        targets: sp.csr_matrix,
        stages: list[tuple[int, int]],
        *,
        bootstrap: bool,
        report: Callable[[float], None],
        progress: bool,
        shuffle_key: int = 0,
    ) -> dict[str, Any]:
        """Trains the encoder and the head on (texts, targets) in stages: (last layer trained, epochs). Stage t
        trains layers 0..t jointly; with `bootstrap`, layer t > 0 first copies its parents' rows. Returns what
        happened (steps, losses, whether the time budget stopped it).

        An optimizer step reads `batch_size` * `grad_accumulation` documents in micro-batches of `batch_size`.
        When a step runs out of GPU memory, its gradients are dropped, the micro-batch is halved (the number of
        backward passes per step doubles: each batch is split into pieces whose losses are weighted by their
        share of its documents) and the step is redone: the effective batch, the number of steps and the learning
        rate schedule stay the same. The micro-batch that fit is kept in ``train_batch_cap`` (for the rest of the
        training and later updates) and reported as ``micro_batch_size``."""
        import torch
        from transformers import get_linear_schedule_with_warmup

        config = self.config
        head = self.head
        layer_targets = [targets] if isinstance(head, _AplcHead) else _layer_targets(targets, head.parents)
        batch = config.batch_size
        micro = min(batch, self.train_batch_cap or batch)  # documents per forward pass (smaller after an OOM)
        step_rows = batch * config.grad_accumulation  # documents per optimizer step
        per_epoch = math.ceil(len(texts) / batch)
        steps_per_epoch = math.ceil(per_epoch / config.grad_accumulation)
        total_steps = sum(epochs * steps_per_epoch for _, epochs in stages)
        deadline = None if config.max_train_seconds is None else time.monotonic() + config.max_train_seconds
        train_encoder = config.lr_encoder > 0
        losses: list[float] = []
        done_steps = 0
        stopped = False
        devices = [torch.device(self.device).index or 0] if self.device == "cuda" else []
        with (
            torch.random.fork_rng(devices=devices),
            tqdm(total=total_steps, disable=not progress, desc="fine-tune", unit="step") as bar,
        ):
            torch.manual_seed(config.seed)
            for stage, (upto, epochs) in enumerate(stages):
                if bootstrap and upto > 0:
                    self._bootstrap(upto)
                if stopped:
                    continue
                groups = self._parameter_groups(upto, train_encoder)
                optimizer = torch.optim.AdamW(groups, lr=config.lr_head)
                stage_steps = epochs * steps_per_epoch
                scheduler = get_linear_schedule_with_warmup(
                    optimizer, round(config.warmup_fraction * stage_steps), stage_steps
                )
                params = [p for group in groups for p in group["params"]]
                self.encoder.train(train_encoder)
                for epoch in range(epochs):
                    rng = np.random.default_rng([config.seed, shuffle_key, stage, epoch])
                    order = rng.permutation(len(texts))
                    running = torch.zeros((), device=self.device)  # summed batch losses, kept on the device
                    count = 0
                    optimizer.zero_grad(set_to_none=True)
                    for start in range(0, len(texts), step_rows):
                        rows = order[start : start + step_rows]  # one optimizer step's documents
                        backward = functools.partial(
                            self._step_backward,
                            texts=texts,
                            layer_targets=layer_targets,
                            rows=rows,
                            upto=upto,
                            params=params,
                        )
                        values, micro = retry_on_oom(backward, micro, what="training micro-batch")
                        if micro < batch:
                            self.train_batch_cap = micro
                        for value in values:
                            running += value
                        count += math.ceil(len(rows) / batch)
                        if config.max_grad_norm > 0:
                            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                        done_steps += 1
                        bar.update(1)
                        report(done_steps / max(total_steps, 1))
                        if deadline is not None and time.monotonic() > deadline:
                            stopped = True
                            break
                    losses.append(round(float(running) / max(count, 1), 5))
                    logger.info("stage %d epoch %d: mean loss %.4f", stage, epoch, losses[-1])
                    if stopped:
                        logger.warning("max_train_seconds reached after %d optimizer steps", done_steps)
                        break
        self.encoder.eval()
        for tensor in head.tensors():
            tensor.grad = None
        self._fingerprint = None
        return {
            "steps": done_steps,
            "planned_steps": total_steps,
            "epoch_losses": losses,
            "stopped_early": stopped,
            "stages": [list(stage) for stage in stages],
            **({"micro_batch_size": micro} if micro < batch else {}),
        }

    def _step_backward(
        self,
        micro: int,
        *,
        texts: list[str],
        layer_targets: list[sp.csr_matrix],
        rows: np.ndarray,
        upto: int,
        params: list[Any],
    ) -> list[Any]:
        """The backward passes of one optimizer step over the documents `rows`: batches of ``config.batch_size``,
        each split into pieces of at most `micro` documents whose losses are weighted by their share of the batch
        (with ``micro == batch_size`` this is plain gradient accumulation). Returns each pass's loss times its
        share (0-d tensors); clears the gradients of `params` before raising, so the step can be redone."""
        config = self.config
        batch = config.batch_size
        values: list[Any] = []
        try:
            for first in range(0, len(rows), batch):
                part = rows[first : first + batch]  # (B,) one batch of the configured size
                for piece_start in range(0, len(part), micro):
                    piece = part[piece_start : piece_start + micro]
                    share = len(piece) / len(part)  # 1.0 unless an out-of-memory error split the batch
                    loss = self._step_loss([texts[i] for i in piece], [y[piece] for y in layer_targets], upto)
                    (loss * share / config.grad_accumulation).backward()
                    values.append(loss.detach().float() * share)
        except RuntimeError:
            for param in params:
                param.grad = None
            raise
        return values

    def _parameter_groups(self, upto: int, train_encoder: bool) -> list[dict[str, Any]]:
        """AdamW groups: encoder matrices (decayed) and vectors (not), head weights (decayed) and biases (not)."""
        config = self.config
        decayed, plain = self.head.parameter_groups(upto)
        groups: list[dict[str, Any]] = []
        for param in self.encoder.parameters():
            param.requires_grad_(train_encoder)
        if train_encoder:
            matrices = [p for p in self.encoder.parameters() if p.ndim >= 2]
            vectors = [p for p in self.encoder.parameters() if p.ndim < 2]
            groups += [
                {"params": matrices, "lr": config.lr_encoder, "weight_decay": config.weight_decay},
                {"params": vectors, "lr": config.lr_encoder, "weight_decay": 0.0},
            ]
        groups += [
            {"params": decayed, "lr": config.lr_head, "weight_decay": config.weight_decay},
            {"params": plain, "lr": config.lr_head, "weight_decay": 0.0},
        ]
        return groups

    def _bootstrap(self, layer: int) -> None:
        """Layer `layer` starts from its parents: each node copies its parent's weights and bias."""
        import torch

        head = self._tree_head()
        parent = torch.from_numpy(head.parents[layer]).to(self.device)  # (n_t,)
        with torch.no_grad():
            head.weights[layer].copy_(head.weights[layer - 1][parent])
            head.biases[layer].copy_(head.biases[layer - 1][parent])

    def _tree_head(self) -> _Head:
        """The head, when it is a flat or tree one (TypeError for an APLC head)."""
        if not isinstance(self.head, _Head):
            raise TypeError(f"this operation needs a flat or tree head; this model's head is {self.config.head!r}")
        return self.head

    def _step_loss(self, texts: list[str], layer_targets: list[sp.csr_matrix], upto: int) -> Any:
        """The summed loss of layers 0..upto on one batch; layer t > 0 is scored on the children of the document's
        true parents and of the beam of layer t - 1 (teacher forcing + hard negatives). An APLC head's loss is
        ``_AplcHead.loss_on``."""
        import torch

        if self.config.lr_encoder > 0:
            feats = self._embed_batch(texts) * self.scale  # (B, H)
        else:
            with torch.no_grad():
                feats = self._embed_batch(texts) * self.scale  # (B, H)
        if isinstance(self.head, _AplcHead):
            truth = torch.from_numpy(layer_targets[0].toarray()).to(self.device)  # (B, L)
            with self._autocast():
                return self.head.loss_on(feats, truth)
        head = self.head
        dense = [torch.from_numpy(y.toarray()).to(self.device) for y in layer_targets[: upto + 1]]  # (B, n_t) each
        beams: list[tuple[Any, Any]] = []
        if upto > 0:
            with torch.no_grad(), self._autocast():
                beams = head.search(feats.detach(), self.config.beam, self.config.beam, upto=upto - 1)
        with self._autocast():
            total = _batch_loss(head.dense(feats, 0).float(), dense[0], None, self.config.loss)
            for layer in range(1, upto + 1):
                beam_nodes = beams[layer - 1][0]  # (B, K)
                hits = torch.zeros_like(dense[layer - 1], dtype=torch.int64)  # (B, n_{t-1})
                hits.scatter_add_(1, beam_nodes.clamp(min=0), (beam_nodes >= 0).long())
                chosen = (dense[layer - 1] > 0) | (hits > 0)  # (B, n_{t-1}) true parents + beam
                width = int(chosen.sum(dim=1).max())
                flags, parents = chosen.float().topk(width, dim=1)  # (B, P)
                children = head.children[layer][parents]  # (B, P, C)
                mask = ((children >= 0) & (flags > 0).unsqueeze(2)).flatten(1)  # (B, P * C)
                candidates = children.flatten(1)  # (B, P * C)
                truth = dense[layer].gather(1, candidates.clamp(min=0)) * mask  # (B, P * C)
                scores = head.at(feats, layer, candidates).float()  # (B, P * C)
                total = total + _batch_loss(scores, truth, mask, self.config.loss)
        return total

    # ----------------------------------------------------------------- tuning
    def _tune(self, texts: list[str], targets: sp.csr_matrix) -> None:
        """Calibration (Platt) and decision rules from validation shortlists; validation metrics."""
        idx, raw = self._raw_topk(texts, min(len(self.labels), self.config.shortlist))
        self.platt, self.rules, self.metrics = tune_decision(
            idx,
            raw,
            targets,
            calibrate=self.config.calibrate,
            per_label_min_positives=self.config.per_label_min_positives,
        )

    # ----------------------------------------------------------------- incremental update
    def update(
        self,
        inputs: Inputs,
        Y: Any,
        labels: Sequence[str],
        *,
        replay: tuple[Inputs, Any] | None = None,
        validation: tuple[Inputs, Any] | None = None,
        epochs: int | None = None,
        on_progress: Callable[[float], None] | None = None,
        progress: bool = False,
    ) -> FullTier:
        """Continues fine-tuning this model on new documents plus a replay sample of old ones.

        `labels` must contain every label of this model (in any order; they are matched by name) and may add new
        ones. A new label of a flat head gets a new output row with zero weights and its prior as bias; in a tree
        it joins the leaf cluster whose path scores its positive documents reach best and starts from that leaf's
        row; in an APLC head it joins the last (rarest) tail cluster - a label new to the model has few positives
        yet - with zero weights and its prior given that cluster as bias (the head cluster when there is no tail
        cluster); the clusters are not re-cut (training from scratch re-sorts the labels by frequency). Then every
        layer trains jointly with the encoder for `epochs` (default `config.update_epochs`) on new + replay
        documents, from the current weights (fresh optimizer and warmup). Calibration and decision rules are
        re-tuned on `validation`, or on a held-out `val_fraction` of the update documents when there are at
        least `min_tune_documents`; otherwise the previous ones are kept. Returns a new model; this one is
        unchanged. Raises ValueError on bad input.
        """
        names = _labels(labels)
        known = set(names)
        missing = [name for name in self.labels if name not in known]
        if missing:
            raise ValueError(f"update labels drop {len(missing)} label(s) of the model, e.g. {missing[:3]}")
        if epochs is not None:
            _check_int("epochs", epochs, 1)
        texts = _input_texts(inputs)
        targets = _targets(Y, len(texts), len(names))
        n_new = len(texts)
        if replay is not None:
            replay_inputs, replay_y = replay
            replay_texts = _input_texts(replay_inputs)
            targets = sp.vstack([targets, _targets(replay_y, len(replay_texts), len(names))]).tocsr()
            texts = texts + replay_texts
        if not texts:
            raise ValueError("no documents to update on")
        val_texts: list[str] | None = None
        val_targets: sp.csr_matrix | None = None
        if validation is not None:
            val_texts = _input_texts(validation[0])
            val_targets = _targets(validation[1], len(val_texts), len(names))
        elif len(texts) >= self.config.min_tune_documents:
            fit_rows, val_rows = _split(len(texts), self.config.val_fraction, self.config.seed + 1)
            val_texts, val_targets = [texts[i] for i in val_rows], targets[val_rows]
            texts, targets = [texts[i] for i in fit_rows], targets[fit_rows]
        report = on_progress or (lambda fraction: None)
        started = time.monotonic()

        position = {name: j for j, name in enumerate(names)}
        old_to_new = np.array([position[name] for name in self.labels], dtype=np.int64)  # (L_old,)
        model = FullTier(
            labels=names,
            config=self.config,
            tokenizer=self.tokenizer,
            encoder=copy.deepcopy(self.encoder),
            head=(
                self.head.grown(old_to_new, len(names), targets)
                if isinstance(self.head, _AplcHead)
                else self._grown_head(names, old_to_new, texts, targets)
            ),
            device=self.device,
            max_length=self.max_length,
            platt=self.platt,
            rules={name: rule.remapped(old_to_new) for name, rule in self.rules.items()},
            metrics=dict(self.metrics),
            train_info=dict(self.train_info),
        )
        model.train_batch_cap, model.inference_batch_cap = self.train_batch_cap, self.inference_batch_cap
        updates = int(self.train_info.get("updates", 0)) + 1
        info = model._optimise(
            texts,
            targets,
            [(model.head.n_layers - 1, epochs or self.config.update_epochs)],
            bootstrap=False,
            report=lambda f: report(0.9 * f),
            progress=progress,
            shuffle_key=updates,  # another shuffle than the training's and the earlier updates'
        )
        report(0.9)
        if val_texts is not None and val_targets is not None and len(val_texts) >= 2:
            model._tune(val_texts, val_targets)
        model.train_info.update(
            {
                "incremental": True,
                "updates": updates,
                "update": info,
                "new_labels": [name for name in names if name not in set(self.labels)],
                "n_documents": int(self.train_info.get("n_documents", 0)) + n_new,
                "n_update_documents": len(texts),
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        report(1.0)
        return model

    def _grown_head(self, names: list[str], old_to_new: np.ndarray, texts: list[str], targets: sp.csr_matrix) -> _Head:
        """A copy of the head over the labels `names`: old label rows moved to their new index, new labels added
        (flat: zero weights and prior bias; tree: placed under the best-scoring leaf, starting from its row)."""
        import torch

        head = self._tree_head()
        n_labels = len(names)
        last = head.n_layers - 1
        added = np.setdiff1d(np.arange(n_labels), old_to_new)  # new label ids
        parents = [p.copy() for p in head.parents]
        label_parent = np.zeros(n_labels, dtype=np.int64)
        label_parent[old_to_new] = head.parents[last]
        if added.size and last > 0:
            label_parent[added] = self._best_leaves(added, texts, targets)
        parents[last] = label_parent
        weights = [w.detach().clone() for w in head.weights]
        biases = [b.detach().clone() for b in head.biases]
        dim = self.dim
        new_w = torch.zeros(n_labels, dim, device=self.device)  # (L, H)
        new_b = torch.from_numpy(_prior_logits(targets, self.config.loss)).to(self.device)  # (L,)
        index = torch.from_numpy(old_to_new).to(self.device)
        new_w[index] = weights[last]
        new_b[index] = biases[last]
        if added.size and last > 0:
            fresh = torch.from_numpy(added).to(self.device)
            leaf = torch.from_numpy(label_parent[added]).to(self.device)
            new_w[fresh] = weights[last - 1][leaf]
            new_b[fresh] = biases[last - 1][leaf]
        weights[last], biases[last] = new_w, new_b
        return _Head(
            [w.requires_grad_(True) for w in weights], [b.requires_grad_(True) for b in biases], parents, head.loss
        )

    def _best_leaves(self, added: np.ndarray, texts: list[str], targets: sp.csr_matrix) -> np.ndarray:
        """For each new label, the leaf cluster with the highest mean path probability over its positive
        documents (the leaf with the fewest labels when it has none)."""
        import torch

        from learner.losses import probabilities

        head = self._tree_head()
        last = head.n_layers - 1
        n_leaves = head.sizes[last - 1]
        columns = targets[:, added].tocsc()
        rows = np.unique(columns.indices)
        sums = np.zeros((len(added), n_leaves))
        if rows.size:
            self.encoder.eval()

            def add_paths(part: np.ndarray) -> None:
                nonlocal sums
                with self._autocast():
                    feats = self._embed_batch([texts[i] for i in part]) * self.scale  # (B, H)
                    path = probabilities(head.dense(feats, 0).float(), head.loss)  # (B, n_0)
                    for layer in range(1, last):
                        parent = torch.from_numpy(head.parents[layer]).to(self.device)
                        own = probabilities(head.dense(feats, layer).float(), head.loss)  # (B, n_t)
                        path = path[:, parent] * own  # (B, n_t)
                sums += columns[part].T @ path.cpu().numpy().astype(np.float64)  # (A, n_leaves)

            with torch.inference_mode():
                self._inference_batches(rows, self.config.predict_batch_size, add_paths, what="scoring batch")
        sizes = np.bincount(head.parents[last], minlength=n_leaves).astype(np.float64)
        out = np.empty(len(added), dtype=np.int64)
        for j in range(len(added)):
            if columns[:, j].nnz:
                out[j] = int(np.argmax(sums[j]))
            else:
                out[j] = int(np.argmin(sizes))
            sizes[out[j]] += 1
        return out

    # ----------------------------------------------------------------- prediction
    def _raw_topk(
        self,
        texts: list[str],
        k: int,
        *,
        chunk_size: int | None = None,
        beam: int | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) label indices (-1: none) and uncalibrated probabilities (0 for none), best first."""
        import torch

        head = self.head
        beam = beam or self.config.beam
        size = max(
            1, min(chunk_size or self.config.predict_batch_size, self.config.max_score_cells // head.cells(beam))
        )
        idx = np.full((len(texts), k), -1, dtype=np.int64)  # (N, k)
        raw = np.zeros((len(texts), k), dtype=np.float32)  # (N, k)
        self.encoder.eval()
        with (
            torch.inference_mode(),
            tqdm(total=len(texts), disable=not progress, desc="score", unit="doc") as bar,
        ):

            def score_rows(rows: np.ndarray) -> None:
                feats = self._embed_batch([texts[i] for i in rows]) * self.scale  # (B, H)
                with self._autocast():
                    nodes, path = head.search(feats, beam, k)[-1]  # (B, K) each
                found = nodes.shape[1]
                idx[rows, :found] = nodes.cpu().numpy()
                raw[rows, :found] = path.clamp(min=0.0).float().cpu().numpy()
                bar.update(len(rows))

            self._inference_batches(self._longest_first(texts), size, score_rows, what="scoring batch")
        return idx, raw

    def _calibrated(self, idx: np.ndarray, raw: np.ndarray) -> np.ndarray:
        return np.where(idx >= 0, apply_platt(raw, *self.platt), np.float32(0.0)).astype(np.float32)

    def predict_topk(
        self,
        inputs: Inputs,
        k: int,
        *,
        chunk_size: int | None = None,
        beam: int | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best labels per document: (N, k) int64 indices and (N, k) float32 calibrated probabilities, best
        first (k is capped at the number of labels; a tree whose beam reaches fewer than k labels pads with -1
        and probability 0).

        Streams `chunk_size` documents at a time (default `config.predict_batch_size`), fewer when needed to keep
        at most `config.max_score_cells` floats of scores alive (see ``FullTierConfig``): never a documents x
        labels matrix. `beam` overrides the tree's beam (a beam as wide as the widest cluster level scores every
        label); flat and APLC heads score every label and ignore it. Uses the model's device.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        if chunk_size is not None:
            _check_int("chunk_size", chunk_size, 1)
        if beam is not None:
            _check_int("beam", beam, 1)
        k = min(int(k), len(self.labels))
        idx, raw = self._raw_topk(_input_texts(inputs), k, chunk_size=chunk_size, beam=beam, progress=progress)
        return idx, self._calibrated(idx, raw)

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Writes a self-describing folder atomically (temp folder + rename): ``full_tier.json`` (config, labels,
        decision rule, metrics, versions), ``encoder/`` (the fine-tuned model and its tokenizer, Hugging Face
        format) and ``head.safetensors``."""
        from safetensors.torch import save_file

        from learner.encoder import file_sha256

        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            self.encoder.save_pretrained(str(tmp / ENCODER_DIR))
            self.tokenizer.save_pretrained(str(tmp / ENCODER_DIR))
            save_file(self.head.state(), str(tmp / HEAD_FILE))
            payload = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "labels": self.labels,
                "config": self.config.to_dict(),
                "max_length": self.max_length,
                "decision": self.decision,
                "metrics": self.metrics,
                "train_info": self.train_info,
                "sha256": {
                    "encoder": file_sha256(tmp / ENCODER_DIR / WEIGHTS_FILE),
                    "head": file_sha256(tmp / HEAD_FILE),
                },
                "versions": _versions_with_transformers(),
                "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            (tmp / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True), encoding="utf-8")
            publish_folder(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, device: str = "auto") -> FullTier:
        """Loads a folder written by ``save`` onto `device` ("auto": CUDA when present), with no network access;
        the weights' sha256 must match the ones recorded at saving. Raises ValueError on a missing or corrupt
        folder."""
        from learner.device import resolve_device
        from learner.encoder import file_sha256

        folder = Path(directory)
        path = folder / CONFIG_FILE
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"no readable full-tier model in {folder}: {exc}") from exc
        if payload.get("format") != FORMAT or payload.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path} is not a {FORMAT} v{FORMAT_VERSION} model")
        try:
            config = FullTierConfig.from_dict(payload["config"])
            labels = _labels(payload["labels"])
            decision = payload["decision"]
            rules = {name: DecisionRule.from_dict(rule) for name, rule in decision["rules"].items()}
            platt = (float(decision["platt"]["a"]), float(decision["platt"]["b"]))
            max_length = int(payload["max_length"])
            hashes = {"encoder": folder / ENCODER_DIR / WEIGHTS_FILE, "head": folder / HEAD_FILE}
            for name, file in hashes.items():
                expected = payload["sha256"][name]
                if not file.is_file() or file_sha256(file) != expected:
                    raise ValueError(f"{file} is missing or its sha256 differs from the one recorded at saving")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"corrupt full-tier model {folder}: {exc}") from exc
        resolved = resolve_device(device)

        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder / ENCODER_DIR), local_files_only=True)
            encoder = AutoModel.from_pretrained(str(folder / ENCODER_DIR), local_files_only=True, dtype=torch.float32)
            state = load_file(str(folder / HEAD_FILE), device="cpu")
            head_cls = _AplcHead if config.head == "aplc" else _Head
            head = head_cls.from_state(state, config.loss, resolved)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            raise ValueError(f"cannot load the full-tier model from {folder}: {exc}") from exc
        if head.n_labels != len(labels):
            raise ValueError(f"corrupt full-tier model {folder}: {head.n_labels} label rows for {len(labels)} labels")
        encoder.eval()
        encoder.to(resolved)
        return cls(
            labels=labels,
            config=config,
            tokenizer=tokenizer,
            encoder=encoder,
            head=head,
            device=resolved,
            max_length=max_length,
            platt=platt,
            rules=rules,
            metrics=payload.get("metrics") or {},
            train_info=payload.get("train_info") or {},
        )


# --- helpers --------------------------------------------------------------------------------------------------------
def _bf16(config: FullTierConfig, device: str) -> bool:
    """Whether training and scoring run under bf16 autocast for this config on `device`."""
    return config.precision == "bf16" or (config.precision == "auto" and device == "cuda")


def _texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, not one string")
    out = list(texts)
    if not all(isinstance(text, str) for text in out):
        raise ValueError("every text must be a string")
    return out


def _input_texts(inputs: Any) -> list[str]:
    if not isinstance(inputs, Inputs):
        raise ValueError(f"expected learner.fast.Inputs; got {type(inputs).__name__}")
    if inputs.texts is None:
        raise ValueError("the full tier reads the documents' texts: pass Inputs(texts=...)")
    return _texts(inputs.texts)


def _versions_with_transformers() -> dict[str, str]:
    out = _versions()
    try:
        import transformers

        out["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    return out
