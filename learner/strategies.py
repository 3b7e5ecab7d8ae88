"""Multi-label query strategies (SCIENCE.md §4): pure functions of model outputs, embeddings and label counts.

A strategy is a *scorer* (one number per document, higher = label it first) and a *batch rule* that turns
scores into a batch: ``top`` (the n best), ``kmeans`` (the best document of each of n k-means clusters among
the best candidates) or ``ranked`` (Cardoso et al.'s ranked batch: uncertainty traded against distance to what
is labelled and already picked). Names are ``scorer`` or ``scorer+kmeans`` / ``scorer+ranked``; ``default``
resolves to ``DEFAULT_STRATEGY``. modAL's ``modAL.multilabel`` strategies are peers under ``modal_*`` names
(called directly, dense probabilities only).

Scorers read each document's shortlist: ``probs`` (N, K) of its K best labels (every label when K = L) with
their label ids ``idx`` (N, K); the labels outside the shortlist have probabilities near 0 and add nothing to
uncertainty, so a scorer costs O(N x K), never O(N x L), and with K = L it is the dense strategy. Scoring works
chunk by chunk (``score_pool``), the batch rule once on the whole pool's scores (``select_batch``).
``cold_start`` picks diverse, representative documents when there is no model yet. numpy (scikit-learn's
k-means, modAL for the peers) only: no torch.

Three scorers read the deployed decision rule or the labelled counts, not only the probabilities:
``decision`` is the uncertainty of the rule the platform applies: each shortlisted label's distance to *its own*
threshold (the rule's per-label threshold where it has one, ``per_label``, else the global one) in logit space,
so a label tuned to 0.2 is uncertain at 0.2, not at 0.5. ``positives`` seeks positives of rare labels: the
expected number of positives the document would add, each weighted by (1 + n_l)^-1 (n_l the labelled positives
of label l), so labels never labelled count fully; ``rarity`` instead weighs the *uncertainty* (entropy) of a
label by its rarity, and a document the model is sure carries a rare label scores little there and high here.
``badge`` is BADGE (Ash et al. 2020) on shortlists: a scorer and its own batch rule (the name alone resolves
to ``("badge", "badge")``). The document's gradient embedding g_i = r_i ⊗ x_i (r_i the sparse residuals
p_l - yhat_l over its shortlist, yhat_l the rule's prediction; x_i its embedding) is never built: norms and
inner products factor as ||r||·||x|| and <r_i, r_j>·<x_i, x_j>. The scorer gives ||r_i|| (the per-chunk
ranking, no embeddings needed); the batch rule recomputes the residuals from the pool's shortlists and picks n
documents by k-means++ seeding in gradient space among the max(10·n, 2000) with the largest ||g||, so a batch is
both uncertain (large gradients) and diverse (far apart in gradient space) without a k-means fit.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

__all__ = [
    "AUTO",
    "AUTO_ARMS",
    "BATCH_RULES",
    "COVERAGE_RULES",
    "DEFAULT_STRATEGY",
    "DEFAULT_STRATEGY_LARGE",
    "LARGE_LABEL_SPACE",
    "MODAL_STRATEGIES",
    "OWN_BATCH_RULES",
    "SCORERS",
    "STRATEGIES",
    "adaptive_uncertainty",
    "auto_arm",
    "badge_batch",
    "cardinality_inconsistency",
    "cold_start",
    "decision_margin",
    "default_for",
    "gradient_norm",
    "kmeans_batch",
    "mean_binary_entropy",
    "modal_select",
    "probcover_delta",
    "random_scores",
    "ranked_batch",
    "rare_positives",
    "rarity_entropy",
    "resolve",
    "score_pool",
    "select",
    "select_batch",
    "select_top",
    "threshold_margin",
]

logger = logging.getLogger(__name__)

SCORERS: dict[str, str] = {
    "random": "uniform random scores, the baseline every strategy must beat; O(N)",
    "uncertainty": "mean over the shortlist of the binary entropy of p_l (most uncertain first); O(N·K)",
    "margin": "closeness of the most uncertain label to the threshold, -min_l |p_l - t|; O(N·K)",
    "cardinality": "|#labels with p_l >= t - mean #labels per document| (label-count surprise); O(N·K)",
    "adaptive": "Li & Guo 2013: max-margin uncertainty^beta x cardinality inconsistency^(1-beta), beta 0.5; O(N·K)",
    "rarity": "binary entropy weighted by label rarity (1 + labelled positives)^-1/2, summed over the shortlist; "
    "O(N·K)",
    "decision": "closeness to the deployed rule's own thresholds (per-label where tuned), "
    "-min_l |logit p_l - logit t_l|; O(N·K)",
    "badge": "BADGE (Ash et al. 2020): gradient norm ||p_l - yhat_l|| over the shortlist; O(N·K)",
    "positives": "expected new positives of rare labels: sum over the shortlist of p_l·(1 + labelled positives)^-1; "
    "O(N·K)",
    "typiclust": "coverage, no model needed (learner.coverage.typiclust, Hacohen et al. 2022): the most typical "
    "document of the biggest cluster with the fewest labelled documents; for the low-budget phase",
    "probcover": "coverage, no model needed (learner.coverage.probcover, Yehuda et al. 2022): greedy max coverage "
    "of delta-balls, delta by ProbCover's purity rule; for the low-budget phase",
    "anchors": "label-name anchors, no model needed (learner.coverage.label_anchors): for the labels with the "
    "fewest positives, rarest first, the pool document most similar to the label's name",
}
BATCH_RULES: dict[str, str] = {
    "top": "the n best scores; O(N)",
    "anchors": "one document per label, rarest label first, by cosine similarity to the label-name vectors; "
    "O(min(n, L)·N·D)",
    "kmeans": "k-means (n clusters) on the embeddings of the 10·n best, the best of each cluster; O(10·n·n·D·iter)",
    "ranked": "Cardoso et al.'s ranked batch over the 10·n best: alpha·distance to the labelled and picked "
    "+ (1-alpha)·score, one pick at a time; O(10·n·(|labelled| + n)·D)",
    "badge": "k-means++ seeding in gradient space (r_i ⊗ x_i, never built) among the max(10·n, 2000) largest "
    "gradients; O(N·(K + D) + n·max(10·n, 2000)·(K + D))",
    "typiclust": "TypiClust on the pool's and the labelled documents' embeddings: k-means on a 20,000-document "
    "sample, typicality within clusters; O(N·D·min(M + n, 500)) (6 s at N = 100,000, n = 250)",
    "probcover": "ProbCover on the pool's and the labelled documents' embeddings: the delta-ball graph of a "
    "20,000-document sample at most; O(S²·D), S = min(N, 20,000) (11 s at N = 100,000 with the delta rule, 4 s "
    "with a kept delta)",
}
# Scorers whose batch rule is part of the method: the bare name resolves to this rule, not to "top".
OWN_BATCH_RULES: dict[str, str] = {
    "badge": "badge",
    "typiclust": "typiclust",
    "probcover": "probcover",
    "anchors": "anchors",
}
COVERAGE_RULES = ("typiclust", "probcover")  # batch rules that read embeddings only: no model, no shortlists
MODAL_STRATEGIES: dict[str, str] = {
    "modal_min_confidence": "modAL min_confidence (Esuli & Sebastiani): lowest min_l p_l; dense O(N·L)",
    "modal_avg_confidence": "modAL avg_confidence: highest mean_l p_l; dense O(N·L)",
    "modal_max_score": "modAL max_score: highest max_l p_l·(pred_l - 1/2); dense O(N·L)",
    "modal_avg_score": "modAL avg_score: highest mean_l p_l·(pred_l - 1/2); dense O(N·L)",
}
# Chosen by `python -m learner.simulate` on GoEmotions (3 seeds): the best micro-F1 and P@1 AULC of 13 strategies,
# 2 % above random (docs/benchmarks.md, "Active learning"; the reason in docs/architecture.md).
# The adaptive strategy (issue 14): coverage (AUTO_COVERAGE) in the low-budget phase, then a chooser among AUTO_ARMS.
AUTO = "auto"
# ProbCover replaced TypiClust on 2026-12-06 (GoEmotions train -> dev, 5 seeds, docs/benchmarks.md): micro-F1 0.371
# against TypiClust's 0.343 at 100 labels, and auto's labels to random's micro-F1 at 2,000 0.82x instead of 0.90x.
AUTO_COVERAGE = "probcover"
AUTO_ARMS = ("decision+kmeans", "badge", "typiclust", "random+kmeans")
DEFAULT_STRATEGY = AUTO  # chosen on GoEmotions train -> dev (docs/benchmarks.md, "Labels saved against random")
# Above LARGE_LABEL_SPACE labels the fast tier is a label tree and a model trained on a few hundred documents knows a
# sliver of the labels: its uncertainty is noise, and on tibkat-gnd (41,218 labels) cardinality+kmeans halved the
# P@5 of random picks while a stratified random sample beat them (docs/benchmarks.md).
DEFAULT_STRATEGY_LARGE = "random+kmeans"
LARGE_LABEL_SPACE = 1000  # the fast tier's flat_max_labels


def default_for(n_labels: int | None) -> str:
    """The measured default for a label space of ``n_labels`` (None: a small one)."""
    return DEFAULT_STRATEGY_LARGE if n_labels is not None and n_labels > LARGE_LABEL_SPACE else DEFAULT_STRATEGY


STRATEGIES: dict[str, str] = {
    **SCORERS,
    **{
        f"{name}+{rule}": f"{SCORERS[name]}; batch: {BATCH_RULES[rule]}"
        for name in SCORERS
        if name != "random" and name not in OWN_BATCH_RULES
        for rule in ("kmeans", "ranked")
    },
    **{name: f"{SCORERS[name]}; batch: {BATCH_RULES[name]}" for name in OWN_BATCH_RULES},
    # A stratified random sample: one random document from each of n k-means clusters of 10·n random ones.
    "random+kmeans": f"{SCORERS['random']}; batch: {BATCH_RULES['kmeans']} (one random document per cluster)",
    AUTO: f"adaptive: coverage ({AUTO_COVERAGE}) until learner.chooser.switch_at(labels) labelled documents, then a "
    f"Thompson-sampling chooser over {', '.join(AUTO_ARMS)} rewarded by the positives of rare labels each batch "
    "brings (learner.chooser); the cost of the arm it runs, O(N·K) to O(S²·D)",
    **MODAL_STRATEGIES,
}
CANDIDATES_PER_PICK = 10  # the kmeans / ranked batch rules look at the 10·n best-scored documents
PROBCOVER_CLUSTERS, PROBCOVER_MAX_CLUSTERS = 20, 500  # k-means pseudo-classes of ProbCover's delta rule
BADGE_MIN_CANDIDATES = 2000  # badge seeds among max(10·n, 2000) documents: small batches still see a wide pool

COLD_START_FIT_SAMPLE = 20_000


def _check_probs(probs: Any) -> np.ndarray:
    array = np.asarray(probs, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, L); got shape {array.shape}")
    if array.shape[1] == 0:
        raise ValueError("probs has no label columns")
    if not np.isfinite(array).all():
        raise ValueError("probs contains NaN or infinite values")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise ValueError("probs must lie in [0, 1]")
    return array


def _check_threshold(threshold: float) -> float:
    """A decision threshold in [0, 1] (a tuned rule may sit at either end: "every label" or "none")."""
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1]; got {threshold}")
    return float(threshold)


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    """Elementwise H(p) = -p log2 p - (1-p) log2 (1-p) in bits, 0 at p = 0 and 1."""
    q = 1.0 - p
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log2(p), 0.0) - np.where(q > 0, q * np.log2(q), 0.0)


def random_scores(n: int, seed: int) -> np.ndarray:
    """(n,) uniform random scores in [0, 1), reproducible for a seed."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    return np.random.default_rng(seed).random(int(n))


def mean_binary_entropy(probs: np.ndarray) -> np.ndarray:
    """(N,) mean over labels of H(p) = -p log2 p - (1-p) log2 (1-p), in bits (1 at p = 0.5, 0 at 0 and 1).

    probs (N, L) in [0, 1]. Sigmoid outputs are independent per label, so uncertainty is per label and
    then averaged; entropy over the row as if it were a distribution would be wrong.
    """
    return _binary_entropy(_check_probs(probs)).mean(axis=1)


def threshold_margin(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(N,) ``-min_l |p_l - threshold|``: highest for the document with a label closest to the threshold.

    probs (N, L) in [0, 1].
    """
    p = _check_probs(probs)
    return -np.abs(p - _check_threshold(threshold)).min(axis=1)


def cardinality_inconsistency(probs: np.ndarray, threshold: float, mean_cardinality: float) -> np.ndarray:
    """(N,) ``|#labels with p_l >= threshold - mean_cardinality|``.

    probs (N, L) in [0, 1]; ``mean_cardinality`` is the mean number of labels per labelled document.
    A document predicted with far more or fewer labels than usual is probably mis-predicted.
    """
    p = _check_probs(probs)
    cut = _check_threshold(threshold)
    if not np.isfinite(mean_cardinality) or mean_cardinality < 0:
        raise ValueError(f"mean_cardinality must be a finite number >= 0; got {mean_cardinality}")
    predicted = (p >= cut).sum(axis=1)  # (N,)
    return np.abs(predicted - float(mean_cardinality))


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1.0 - 1e-6)
    return np.log(q) - np.log1p(-q)


def adaptive_uncertainty(probs: np.ndarray, threshold: float, mean_cardinality: float, beta: float = 0.5) -> np.ndarray:
    """(N,) Li & Guo (2013), "Active learning with multi-label SVM classification": u^beta * c^(1-beta), as logs.

    u is the max-margin uncertainty 1 / sepmargin, sepmargin = min f over the predicted labels - max f over the
    others, with decision values f_l = logit(p_l) - logit(threshold) (a document with no label above the
    threshold has its best label as the predicted one); c is the cardinality inconsistency
    |#predicted - mean_cardinality|. probs (N, K) shortlists (K >= 2). The paper picks beta per round by
    retraining once per candidate beta; that costs a retrain per beta per round, so beta is fixed here
    (0.5 weighs both equally).
    """
    p = _check_probs(probs)
    cut = _check_threshold(threshold)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1]; got {beta}")
    if p.shape[1] < 2:
        raise ValueError("adaptive needs at least 2 labels per document")
    f = _logit(p) - _logit(np.array(cut))  # (N, K)
    positive = f >= 0
    count = positive.sum(axis=1)  # (N,)
    best = f.argmax(axis=1)
    positive[np.arange(len(p))[count == 0], best[count == 0]] = True  # at least one predicted label
    lowest_positive = np.where(positive, f, np.inf).min(axis=1)
    highest_negative = np.where(positive, -np.inf, f).max(axis=1)
    highest_negative = np.where(np.isfinite(highest_negative), highest_negative, lowest_positive - 1.0)
    separation = np.abs(lowest_positive - highest_negative)  # (N,) >= 0
    inconsistency = cardinality_inconsistency(p, cut, mean_cardinality)
    return -beta * np.log(separation + 1e-6) + (1.0 - beta) * np.log(inconsistency + 1e-6)


# The largest |logit p - logit t| once both are clipped to [1e-6, 1 - 1e-6]: the score of an empty shortlist.
_MAX_LOGIT_DISTANCE = 2.0 * float(np.log((1.0 - 1e-6) / 1e-6))


def _check_shortlists(idx: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64, probs float64), both (N, K); ids < 0 are empty slots."""
    p = _check_probs(probs)
    ids = np.asarray(idx)
    if ids.shape != p.shape:
        raise ValueError(f"idx {ids.shape} and probs {p.shape} must have the same shape")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"idx must hold integer label ids; got dtype {ids.dtype}")
    return ids.astype(np.int64, copy=False), p


def _label_weights(ids: np.ndarray, label_counts: Any, power: float) -> np.ndarray:
    """(N, K) (1 + n_l)^-power for each shortlisted label l (0 in empty slots); label_counts (L,) holds n_l."""
    counts = np.asarray(label_counts, dtype=np.float64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("label_counts must be a 1-D array of non-negative counts")
    if ids.size and ids.max() >= len(counts):
        raise ValueError(f"idx holds label {int(ids.max())} but label_counts has {len(counts)} labels")
    if not np.isfinite(power) or power < 0:
        raise ValueError(f"power must be a finite number >= 0; got {power}")
    return np.where(ids >= 0, (1.0 + counts[np.maximum(ids, 0)]) ** -float(power), 0.0)


def _label_thresholds(ids: np.ndarray, threshold: float, per_label: dict[int, float] | None) -> np.ndarray:
    """(N, K) each shortlisted label's threshold: ``per_label[l]`` where the rule has one, else ``threshold``.

    The same lookup as ``learner.decision.DecisionRule.apply``: one searchsorted over the sorted label ids,
    O(N·K·log |per_label|).
    """
    thresholds = np.full(ids.shape, _check_threshold(threshold))  # (N, K)
    if not per_label:
        return thresholds
    labels = np.fromiter(per_label.keys(), dtype=np.int64, count=len(per_label))  # (P,)
    values = np.fromiter(per_label.values(), dtype=np.float64, count=len(per_label))  # (P,)
    if not ((values >= 0.0) & (values <= 1.0)).all():
        raise ValueError("per_label thresholds must be in [0, 1]")
    order = np.argsort(labels)
    labels, values = labels[order], values[order]
    pos = np.clip(np.searchsorted(labels, ids), 0, len(labels) - 1)  # (N, K)
    found = (labels[pos] == ids) & (ids >= 0)
    return np.where(found, values[pos], thresholds)


def rarity_entropy(idx: np.ndarray, probs: np.ndarray, label_counts: Any, power: float = 0.5) -> np.ndarray:
    """(N,) sum over the shortlist of H(p_l) * (1 + n_l)^-power, n_l the labelled positives of label l.

    A document that is uncertain about labels with few labelled examples scores higher than one uncertain
    about well-known labels: the tail bonus. idx (N, K) label ids (-1: empty slot, ignored), probs (N, K).
    """
    ids, p = _check_shortlists(idx, probs)
    return (_binary_entropy(p) * _label_weights(ids, label_counts, power)).sum(axis=1)


def rare_positives(idx: np.ndarray, probs: np.ndarray, label_counts: Any, power: float = 1.0) -> np.ndarray:
    """(N,) the expected number of new positives of rare labels: sum over the shortlist of p_l * (1 + n_l)^-power.

    n_l is the labelled positives of label l (``label_counts`` (L,)); a label never labelled weighs 1, one with
    9 positives 0.1. idx (N, K) label ids (-1: empty slot, ignored), probs (N, K) calibrated probabilities.
    Unlike ``rarity_entropy`` this seeks *positives*, not uncertainty: a document the model is sure carries an
    unlabelled label (p = 0.95) scores high here and near 0 there. At 41,218 labels most labels have no
    positives, so what finds the tail is the shortlist (the learner's, label-name prior included).
    """
    ids, p = _check_shortlists(idx, probs)
    return (p * _label_weights(ids, label_counts, power)).sum(axis=1)


def decision_margin(
    idx: np.ndarray, probs: np.ndarray, threshold: float = 0.5, per_label: dict[int, float] | None = None
) -> np.ndarray:
    """(N,) uncertainty of the deployed decision rule: ``-min_l |logit(p_l) - logit(t_l)|`` over the shortlist.

    t_l is label l's own threshold (``per_label[l]``, as ``learner.decision.DecisionRule.per_label``, else
    ``threshold``); p and t are clipped to [1e-6, 1 - 1e-6]. Highest for the document with a label closest to
    flipping its prediction; logits make 0.02 vs 0.01 as far apart as 0.5 vs 0.67. idx (N, K) label ids
    (-1: empty slot, ignored; a document without any scores the lowest possible value), probs (N, K).
    """
    ids, p = _check_shortlists(idx, probs)
    distance = np.abs(_logit(p) - _logit(_label_thresholds(ids, threshold, per_label)))  # (N, K)
    nearest = np.where(ids >= 0, distance, np.inf).min(axis=1)  # (N,)
    return -np.minimum(nearest, _MAX_LOGIT_DISTANCE)


def _residuals(ids: np.ndarray, p: np.ndarray, threshold: float, per_label: dict[int, float] | None) -> np.ndarray:
    """(N, K) r_l = p_l - yhat_l (yhat_l = p_l >= t_l): the cross-entropy gradient w.r.t. label l's logit when
    the rule's own prediction is taken as the label; 0 in empty slots."""
    predicted = p >= _label_thresholds(ids, threshold, per_label)  # (N, K)
    return np.where(ids >= 0, p - predicted, 0.0)


def gradient_norm(
    idx: np.ndarray, probs: np.ndarray, threshold: float = 0.5, per_label: dict[int, float] | None = None
) -> np.ndarray:
    """(N,) ||r_i||, r_i the sparse residuals p_l - yhat_l over document i's shortlist (yhat_l = 1 when p_l is
    at least label l's threshold: ``per_label[l]`` or ``threshold``); the labels outside it count 0.

    BADGE's gradient embedding is g_i = r_i ⊗ x_i, so ||g_i|| = ||r_i||·||x_i||: this is the part that needs no
    embeddings (the ``badge`` scorer). idx (N, K) label ids (-1: empty slot), probs (N, K).
    """
    ids, p = _check_shortlists(idx, probs)
    return np.sqrt((_residuals(ids, p, threshold, per_label) ** 2).sum(axis=1))


def resolve(strategy: str, n_labels: int | None = None) -> tuple[str, str]:
    """``(scorer, batch rule)`` of a strategy name (``default`` -> ``default_for(n_labels)``); a bare scorer name
    has the ``top`` rule unless it has its own (``OWN_BATCH_RULES``: ``badge`` -> ``("badge", "badge")``); modAL
    peers give ``(name, "modal")``. Unknown names raise ``ValueError`` listing the valid ones."""
    name = default_for(n_labels) if strategy == "default" else strategy
    if name == AUTO:
        return AUTO, AUTO
    if name in MODAL_STRATEGIES:
        return name, "modal"
    if name in STRATEGIES:
        scorer, _, rule = name.partition("+")
        return scorer, rule or OWN_BATCH_RULES.get(scorer, "top")
    raise ValueError(f"unknown strategy {strategy!r}; valid strategies: default, {', '.join(STRATEGIES)}")


def auto_arm(state: dict[str, Any] | None, n_labelled: int, n_labels: int, seed: int = 0) -> str:
    """The strategy ``auto`` runs next: ``AUTO_COVERAGE`` while the project is in the low-budget phase
    (``learner.chooser.phase``), else the chooser's pick among ``AUTO_ARMS`` from its ``state``
    (``learner.chooser.ChooserState.to_dict()``; None or {}: nothing learnt yet)."""
    from learner import chooser

    if chooser.phase(n_labelled, n_labels) == chooser.COVERAGE:
        return AUTO_COVERAGE
    return chooser.choose(chooser.ChooserState.from_dict(state) if state else chooser.ChooserState(), AUTO_ARMS, seed)


def score_pool(
    strategy: str,
    probs: np.ndarray,
    *,
    idx: np.ndarray | None = None,
    threshold: float = 0.5,
    mean_cardinality: float = 1.0,
    label_counts: Any = None,
    per_label: dict[int, float] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Score documents (shortlists ``probs`` (N, K) of label ids ``idx``) with a strategy's scorer; returns (N,).

    ``decision`` and ``badge`` need ``idx`` and read the decision rule: ``threshold`` and its ``per_label``
    thresholds (label id -> threshold, as ``DecisionRule.per_label``); ``rarity`` and ``positives`` need ``idx``
    and ``label_counts`` (L,). Unknown names, and modAL peers (which select, not score), raise ``ValueError``.
    """
    scorer, rule = resolve(strategy)
    if rule == "modal":
        raise ValueError(f"{strategy} is a modAL peer: it selects from dense probabilities (use modal_select)")
    if rule == AUTO:
        raise ValueError("auto runs one of its arms: resolve it with auto_arm first")
    if scorer == "random" or rule in (*COVERAGE_RULES, "anchors"):  # rules that ignore the model's scores
        return random_scores(_check_probs(probs).shape[0], seed)
    if scorer == "uncertainty":
        return mean_binary_entropy(probs)
    if scorer == "margin":
        return threshold_margin(probs, threshold)
    if scorer == "cardinality":
        return cardinality_inconsistency(probs, threshold, mean_cardinality)
    if scorer == "adaptive":
        return adaptive_uncertainty(probs, threshold, mean_cardinality)
    if scorer in ("decision", "badge"):
        if idx is None:
            raise ValueError(f"{scorer} needs the shortlists' label ids (idx)")
        score = decision_margin if scorer == "decision" else gradient_norm
        return score(idx, probs, threshold, per_label)
    if idx is None or label_counts is None:
        raise ValueError(
            f"{scorer} needs the shortlists' label ids (idx) and the labelled positives per label (label_counts)"
        )
    if scorer == "positives":
        return rare_positives(idx, probs, label_counts)
    return rarity_entropy(idx, probs, label_counts)


def select_top(scores: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices (int64) of the ``n`` highest scores, best first; ``n`` is clipped to N.

    Equal scores are ordered by a shuffle seeded with ``seed``: deterministic for a seed, and not biased
    towards the start of the pool.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be 1-D (N,); got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("scores contains NaN")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    shuffled = np.random.default_rng(seed).permutation(values.shape[0])  # (N,)
    order = shuffled[np.argsort(-values[shuffled], kind="stable")]  # (N,)
    return order[: int(n)].astype(np.int64)


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (N, 1)
    return x / np.where(norms > 0, norms, 1.0)


def cold_start(embeddings: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct document indices (int64) that are diverse and representative: the first batch to label.

    k-means with ``n`` clusters on the L2-normalised embeddings (N, D) (fitted on a seeded sample of at
    most 20,000 documents, then every document is assigned), and for each cluster the document nearest
    its centroid, biggest clusters first. When duplicates leave fewer distinct points than ``n``, the
    rest is filled farthest-first (each new pick the document farthest from all picks so far). Returns
    every index when N <= n.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, D); got shape {x.shape}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("embeddings contains NaN or infinite values")
    n_docs = x.shape[0]
    n = int(n)
    if n_docs <= n:
        return np.arange(n_docs, dtype=np.int64)
    if n == 0:
        return np.empty(0, dtype=np.int64)

    x = _normalise_rows(x)
    rng = np.random.default_rng(seed)
    sample_size = min(n_docs, max(COLD_START_FIT_SAMPLE, 2 * n))
    sample = np.sort(rng.choice(n_docs, size=sample_size, replace=False)) if sample_size < n_docs else None
    fit_data = x if sample is None else x[sample]
    kmeans = KMeans(n_clusters=n, n_init=1, max_iter=100, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "fewer distinct clusters than n_clusters" on duplicated data
        kmeans.fit(fit_data)
    centers = kmeans.cluster_centers_.astype(np.float32)  # (n, D)

    # Assign every document to its nearest centre, in blocks to bound memory.
    assignment = np.empty(n_docs, dtype=np.int64)  # (N,)
    distance = np.empty(n_docs, dtype=np.float32)  # (N,)
    center_sq = (centers**2).sum(axis=1)  # (n,)
    for start in range(0, n_docs, 8192):
        block = x[start : start + 8192]  # (b, D)
        d2 = (block**2).sum(axis=1, keepdims=True) - 2.0 * block @ centers.T + center_sq  # (b, n)
        assignment[start : start + len(block)] = d2.argmin(axis=1)
        distance[start : start + len(block)] = d2.min(axis=1)

    sizes = np.bincount(assignment, minlength=n)  # (n,)
    picks: list[int] = []
    for cluster in np.argsort(-sizes, kind="stable"):
        if sizes[cluster] == 0:
            continue
        members = np.flatnonzero(assignment == cluster)
        picks.append(int(members[np.argmin(distance[members])]))
    if len(picks) < n:
        picks.extend(_farthest_first(x, picks, n - len(picks), rng))
    return np.asarray(picks, dtype=np.int64)


def _farthest_first(x: np.ndarray, picked: list[int], count: int, rng: np.random.Generator) -> list[int]:
    """Greedy k-center fill: ``count`` more indices, each the farthest from everything picked so far.

    Ties (e.g. among duplicates) are broken by a seeded random order.
    """
    order = rng.permutation(x.shape[0])  # (N,)
    xo = x[order]  # (N, D)
    nearest = np.full(x.shape[0], np.inf, dtype=np.float64)  # (N,) distance to the nearest pick
    taken = np.zeros(x.shape[0], dtype=bool)
    position = np.empty(x.shape[0], dtype=np.int64)
    position[order] = np.arange(x.shape[0])
    for index in picked:
        nearest = np.minimum(nearest, ((xo - x[index]) ** 2).sum(axis=1))
        taken[position[index]] = True
    extra: list[int] = []
    for _ in range(count):
        candidates = np.where(taken, -1.0, nearest)
        best = int(np.argmax(candidates))  # first in the seeded order among equals
        extra.append(int(order[best]))
        taken[best] = True
        nearest = np.minimum(nearest, ((xo - xo[best]) ** 2).sum(axis=1))
    return extra


# ---------------------------------------------------------------------------------------------------- batch rules
def _candidates(scores: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The CANDIDATES_PER_PICK * n best-scored indices, best first (seeded ties)."""
    return select_top(scores, min(len(scores), CANDIDATES_PER_PICK * n), seed=seed)


def _check_embeddings(embeddings: Any, n_docs: int, name: str = "embeddings") -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != n_docs:
        raise ValueError(f"{name} must be 2-D with {n_docs} rows; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def kmeans_batch(scores: np.ndarray, embeddings: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` indices: k-means with n clusters on the (L2-normalised) embeddings (N, D) of the 10·n best-scored
    documents, then the best-scored document of each cluster, best first. A batch of near-duplicates becomes
    one pick per group of similar documents."""
    from sklearn.cluster import KMeans

    values = np.asarray(scores, dtype=np.float64)
    x = _check_embeddings(embeddings, len(values))
    candidates = _candidates(values, n, seed)
    if len(candidates) <= n:
        return candidates
    points = _normalise_rows(x[candidates])  # (m, D)
    kmeans = KMeans(n_clusters=n, n_init=1, max_iter=50, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer distinct points than clusters
        assignment = kmeans.fit_predict(points)  # (m,)
    picks = []
    for cluster in range(n):
        members = np.flatnonzero(assignment == cluster)
        if len(members):
            picks.append(int(members[0]))  # candidates are best first: the first member is its best
    chosen = set(picks)
    picks += [i for i in range(len(candidates)) if i not in chosen][: n - len(picks)]  # empty clusters
    return candidates[np.sort(np.asarray(picks, dtype=np.int64))]


def ranked_batch(
    scores: np.ndarray, embeddings: np.ndarray, labelled_embeddings: np.ndarray | None, n: int, seed: int = 0
) -> np.ndarray:
    """Cardoso et al. (2017) ranked batch-mode active learning, as ``modAL.batch.ranked_batch`` computes it,
    over the 10·n best-scored documents: pick by pick, the candidate maximising
    alpha·(1 - 1/(1 + d)) + (1 - alpha)·score, d its Euclidean distance to the nearest labelled or already
    picked document and alpha = |candidates left| / (|candidates left| + |labelled and picked|). Scores are
    min-max scaled to [0, 1] first. modAL recomputes every distance per pick (O(n·m·|labelled|·D)); keeping each
    candidate's nearest distance makes it O(m·(|labelled| + n)·D). Without labelled documents the first pick is
    the best-scored one."""
    values = np.asarray(scores, dtype=np.float64)
    x = _check_embeddings(embeddings, len(values))
    candidates = _candidates(values, n, seed)
    points = x[candidates].astype(np.float64)  # (m, D)
    span = values[candidates].max() - values[candidates].min() if len(candidates) else 0.0
    uncertainty = (values[candidates] - values[candidates].min()) / span if span > 0 else np.zeros(len(candidates))
    nearest = np.full(len(candidates), np.inf)  # (m,) distance to the nearest labelled / picked document
    n_known = 0
    if labelled_embeddings is not None and len(labelled_embeddings):
        known = np.asarray(labelled_embeddings, dtype=np.float64)
        if known.ndim != 2 or known.shape[1] != x.shape[1]:
            raise ValueError(f"labelled_embeddings must be (n, {x.shape[1]}); got {known.shape}")
        n_known = known.shape[0]
        for start in range(0, n_known, 2048):
            block = known[start : start + 2048]  # (b, D)
            d2 = (points**2).sum(1)[:, None] - 2.0 * points @ block.T + (block**2).sum(1)[None, :]
            nearest = np.minimum(nearest, np.sqrt(np.maximum(d2.min(axis=1), 0.0)))
    taken = np.zeros(len(candidates), dtype=bool)
    picks: list[int] = []
    for _ in range(min(n, len(candidates))):
        left = int((~taken).sum())
        alpha = left / (left + n_known + len(picks))
        if n_known + len(picks) == 0:
            utility = uncertainty.copy()
        else:
            utility = alpha * (1.0 - 1.0 / (1.0 + nearest)) + (1.0 - alpha) * uncertainty
        utility[taken] = -np.inf
        best = int(np.argmax(utility))
        picks.append(best)
        taken[best] = True
        nearest = np.minimum(nearest, np.sqrt(((points - points[best]) ** 2).sum(axis=1)))
    return candidates[np.asarray(picks, dtype=np.int64)]


def badge_batch(
    idx: np.ndarray,
    probs: np.ndarray,
    embeddings: np.ndarray,
    n: int,
    *,
    threshold: float = 0.5,
    per_label: dict[int, float] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """BADGE (Ash et al. 2020) on shortlists: ``n`` indices (int64) by k-means++ seeding in gradient space.

    Document i's gradient embedding is g_i = r_i ⊗ x_i: r_i the sparse L-dim residuals p_l - yhat_l over its
    shortlist (``gradient_norm``; yhat_l from ``threshold`` and ``per_label``), x_i its embedding (N, D). g is
    never built: ||g_i||^2 = ||r_i||^2·||x_i||^2 and <g_i, g_j> = <r_i, r_j>·<x_i, x_j>, <r_i, r_j> summed over
    the labels the two shortlists share. Candidates are the max(10·n, 2000) documents with the largest ||g||
    (seeded ties); the first pick is the largest, each next one is drawn with probability proportional to its
    squared gradient distance to the nearest pick (seeded), so a near-duplicate of a pick is all but never drawn
    while a distant, still large gradient is likely. When every remaining candidate duplicates a pick, the
    largest remaining gradient is taken. O(N·(K + D)) for the norms, O(n·m·(K + D)) for m candidates. idx
    (N, K) label ids (-1: empty slot; distinct within a row), probs (N, K).
    """
    ids, p = _check_shortlists(idx, probs)
    x = _check_embeddings(embeddings, p.shape[0])
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    residuals = _residuals(ids, p, threshold, per_label)  # (N, K)
    squared_norms = (residuals**2).sum(axis=1) * np.einsum("nd,nd->n", x, x).astype(np.float64)  # (N,) ||g||^2
    size = min(len(p), max(CANDIDATES_PER_PICK * int(n), BADGE_MIN_CANDIDATES))
    candidates = select_top(squared_norms, size, seed=seed)  # (m,) largest gradients first
    if len(candidates) <= n:
        return candidates
    r = residuals[candidates]  # (m, K)
    labels = np.maximum(ids[candidates], 0)  # (m, K) empty slots point at label 0 with r = 0
    points = x[candidates].astype(np.float64)  # (m, D)
    g2 = squared_norms[candidates]  # (m,)
    dense = np.zeros(int(labels.max()) + 1)  # (L',) one pick's residuals, scattered and cleared per pick
    nearest = np.full(len(candidates), np.inf)  # (m,) squared gradient distance to the nearest pick
    taken = np.zeros(len(candidates), dtype=bool)
    rng = np.random.default_rng(seed)
    picks: list[int] = []
    for _ in range(int(n)):
        weights = np.where(taken, 0.0, nearest)  # (m,) inf before the first pick
        total = float(weights.sum())
        if not picks or not np.isfinite(total) or total <= 0.0:
            pick = int(np.flatnonzero(~taken)[0])  # the largest remaining gradient
        else:
            pick = int(np.searchsorted(np.cumsum(weights), rng.random() * total, side="right"))
            pick = min(pick, int(np.flatnonzero(weights)[-1]))  # rounding at the very end
        picks.append(pick)
        taken[pick] = True
        np.add.at(dense, labels[pick], r[pick])
        inner = (r * dense[labels]).sum(axis=1) * (points @ points[pick])  # (m,) <g_i, g_pick>
        dense[labels[pick]] = 0.0
        distance = g2 + g2[pick] - 2.0 * inner  # (m,)
        distance = np.where(distance > 1e-9 * (g2 + g2[pick]), distance, 0.0)  # cancellation: duplicates are 0
        nearest = np.minimum(nearest, distance)
    return candidates[np.asarray(picks, dtype=np.int64)]


def probcover_delta(embeddings: np.ndarray, n_labels: int | None, *, seed: int = 0) -> float:
    """ProbCover's delta for a pool (``learner.coverage.probcover_delta``) with ``n_labels`` k-means clusters (at
    most 500; 20 when unknown). It reads only the embeddings: it changes little while a few documents leave the
    pool (GoEmotions, 20,000 documents: 0.33-0.37 over k-means seeds and 3,000 documents labelled), and costs more
    than the picks (10 s of 14 s at 100,000 documents and 500 clusters, one core)."""
    from learner import coverage

    clusters = min(max(n_labels or PROBCOVER_CLUSTERS, 2), PROBCOVER_MAX_CLUSTERS)
    return coverage.probcover_delta(embeddings, n_clusters=clusters, seed=seed)


def select_batch(
    strategy: str,
    scores: np.ndarray,
    n: int,
    *,
    embeddings: np.ndarray | None = None,
    labelled_embeddings: np.ndarray | None = None,
    idx: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    threshold: float = 0.5,
    per_label: dict[int, float] | None = None,
    n_labels: int | None = None,
    delta: float | None = None,
    label_vectors: np.ndarray | None = None,
    label_counts: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """The batch rule of ``strategy`` on the pool's scores (N,): ``n`` indices (int64), in pick order.

    ``typiclust`` and ``probcover`` ignore the scores: they cover the pool's ``embeddings`` given the
    ``labelled_embeddings``; ProbCover's ``delta`` is given (the platform keeps it per encoder) or comes from
    ``probcover_delta`` (its purity rule). ``anchors`` ignores them too: it reads the label-name prior's
    ``label_vectors`` (L, D) and the labelled positives per label, ``label_counts`` (L,).

    ``+kmeans``, ``+ranked`` and ``badge`` need the pool's ``embeddings`` (N, D); ``+ranked`` uses the labelled
    documents' ``labelled_embeddings`` (n_l, D) as well. ``badge`` works in gradient space: it needs the pool's
    shortlists ``idx`` and ``probs`` (N, K) and the rule (``threshold``, ``per_label``), and ranks by its own
    gradient norms (||r_i||, the badge scores, times ||x_i||), so ``scores`` only has to cover the pool.
    """
    _, rule = resolve(strategy)
    if rule == "modal":
        raise ValueError(f"{strategy} is a modAL peer: use modal_select")
    if rule == AUTO:
        raise ValueError("auto runs one of its arms: resolve it with auto_arm first")
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or np.isnan(values).any():
        raise ValueError("scores must be 1-D without NaN")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    if rule == "top" or n == 0:
        return select_top(values, n, seed=seed)
    if embeddings is None:
        raise ValueError(f"{strategy} needs the pool's embeddings for its {rule} batch rule")
    if rule == "anchors":
        from learner import coverage

        if label_vectors is None or label_counts is None:
            raise ValueError(f"{strategy} needs the label-name vectors and the labelled positives per label")
        return coverage.label_anchors(embeddings, label_vectors, label_counts, int(n), seed=seed)
    if rule == "typiclust":
        from learner import coverage

        return coverage.typiclust(embeddings, labelled_embeddings, int(n), seed=seed)
    if rule == "probcover":
        from learner import coverage

        if delta is None:
            delta = probcover_delta(embeddings, n_labels, seed=seed)
        return coverage.probcover(embeddings, labelled_embeddings, int(n), delta=delta, seed=seed)
    if rule == "badge":
        if idx is None or probs is None:
            raise ValueError(f"{strategy} needs the pool's shortlists (idx, probs) for its gradient embeddings")
        if len(probs) != len(values):
            raise ValueError(f"probs has {len(probs)} rows but there are {len(values)} scores")
        return badge_batch(idx, probs, embeddings, int(n), threshold=threshold, per_label=per_label, seed=seed)
    if rule == "kmeans":
        return kmeans_batch(values, embeddings, int(n), seed=seed)
    return ranked_batch(values, embeddings, labelled_embeddings, int(n), seed=seed)


class _Fixed:
    """A stand-in classifier for modAL: rows of X are pool indices; answers with the given probabilities."""

    def __init__(self, probs: np.ndarray, threshold: float) -> None:
        self.probs = probs
        self.threshold = threshold

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.probs[np.asarray(X, dtype=np.int64).ravel()]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X) >= self.threshold).astype(np.int64)


def modal_select(strategy: str, probs: np.ndarray, n: int, threshold: float = 0.5) -> np.ndarray:
    """A modAL peer (``modal_*``), called as modAL ships it on dense probabilities (N, L): ``n`` indices."""
    import modAL.multilabel as modal

    if strategy not in MODAL_STRATEGIES:
        raise ValueError(f"unknown modAL strategy {strategy!r}; valid: {', '.join(MODAL_STRATEGIES)}")
    p = _check_probs(probs)
    n = min(int(n), p.shape[0])
    if n == 0:
        return np.empty(0, dtype=np.int64)
    function = getattr(modal, strategy.removeprefix("modal_"))
    picks, _ = function(_Fixed(p, _check_threshold(threshold)), np.arange(p.shape[0])[:, None], n_instances=n)
    return np.asarray(picks, dtype=np.int64).ravel()


def select(
    strategy: str,
    n: int,
    *,
    idx: np.ndarray,
    probs: np.ndarray,
    n_labels: int,
    threshold: float = 0.5,
    mean_cardinality: float = 1.0,
    label_counts: Any = None,
    embeddings: np.ndarray | None = None,
    labelled_embeddings: np.ndarray | None = None,
    per_label: dict[int, float] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Score the whole pool (shortlists idx/probs (N, K) over ``n_labels`` labels) and pick a batch of ``n``.

    The simulator's entry point; the platform scores in chunks with ``score_pool`` and calls ``select_batch``.
    ``per_label`` holds the decision rule's per-label thresholds (``decision``, ``badge``). modAL peers get dense
    (N, n_labels) probabilities rebuilt from the shortlists (K must equal n_labels).
    """
    scorer, rule = resolve(strategy)
    if rule == "modal":
        if np.asarray(idx).shape[1] != n_labels:
            raise ValueError(f"{strategy} needs every label's probability (a {n_labels}-wide shortlist)")
        dense = np.zeros((len(idx), n_labels))
        np.put_along_axis(dense, np.asarray(idx), np.asarray(probs, dtype=np.float64), axis=1)
        return modal_select(scorer, dense, n, threshold)
    scores = score_pool(
        strategy,
        probs,
        idx=idx,
        threshold=threshold,
        mean_cardinality=mean_cardinality,
        label_counts=label_counts,
        per_label=per_label,
        seed=seed,
    )
    return select_batch(
        strategy,
        scores,
        n,
        embeddings=embeddings,
        labelled_embeddings=labelled_embeddings,
        idx=idx,
        probs=probs,
        threshold=threshold,
        per_label=per_label,
        n_labels=n_labels,
        seed=seed,
    )
