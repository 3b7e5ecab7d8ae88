"""The full tier's settings (``FullTierConfig``): the encoder, the optimisation, the head and how it is scored."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from learner.config import LOSSES, Params, check_device, check_float, check_int

__all__ = ["APLC_CUTOFF_BY", "HEADS", "PRECISIONS", "TREE_FEATURES", "FullTierConfig"]

HEADS = ("auto", "flat", "tree", "aplc")
PRECISIONS = ("auto", "bf16", "fp32")
TREE_FEATURES = ("tfidf", "encoder")
RANKERS = ("none", "xr")
APLC_CUTOFF_BY = ("labels", "frequency")


@dataclass(frozen=True)
class FullTierConfig(Params):
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
    # The XR-Transformer final ranker (learner.full.ranker), tree head only: "xr" trains XR-Linear on [TF-IDF ⊕
    # fine-tuned embedding] over the head's label tree and ranks with it; "none" ranks with the head.
    ranker: str = "none"
    ranker_embedding_weight: float = 1.0  # the embedding part's weight next to the (unit) TF-IDF part
    ranker_xr: dict[str, Any] = field(default_factory=dict)  # learner.xmc.XRConfig fields to override
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
        check_float(self, "aplc_dim_factor", 1.0, float("inf"), low_open=False, high_open=True)
        check_device(self.device)
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
            check_int(name, getattr(self, name), minimum)
        check_float(self, "lr_encoder", 0.0, 1.0, low_open=False, high_open=False)
        check_float(self, "lr_head", 0.0, 10.0, low_open=True, high_open=False)
        check_float(self, "warmup_fraction", 0.0, 1.0, low_open=False, high_open=True)
        check_float(self, "weight_decay", 0.0, 10.0, low_open=False, high_open=False)
        check_float(self, "max_grad_norm", 0.0, float("inf"), low_open=False, high_open=True)
        check_float(self, "val_fraction", 0.0, 0.5, low_open=True, high_open=False)
        if self.max_train_seconds is not None:
            check_float(self, "max_train_seconds", 0.0, float("inf"), low_open=True, high_open=True)
        if not isinstance(self.calibrate, bool):
            raise ValueError(f"calibrate must be a bool; got {self.calibrate!r}")
        if not isinstance(self.tree, dict):
            raise ValueError(f"tree must be a dict of learner.xmc.TreeConfig settings; got {self.tree!r}")
        self.tree_config()  # unknown keys or bad values raise here, not after the encoder has loaded
        if self.ranker not in RANKERS:
            raise ValueError(f"ranker must be one of {', '.join(RANKERS)}; got {self.ranker!r}")
        check_float(self, "ranker_embedding_weight", 0.0, float("inf"), low_open=False, high_open=True)
        if not isinstance(self.ranker_xr, dict):
            raise ValueError(f"ranker_xr must be a dict of learner.xmc.XRConfig settings; got {self.ranker_xr!r}")
        self.ranker_xr_config()

    def tree_config(self) -> Any:
        """The ``learner.xmc.TreeConfig`` of the label tree (defaults overridden by ``tree``)."""
        from learner.xmc.config import TreeConfig

        return TreeConfig.from_dict({**TreeConfig().to_dict(), **self.tree})

    def ranker_xr_config(self) -> Any:
        """The ``learner.xmc.XRConfig`` of the final ranker (defaults overridden by ``ranker_xr``)."""
        from learner.xmc.config import XRConfig

        return XRConfig.from_dict({**XRConfig().to_dict(), **self.ranker_xr})

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
