"""The extreme multi-label fast tier: XR-Linear (PECOS-style) on sparse features, CPU only, no torch.

``pifa(X, Y)`` -> ``LabelTree.build(label_features, TreeConfig())`` -> ``XRLinear.train(X, Y, XRConfig())``
-> ``save(dir)`` / ``XRLinear.load(dir)`` -> ``predict_topk(X, k)``. Features come from
``learner.features.TfidfFeaturizer`` (or any (N, F) matrix, e.g. cached embeddings).

Also: ``XREnsemble`` (several trees, mean score) and ``LabelNameMatcher`` + ``blend_topk`` (a label whose
name occurs in the text gets a bonus learned from the training data; it also reaches labels without
training documents) and ``NeighbourVoter`` (the labels of the most similar training documents vote; blended
like the matcher). Modules: ``config``, ``tree``, ``solver`` (liblinear per node, forked workers), ``model``,
``ensemble``, ``lexical``, ``neighbours``, ``overlap`` (overlapping leaf clusters: ``XRConfig.overlap_lambda``).
"""

from learner.xmc.config import TreeConfig, XRConfig
from learner.xmc.ensemble import XREnsemble
from learner.xmc.lexical import LabelNameMatcher, LexicalConfig, blend_topk
from learner.xmc.model import XRLinear
from learner.xmc.neighbours import NeighbourConfig, NeighbourVoter
from learner.xmc.tree import LabelTree, pifa

__all__ = [
    "LabelNameMatcher",
    "LabelTree",
    "LexicalConfig",
    "NeighbourConfig",
    "NeighbourVoter",
    "TreeConfig",
    "XRConfig",
    "XREnsemble",
    "XRLinear",
    "blend_topk",
    "pifa",
]
