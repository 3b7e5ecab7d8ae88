"""Frozen, JSON round-trippable configurations of the XR-Linear fast tier (label tree and rankers).

``to_dict()`` gives plain JSON values (the nested ``TreeConfig`` as a dict); ``from_dict()`` rebuilds
the config, rejecting unknown keys; ``__post_init__`` rejects bad values with a ``ValueError`` naming
the field, as ``learner.config`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from learner.config import Params, check_float, check_int

__all__ = [
    "LARGE_DATA_DOCUMENTS",
    "LOSSES",
    "MERGES",
    "NEGATIVES",
    "TRANSFORMS",
    "TreeConfig",
    "XRConfig",
    "large_data_settings",
]

NEGATIVES: tuple[str, ...] = ("tfn", "tfn+man", "tfn+led", "tfn+man+led")
LOSSES: tuple[str, ...] = ("squared_hinge", "hinge", "logistic")
TRANSFORMS: tuple[str, ...] = ("l1-hinge", "l2-hinge", "l3-hinge", "l4-hinge", "sigmoid")
MERGES: tuple[str, ...] = ("max", "mean")

# A tree head trained on many documents (tibkat-gnd, 40,000 documents of train, every 11th held out; one core;
# bench/bench_xmc_training.py, bench/results/xmc-training*.json): stemmed word unigrams with min_df 3 instead of the
# 1-2-grams with min_df 2 of TfidfConfig's defaults, and matcher-aware negatives from the beam's 5 best nodes instead
# of all 10: a fifth of the training time, held-out P@1 0.518 against 0.493. Then (xmc-training-title/-coarse/
# -combined.json) a block of title features with weight 0.3 (P@1 of the served blend 0.5855 against 0.564; 0.2, 0.5,
# 0.7 and 1.0 scored lower) and teacher-forced negatives only below the levels of at most 40 nodes (the same P@1,
# a sixth less XR-Linear time). Below LARGE_DATA_DOCUMENTS the defaults stay (a small labelled set loses much of its
# vocabulary to min_df 3; the low-data benchmarks measured the defaults).
LARGE_DATA_DOCUMENTS = 20_000
LARGE_DATA_TFIDF: dict[str, int | bool | float] = {"ngram_max": 1, "min_df": 3, "stem": True, "title_weight": 0.3}
# Inference on such a tree (path exponent, PIFA re-ranking weight; the fast tier's label-name and neighbour-vote
# weights are FastTierConfig.large_data_lexical_weight / large_data_neighbour_weight, the vote's k, power and max_df
# learner.xmc.neighbours.NeighbourConfig's defaults): chosen together on bench_xmc_honest.py's stride tune split,
# 2026-12-07 (P@1 0.5737; dev, measured once: 0.5812; docs/benchmarks.md).
LARGE_DATA_XR: dict[str, int | float] = {
    "negative_beam": 5,
    "man_min_parents": 40,
    "path_exponent": 0.6,
    "pifa_weight": 0.1,
}


def large_data_settings(n_documents: int) -> tuple[dict[str, int | bool | float], dict[str, int | float]]:
    """(TfidfConfig fields, XRConfig fields) that a tree head trained on `n_documents` documents uses where its
    own config does not set them: the large-data settings from LARGE_DATA_DOCUMENTS on, else none."""
    if n_documents < LARGE_DATA_DOCUMENTS:
        return {}, {}
    return dict(LARGE_DATA_TFIDF), dict(LARGE_DATA_XR)


@dataclass(frozen=True)
class TreeConfig(Params):
    """The hierarchical label tree: recursive balanced spherical 2-means on label features (PIFA).

    ``branching`` (a power of 2) is the out-degree of the cluster levels; the labels are split in halves
    until every leaf holds at most ``leaf_size`` labels (depth ceil(log2(L / leaf_size)) binary splits),
    then every log2(branching) binary levels make one tree level, counted from the leaves (the top level
    may have fewer than ``branching`` clusters, as in PECOS). Each 2-means runs at most
    ``kmeans_iterations`` iterations; ``seed`` makes the tree reproducible.
    """

    branching: int = 16
    leaf_size: int = 100
    kmeans_iterations: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("branching", self.branching, 2)
        if self.branching & (self.branching - 1):
            raise ValueError(f"branching must be a power of 2 (2, 4, 8, 16, ...); got {self.branching}")
        check_int("leaf_size", self.leaf_size, 2)
        check_int("kmeans_iterations", self.kmeans_iterations, 1)
        check_int("seed", self.seed, 0)


@dataclass(frozen=True)
class XRConfig(Params):
    """XR-Linear: per-level linear rankers over a label tree, beam search at inference.

    Training (per tree level, for every node: one binary linear classifier per child, trained on the
    documents routed to the node):
    - ``negatives``: ``"tfn"`` routes a document to the nodes holding one of its labels (teacher
      forcing); ``"tfn+man"`` adds the nodes the levels above put in its top-``beam`` (matcher-aware).
      ``"+led"`` (``"tfn+led"``, ``"tfn+man+led"``) adds label-embedding negatives, as LightDXML
      samples them: the nodes holding the ``led_neighbours`` labels nearest to each of the document's
      labels, by cosine similarity of the labels' PIFA vectors (the label features the tree is built
      from; ties go to the label earlier in tree order, labels with cosine 0 are never neighbours).
      Finding them is an exact sparse product Z Z^T in blocks (tibkat-gnd, 41k labels: ~55 G
      multiply-adds, minutes of CPU); ``led_neighbours`` is ignored without ``"+led"``.
    - ``loss``: ``"squared_hinge"`` (L2-loss SVM, PECOS's default), ``"hinge"`` or ``"logistic"``,
      each solved in the dual by liblinear with penalty ``C`` (``positive_weight`` multiplies C for
      positive documents), bias feature value ``bias`` (0 = no bias), tolerance ``tol`` and at most
      ``max_iter`` passes.
    - ``weight_threshold``: weights with |w| below it are dropped (PECOS: 0.1), which keeps the model
      sparse; the bias is always kept.
    - ``n_jobs``: worker processes (-1: all CPU cores this process may use); results do not depend on it.

    Inference: ``beam`` nodes per level; a node's score is its parent's score to the power
    ``path_exponent`` times ``transform(w . x + b)`` (PECOS: exponent 1, the plain product down the path,
    with "l3-hinge": exp(-max(1 - v, 0)^3)), so scores lie in [0, 1]. An exponent below 1 discounts the
    ancestors geometrically (the root's children count ``path_exponent**depth``): the label's own
    ranker decides more (tibkat-gnd dev, PECOS's other settings: P@1 0.488 -> 0.505 with 0.4; bench/bench_xmc.py).
    The matcher-aware negatives in training are the top ``negative_beam`` nodes of that beam search (0: all
    ``beam`` of them; a smaller number routes fewer documents to each node, which is what training time grows with),
    and only below the levels of more than ``man_min_parents`` nodes (0: every level; at a level of 2 nodes a beam
    of 5 routes every document to both, and the layer below trains on all documents).

    ``pifa_weight`` > 0 keeps the labels' PIFA vectors z_l (entries below ``pifa_threshold`` dropped)
    and re-ranks the labels of the beam by (path score + pifa_weight * max(cos(x, z_l), 0)) / (1 + pifa_weight),
    still in [0, 1]: a nearest-centroid vote that helps tail labels with one or two training documents.

    Overlapping leaf clusters (label disentanglement, Liu et al., NeurIPS 2021; ``learner.xmc.overlap``):
    with ``overlap_lambda`` > 1, after training, the training documents are beam-searched through the
    matcher and every label gets up to ``overlap_lambda`` leaf clusters: its own plus the other leaves
    its positive documents are routed to most often (at least ``overlap_min_count`` of them; a document
    counts the best ``overlap_beam`` leaves of its beam: 1, its top leaf, by default; PECOS's example
    counts its whole beam of 10, which with a few hundred leaves also counts near misses). Each extra
    leaf holds a duplicate *slot* of the label (trained on all the label's positives); the rankers are
    retrained, and this alternates ``overlap_rounds`` times. At inference the scores of a label's slots
    that the beam reached are merged into one by ``overlap_merge`` (``"max"`` or ``"mean"``), so outputs
    keep one column per label. ``overlap_lambda`` = 1 (the default) is the plain non-overlapping tree.
    """

    tree: TreeConfig = field(default_factory=TreeConfig)
    beam: int = 10
    negatives: str = "tfn+man"
    negative_beam: int = 0
    man_min_parents: int = 0
    led_neighbours: int = 10
    loss: str = "squared_hinge"
    C: float = 1.0
    positive_weight: float = 1.0
    bias: float = 1.0
    tol: float = 0.1
    max_iter: int = 100
    weight_threshold: float = 0.1
    transform: str = "l3-hinge"
    path_exponent: float = 0.4
    pifa_weight: float = 0.05
    pifa_threshold: float = 0.01
    n_jobs: int = -1
    overlap_lambda: int = 1
    overlap_rounds: int = 1
    overlap_merge: str = "max"
    overlap_min_count: int = 1
    overlap_beam: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.tree, dict):  # from JSON
            object.__setattr__(self, "tree", TreeConfig.from_dict(self.tree))
        if not isinstance(self.tree, TreeConfig):
            raise ValueError(f"tree must be a TreeConfig; got {type(self.tree).__name__}")
        check_int("beam", self.beam, 1)
        check_int("negative_beam", self.negative_beam, 0)
        check_int("man_min_parents", self.man_min_parents, 0)
        if self.negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {', '.join(NEGATIVES)}; got {self.negatives!r}")
        check_int("led_neighbours", self.led_neighbours, 1)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        check_float(self, "C", 0.0, float("inf"), low_open=True, high_open=True)
        check_float(self, "positive_weight", 0.0, float("inf"), low_open=True, high_open=True)
        check_float(self, "bias", 0.0, float("inf"), low_open=False, high_open=True)
        check_float(self, "tol", 0.0, float("inf"), low_open=True, high_open=True)
        check_int("max_iter", self.max_iter, 1)
        check_float(self, "weight_threshold", 0.0, float("inf"), low_open=False, high_open=True)
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}; got {self.transform!r}")
        check_float(self, "path_exponent", 0.0, float("inf"), low_open=False, high_open=True)
        check_float(self, "pifa_weight", 0.0, float("inf"), low_open=False, high_open=True)
        check_float(self, "pifa_threshold", 0.0, 1.0, low_open=False, high_open=True)
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int) or self.n_jobs == 0 or self.n_jobs < -1:
            raise ValueError(f"n_jobs must be a positive integer or -1 (all cores); got {self.n_jobs!r}")
        check_int("overlap_lambda", self.overlap_lambda, 1)
        check_int("overlap_rounds", self.overlap_rounds, 1)
        if self.overlap_merge not in MERGES:
            raise ValueError(f"overlap_merge must be one of {', '.join(MERGES)}; got {self.overlap_merge!r}")
        check_int("overlap_min_count", self.overlap_min_count, 1)
        check_int("overlap_beam", self.overlap_beam, 1)

    @property
    def overlapping(self) -> bool:
        """Whether training gives labels extra leaf clusters (``overlap_lambda`` > 1)."""
        return self.overlap_lambda > 1

    @property
    def training_beam(self) -> int:
        """How many of the beam's nodes per document become matcher-aware negatives in training."""
        return self.negative_beam or self.beam

    def beam_negatives_at(self, n_parents: int) -> bool:
        """Whether the layer below a level of ``n_parents`` nodes is trained with the beam's negatives."""
        return self.matcher_aware and n_parents > self.man_min_parents

    @property
    def matcher_aware(self) -> bool:
        """Whether training adds the matcher-aware negatives (the beam of the layers above)."""
        return "man" in self.negatives.split("+")

    @property
    def label_embedding(self) -> bool:
        """Whether training adds the label-embedding negatives (the nodes of the nearest labels)."""
        return "led" in self.negatives.split("+")
