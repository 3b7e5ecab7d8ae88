"""Decision rules and calibration for multi-label scores (numpy only).

Everything works on shortlists: for each document the model's top-K candidate labels ``idx`` (N, K) and their
scores ``scores`` (N, K) in [0, 1], best first. A label outside a document's shortlist is "not predicted". With
K = L (small label sets) this is the dense case.

- ``fit_platt`` / ``apply_platt``: Platt scaling p' = sigmoid(a * logit(p) + b), fitted on validation entries,
  so scores shown to experts and used by uncertainty strategies are calibrated probabilities.
- ``tune_rule``: the global threshold (on a 0.01 grid) that maximises micro-F1 or macro-F1 on validation, with or
  without an "at least one label per document" fallback (the top candidate when nothing passes), and optionally
  per-label thresholds for labels with enough validation positives.
- ``DecisionRule.apply`` turns shortlists into a sparse 0/1 prediction matrix; ``top_k_rule`` predicts the k best.
- ``tick_curve`` / ``curve_add`` / ``pretick_threshold`` / ``tick_stats``: how often a pre-ticked suggestion is
  right at each grid threshold (from out-of-fold shortlists, plus experts' stored decisions), and the lowest
  threshold whose pre-ticks are right at least a given share of the time (a precision floor).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import betaincinv, expit

from learner import metrics

__all__ = [
    "PRETICK_CONFIDENCE",
    "DecisionRule",
    "apply_platt",
    "calibrated_tick_curve",
    "curve_add",
    "fit_platt",
    "precision_lower_bound",
    "pretick_threshold",
    "tick_curve",
    "tick_stats",
    "top_k_rule",
    "tune_rule",
]

GRID = 100  # thresholds j / GRID for j in 1..GRID
OBJECTIVES = ("micro_f1", "macro_f1")
_EPS = 1e-6


def _check_shortlists(idx: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    idx = np.asarray(idx)
    scores = np.asarray(scores, dtype=np.float64)
    if idx.ndim != 2 or scores.shape != idx.shape:
        raise ValueError(f"idx and scores must be 2-D (N, K) of the same shape; got {idx.shape} and {scores.shape}")
    if idx.size and idx.dtype.kind not in "iu":
        raise ValueError(f"idx must hold integer label indices; got dtype {idx.dtype}")
    if scores.size and (np.nanmin(scores) < 0 or np.nanmax(scores) > 1 or np.isnan(scores).any()):
        raise ValueError("scores must be probabilities in [0, 1]")
    return idx.astype(np.int64), scores


def _truth(Y_true: Any, n_docs: int) -> sp.csr_matrix:
    truth = sp.csr_matrix(Y_true, dtype=np.float64)
    if truth.shape[0] != n_docs:
        raise ValueError(f"Y_true has {truth.shape[0]} rows but the shortlists have {n_docs}")
    truth.eliminate_zeros()
    truth.data[:] = 1.0
    return truth


def _hits(truth: sp.csr_matrix, idx: np.ndarray) -> np.ndarray:
    """(N, K) bool: whether each shortlisted label is a true label of its document (-1 padding is never a hit)."""
    hits = np.zeros(idx.shape, dtype=bool)
    for row in range(idx.shape[0]):
        positives = truth.indices[truth.indptr[row] : truth.indptr[row + 1]]
        if positives.size:
            hits[row] = np.isin(idx[row], positives)
    return hits


# --- calibration ------------------------------------------------------------------------------------------------
def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, _EPS, 1 - _EPS)
    return np.log(clipped) - np.log1p(-clipped)


def fit_platt(scores: Any, targets: Any, *, iterations: int = 50) -> tuple[float, float]:
    """Fits p' = sigmoid(a * logit(p) + b) to 0/1 targets by Newton's method on the log loss.

    scores (M,) probabilities, targets (M,) 0/1. Uses Platt's smoothed targets so a perfectly separable set
    gives finite parameters. Returns (a, b); (1, 0) is the identity. Raises ValueError on bad input.
    """
    p = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(targets, dtype=np.float64).ravel()
    if p.shape != y.shape or p.size == 0:
        raise ValueError("scores and targets must be non-empty and of the same length")
    positives = float(y.sum())
    negatives = float(y.size - positives)
    if positives == 0 or negatives == 0:
        return 1.0, 0.0
    smooth = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    z = _logit(p)

    def loss(a: float, b: float) -> float:
        t = a * z + b
        return float(np.sum(np.logaddexp(0.0, t) - smooth * t))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iterations):
        q = expit(a * z + b)
        grad = np.array([np.dot(q - smooth, z), np.sum(q - smooth)])
        w = q * (1 - q) + 1e-12
        hess = np.array([[np.dot(w, z * z), np.dot(w, z)], [np.dot(w, z), np.sum(w)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-4:  # backtracking: Newton steps can overshoot on extreme logits
            candidate = loss(a - scale * step[0], b - scale * step[1])
            if candidate <= current:
                break
            scale /= 2
        else:
            break
        a, b, current = a - scale * step[0], b - scale * step[1], candidate
        if np.abs(scale * step).max() < 1e-8:
            break
    if not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
        return 1.0, 0.0  # a non-increasing map would reverse the ranking: keep the scores as they are
    return float(a), float(b)


def apply_platt(scores: Any, a: float, b: float) -> np.ndarray:
    """sigmoid(a * logit(p) + b), elementwise, as float32."""
    z = _logit(np.asarray(scores, dtype=np.float64))
    return expit(a * z + b).astype(np.float32)


# --- rules ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecisionRule:
    """Predict a shortlisted label when its probability is >= its threshold; optionally always at least one."""

    threshold: float = 0.5
    at_least_one: bool = False
    per_label: dict[int, float] = field(default_factory=dict)
    top_k: int | None = None  # when set: exactly the k best (thresholds ignored)
    objective: str = ""
    validation_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "at_least_one": self.at_least_one,
            "per_label": [[int(label), float(t)] for label, t in sorted(self.per_label.items())],
            "top_k": self.top_k,
            "objective": self.objective,
            "validation_score": self.validation_score,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecisionRule:
        try:
            return cls(
                threshold=float(data["threshold"]),
                at_least_one=bool(data["at_least_one"]),
                per_label={int(label): float(t) for label, t in data.get("per_label", [])},
                top_k=data.get("top_k"),
                objective=str(data.get("objective", "")),
                validation_score=data.get("validation_score"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid decision rule {data!r}: {exc}") from exc

    def remapped(self, old_to_new: Any) -> DecisionRule:
        """The rule with its per-label thresholds moved to new label indices (``old_to_new[old] = new``)."""
        if not self.per_label:
            return self
        mapping = np.asarray(old_to_new)
        return dataclasses.replace(self, per_label={int(mapping[label]): t for label, t in self.per_label.items()})

    def apply(self, idx: Any, scores: Any, n_labels: int) -> sp.csr_matrix:
        """(N, K) shortlists -> (N, n_labels) CSR 0/1 predictions."""
        idx, scores = _check_shortlists(idx, scores)
        valid = idx >= 0
        if self.top_k is not None:
            chosen = valid & (np.arange(idx.shape[1])[None, :] < self.top_k)
        else:
            thresholds = np.full(idx.shape, self.threshold)
            if self.per_label:
                labels = np.array(list(self.per_label), dtype=np.int64)
                values = np.array(list(self.per_label.values()))
                order = np.argsort(labels)
                pos = np.searchsorted(labels[order], idx)
                pos = np.clip(pos, 0, len(labels) - 1)
                found = labels[order][pos] == idx
                thresholds = np.where(found, values[order][pos], thresholds)
            chosen = valid & (scores >= thresholds)
            if self.at_least_one and idx.shape[1]:
                empty = ~chosen.any(axis=1) & valid[:, 0]
                chosen[empty, 0] = True
        rows, cols = np.nonzero(chosen)
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, idx[rows, cols])), shape=(idx.shape[0], n_labels))


def top_k_rule(k: int) -> DecisionRule:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    return DecisionRule(top_k=k, objective=f"top_{k}")


def _curves(idx: np.ndarray, scores: np.ndarray, hits: np.ndarray, n_labels: int) -> dict[str, np.ndarray]:
    """Per-label counts of predicted entries and true hits for every grid threshold, without and with the
    at-least-one fallback. Arrays are (n_labels, GRID + 1): column j = threshold j / GRID."""
    valid = idx >= 0
    bins = np.minimum(np.floor(scores * GRID + 1e-9).astype(np.int64), GRID)  # entry predicted at j iff bin >= j
    labels = np.where(valid, idx, 0)

    def cumulative_from_top(counts: np.ndarray) -> np.ndarray:
        return np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]

    def histogram(label: np.ndarray, bin_: np.ndarray, weight: np.ndarray) -> np.ndarray:
        flat = np.bincount(label * (GRID + 1) + bin_, weights=weight, minlength=n_labels * (GRID + 1))
        return flat.reshape(n_labels, GRID + 1)

    flat_valid = valid.ravel()
    pred = cumulative_from_top(
        histogram(labels.ravel()[flat_valid], bins.ravel()[flat_valid], np.ones(flat_valid.sum()))
    )
    tp = cumulative_from_top(
        histogram(labels.ravel()[flat_valid], bins.ravel()[flat_valid], hits.ravel()[flat_valid].astype(np.float64))
    )
    # Fallback: a document whose best score falls below threshold j gets its top candidate anyway, i.e. for
    # every j > bin(top): add one prediction (and a hit if it is right) to that candidate's label.
    has_top = valid[:, 0] if idx.shape[1] else np.zeros(idx.shape[0], dtype=bool)
    top_label = labels[has_top, 0]
    top_bin = bins[has_top, 0]
    start = np.minimum(top_bin + 1, GRID + 1)  # first threshold where the fallback kicks in
    add_pred = histogram(top_label, np.minimum(start, GRID), (start <= GRID).astype(np.float64))
    add_tp = histogram(top_label, np.minimum(start, GRID), ((start <= GRID) & hits[has_top, 0]).astype(np.float64))
    return {
        "pred": pred,
        "tp": tp,
        "pred_fb": pred + np.cumsum(add_pred, axis=1),
        "tp_fb": tp + np.cumsum(add_tp, axis=1),
    }


def _f1(tp: np.ndarray, pred: np.ndarray, positives: np.ndarray) -> np.ndarray:
    denominator = pred + positives
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp, dtype=np.float64), where=denominator > 0)


def tune_rule(
    idx: Any,
    scores: Any,
    Y_true: Any,
    *,
    objective: str = "micro_f1",
    per_label_min_positives: int | None = None,
) -> DecisionRule:
    """The decision rule that maximises `objective` ("micro_f1" or "macro_f1", macro over labels present in
    Y_true) on validation shortlists: a global threshold j/100, with or without the at-least-one fallback.

    With `per_label_min_positives`, labels having at least that many validation positives then get their own
    F1-maximising threshold (the others keep the global one). Ties go to the higher threshold.
    idx, scores (N, K) shortlists best first; Y_true (N, L) 0/1 (dense or sparse).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    idx, scores = _check_shortlists(idx, scores)
    truth = _truth(Y_true, idx.shape[0])
    n_labels = truth.shape[1]
    if idx.size and idx.max() >= n_labels:
        raise ValueError(f"idx holds label {idx.max()} but Y_true has {n_labels} labels")
    hits = _hits(truth, idx)
    curves = _curves(idx, scores, hits, n_labels)
    positives = np.asarray(truth.sum(axis=0)).ravel()  # (L,)
    present = positives > 0
    best: tuple[float, float, bool] = (-1.0, 0.5, False)
    for fallback in (False, True):
        tp = curves["tp_fb" if fallback else "tp"][:, 1:]  # (L, GRID) thresholds 0.01 .. 1.00
        pred = curves["pred_fb" if fallback else "pred"][:, 1:]
        if objective == "micro_f1":
            values = _f1(tp.sum(axis=0), pred.sum(axis=0), np.full(GRID, positives.sum()))
        else:
            if not present.any():
                values = np.zeros(GRID)
            else:
                values = _f1(tp[present], pred[present], positives[present][:, None]).mean(axis=0)
        j = int(np.flatnonzero(values == values.max())[-1])
        if values[j] > best[0] + 1e-12:
            best = (float(values[j]), (j + 1) / GRID, fallback)
    score, threshold, fallback = best
    per_label: dict[int, float] = {}
    if per_label_min_positives is not None:
        tp = curves["tp"][:, 1:]
        pred = curves["pred"][:, 1:]
        for label in np.flatnonzero(positives >= per_label_min_positives):
            values = _f1(tp[label], pred[label], np.full(GRID, positives[label]))
            if values.max() > 0:
                per_label[int(label)] = (int(np.flatnonzero(values == values.max())[-1]) + 1) / GRID
    rule = DecisionRule(threshold=threshold, at_least_one=fallback, per_label=per_label, objective=objective)
    if per_label:  # the score of the rule as it will be applied
        from learner import metrics

        predicted = rule.apply(idx, scores, n_labels)
        score = metrics.micro_f1(truth, predicted) if objective == "micro_f1" else metrics.macro_f1(truth, predicted)
    return dataclasses.replace(rule, validation_score=float(score))


def tune_decision(
    idx: np.ndarray, raw: np.ndarray, targets: sp.csr_matrix, *, calibrate: bool, per_label_min_positives: int
) -> tuple[tuple[float, float], dict[str, DecisionRule], dict[str, float]]:
    """Calibration, decision rules and validation metrics from a model's validation shortlists.

    ``idx`` (N, K) label indices (-1 = empty slot), ``raw`` (N, K) uncalibrated scores, ``targets`` (N, L) 0/1 CSR.
    Returns ``(platt, rules, metrics)``: Platt parameters (identity unless ``calibrate``); the rules "micro_f1"
    (global threshold), "macro_f1" (per-label thresholds where validation has ``per_label_min_positives``
    positives) and "per_label" (per-label thresholds, the micro rule's global threshold elsewhere); micro/macro-F1
    at their rules, P@1/3/5 (as far as K allows) and ``n_val``. Both tiers tune with this.
    """
    valid = idx >= 0  # (N, K)
    platt = (1.0, 0.0)
    if calibrate:
        hits = np.zeros(idx.shape, dtype=bool)  # (N, K)
        for row in range(idx.shape[0]):
            positives = targets.indices[targets.indptr[row] : targets.indptr[row + 1]]
            hits[row] = np.isin(idx[row], positives) & valid[row]
        platt = fit_platt(raw[valid], hits[valid])
    probs = np.where(valid, apply_platt(raw, *platt), np.float32(0.0)).astype(np.float32)  # (N, K)
    micro = tune_rule(idx, probs, targets, objective="micro_f1")
    rules = {
        "micro_f1": micro,
        "macro_f1": tune_rule(
            idx, probs, targets, objective="macro_f1", per_label_min_positives=per_label_min_positives
        ),
        "per_label": dataclasses.replace(
            tune_rule(idx, probs, targets, objective="micro_f1", per_label_min_positives=per_label_min_positives),
            threshold=micro.threshold,
            at_least_one=micro.at_least_one,
            objective="per_label",
        ),
    }
    n_labels = targets.shape[1]
    scores = {
        "micro_f1": metrics.micro_f1(targets, rules["micro_f1"].apply(idx, probs, n_labels)),
        "macro_f1": metrics.macro_f1(targets, rules["macro_f1"].apply(idx, probs, n_labels)),
        "P@1": metrics.precision_at_k(targets, idx, 1),
        "n_val": float(targets.shape[0]),
    }
    for top in (3, 5):
        if idx.shape[1] >= top:
            scores[f"P@{top}"] = metrics.precision_at_k(targets, idx, top)
    return platt, rules, scores


# --- pre-ticks under a precision floor ------------------------------------------------------------------------------
_TICK_EPS = 1e-4  # in grid units: a probability within 1e-6 below a grid point counts at it (float32 rounding)


def _tick_bins(probs: np.ndarray) -> np.ndarray:
    """Grid bin of each probability: an entry is ticked at threshold j / GRID iff its bin >= j."""
    return np.minimum(np.floor(probs * GRID + _TICK_EPS).astype(np.int64), GRID)


def _cumulative(bins: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(GRID + 1,) counts: entry j = total weight of the bins >= j."""
    counts = np.bincount(bins, weights=weights, minlength=GRID + 1)
    return np.cumsum(counts[::-1])[::-1]


def tick_curve(idx: Any, probs: Any, targets: Any) -> dict[str, Any]:
    """How often a pre-tick would be right at each grid threshold, from validation (or out-of-fold) shortlists.

    ``idx`` (N, K) label indices (-1 = empty slot), ``probs`` (N, K) CALIBRATED probabilities, ``targets`` (N, L)
    0/1 gold labels (CSR or dense). Returns the JSON-able curve ``{"grid": 100, "ticked": [int] * 101,
    "correct": [int] * 101, "positives": int, "documents": int}``: ``ticked[j]`` shortlist entries have a
    probability >= j / 100, ``correct[j]`` of them are gold labels; ``positives`` gold (document, label) entries
    (for recall), ``documents`` = N. Raises ValueError on bad input.
    """
    idx, probs = _check_shortlists(idx, probs)
    truth = _truth(targets, idx.shape[0])
    if idx.size and idx.max() >= truth.shape[1]:
        raise ValueError(f"idx holds label {idx.max()} but targets has {truth.shape[1]} labels")
    valid = idx >= 0  # (N, K)
    hits = _hits(truth, idx) & valid  # (N, K)
    bins = _tick_bins(probs[valid])
    return {
        "grid": GRID,
        "ticked": [int(x) for x in _cumulative(bins, np.ones(bins.size))],
        "correct": [int(x) for x in _cumulative(bins, hits[valid].astype(np.float64))],
        "positives": int(truth.nnz),
        "documents": int(idx.shape[0]),
    }


def calibrated_tick_curve(idx: Any, raw: Any, targets: Any, platt: tuple[float, float]) -> dict[str, Any]:
    """``tick_curve`` of raw validation or out-of-fold shortlists (idx (N, k), -1 = empty; raw scores) once Platt
    scaling ``platt`` = (a, b) has calibrated them, as a model serves them."""
    idx = np.asarray(idx)
    probs = np.where(idx >= 0, apply_platt(raw, *platt), np.float32(0.0)).astype(np.float32)
    return tick_curve(idx, probs, targets)


def _check_curve(curve: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ticked, correct) as int64 arrays of length GRID + 1 after checking the curve's shape and counts."""
    if not isinstance(curve, dict):
        raise ValueError(f"a tick curve must be a dict as tick_curve returns; got {type(curve).__name__}")
    missing = [key for key in ("grid", "ticked", "correct", "positives", "documents") if key not in curve]
    if missing:
        raise ValueError(f"the tick curve lacks {', '.join(missing)}")
    if curve["grid"] != GRID:
        raise ValueError(f"the tick curve's grid must be {GRID}; got {curve['grid']!r}")
    arrays = []
    for key in ("ticked", "correct"):
        try:
            values = np.asarray(curve[key], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the tick curve's {key} must be a list of counts: {exc}") from exc
        if values.shape != (GRID + 1,):
            raise ValueError(f"the tick curve's {key} must hold {GRID + 1} counts; got shape {values.shape}")
        if not np.all(np.isfinite(values)) or np.any(values < 0) or np.any(values != np.round(values)):
            raise ValueError(f"the tick curve's {key} must hold whole counts >= 0")
        arrays.append(values.astype(np.int64))
    ticked, correct = arrays
    if np.any(correct > ticked):
        raise ValueError("the tick curve counts more correct ticks than ticks at some threshold")
    if np.any(np.diff(ticked) > 0) or np.any(np.diff(correct) > 0):
        raise ValueError("the tick curve's counts must not grow with the threshold")
    for key in ("positives", "documents"):
        value = curve[key]
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"the tick curve's {key} must be a whole number >= 0; got {value!r}")
    return ticked, correct


def curve_add(curve: dict[str, Any], scores: Any, accepted: Any, *, counts: Any = None) -> dict[str, Any]:
    """A copy of ``curve`` with observed suggestions added: ``scores`` (M,) the probabilities they were shown with,
    ``accepted`` (M,) whether the expert kept each (True: a right tick), ``counts`` (M,) optional whole numbers of
    observations each pair stands for (default 1). Accepted ones also count as gold ``positives``; the copy's
    ``decisions`` holds how many observations were added in all (with any the curve had). Raises ValueError."""
    ticked, correct = _check_curve(curve)
    p = np.asarray(scores, dtype=np.float64).ravel()
    ok = np.asarray(accepted).ravel()
    if ok.shape != p.shape:
        raise ValueError(f"scores and accepted must have the same length; got {p.size} and {ok.size}")
    if ok.size and (ok.dtype.kind not in "biu" or not np.isin(ok, (0, 1)).all()):
        raise ValueError("accepted must hold booleans (or 0/1)")
    if p.size and (np.isnan(p).any() or p.min() < 0 or p.max() > 1):
        raise ValueError("scores must be probabilities in [0, 1]")
    if counts is None:
        n = np.ones(p.size)
    else:
        n = np.asarray(counts, dtype=np.float64).ravel()
        if n.shape != p.shape:
            raise ValueError(f"counts must have one entry per score; got {n.size} for {p.size}")
        if n.size and (not np.all(np.isfinite(n)) or n.min() < 0 or np.any(n != np.round(n))):
            raise ValueError("counts must be whole numbers >= 0")
    bins = _tick_bins(p)
    good = n * ok.astype(bool)
    out = dict(curve)
    out["ticked"] = [int(x) for x in ticked + np.rint(_cumulative(bins, n)).astype(np.int64)]
    out["correct"] = [int(x) for x in correct + np.rint(_cumulative(bins, good)).astype(np.int64)]
    out["positives"] = int(curve["positives"]) + round(float(good.sum()))
    out["decisions"] = int(curve.get("decisions", 0)) + round(float(n.sum()))
    return out


# How sure the evidence must make us that pre-ticks at a threshold are right at least the floor of the time: the one-
# sided Clopper-Pearson lower bound of their precision at this confidence must reach the floor. Chosen on a held-out
# part of the GoEmotions train file (5 seeds at 20-2,000 random labels, bench/results/tune-pretick-goemotions/): with
# the point estimate alone (confidence 0) seeds pre-ticked at held-out precision 0.44-0.69 from 50 to 2,000 labels
# (thresholds resting on a handful of out-of-fold ticks, picked where those happened to be right); at 0.9 two seeds
# still fell below the 0.7 floor (0.53 at 200 labels, 0.68 at 500); at 0.95 every seed that pre-ticked held it
# (lowest 0.73), for a pre-tick recall of 0.05-0.10 at 2,000 labels instead of 0.09-0.15.
PRETICK_CONFIDENCE = 0.95


def precision_lower_bound(correct: Any, ticked: Any, confidence: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound(s) of a precision ``correct / ticked`` at ``confidence`` (0: the point
    estimate itself); 0 where nothing is ticked or nothing is right. The beta quantile is scipy.special's
    `betaincinv` (what scipy.stats.beta.ppf computes), which spares the web process scipy.stats' 0.7 s import in its
    first request."""

    c = np.asarray(correct, dtype=np.float64)
    t = np.asarray(ticked, dtype=np.float64)
    if confidence == 0:
        return np.where(t > 0, c / np.maximum(t, 1.0), 0.0)
    lower = betaincinv(np.maximum(c, 1e-12), np.maximum(t - c, 0.0) + 1.0, 1.0 - confidence)
    return np.where((t > 0) & (c > 0), lower, 0.0)


def pretick_threshold(
    curve: dict[str, Any], floor: float, *, min_ticks: int = 5, confidence: float = PRETICK_CONFIDENCE
) -> float | None:
    """The lowest grid threshold t = j / 100 (j >= 1) whose pre-ticks are right at least ``floor`` of the time, with
    ``confidence``.

    Precisely: ``ticked[j] >= min_ticks``; the lower confidence bound of ``correct[j] / ticked[j]``
    (``precision_lower_bound``) is at least ``floor``; and at every j' >= j with at least ``min_ticks`` ticks,
    ``correct[j'] / ticked[j'] >= floor`` (a higher threshold never does worse than the floor either; grid points
    with fewer ticks are too thin to judge). None when no threshold qualifies: then nothing should be pre-ticked.
    """
    ticked, correct = _check_curve(curve)
    if isinstance(floor, bool) or not isinstance(floor, int | float) or not 0 < float(floor) <= 1:
        raise ValueError(f"floor must be a share in (0, 1]; got {floor!r}")
    if isinstance(min_ticks, bool) or not isinstance(min_ticks, int) or min_ticks < 1:
        raise ValueError(f"min_ticks must be a positive integer; got {min_ticks!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= float(confidence) < 1:
        raise ValueError(f"confidence must be in [0, 1); got {confidence!r}")
    judged = ticked >= min_ticks
    meets = correct >= float(floor) * ticked - 1e-9
    ok = ~judged | meets
    suffix_ok = np.cumprod(ok[::-1])[::-1].astype(bool)  # every j' >= j is fine
    sure = precision_lower_bound(correct, ticked, float(confidence)) >= float(floor) - 1e-9
    candidates = np.flatnonzero(suffix_ok & judged & sure)
    candidates = candidates[candidates >= 1]
    if candidates.size == 0:
        return None
    return round(int(candidates[0]) / GRID, 2)


def tick_stats(curve: dict[str, Any], threshold: float) -> dict[str, Any]:
    """What pre-ticking at ``threshold`` does on the curve's evidence: ``{"precision", "recall", "ticked"}``
    (precision None without ticks, recall None without positives). Thresholds between grid points are rounded up
    to the next one (a tick needs a probability >= the threshold)."""
    ticked, correct = _check_curve(curve)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= float(threshold) <= 1:
        raise ValueError(f"threshold must be a probability in [0, 1]; got {threshold!r}")
    j = min(math.ceil(float(threshold) * GRID - _TICK_EPS), GRID)
    positives = int(curve["positives"])
    return {
        "precision": float(correct[j] / ticked[j]) if ticked[j] else None,
        "recall": float(correct[j] / positives) if positives else None,
        "ticked": int(ticked[j]),
    }


PREDICT_OBJECTIVES: tuple[str, ...] = ("micro_f1", "macro_f1", "per_label")


class RuleBasedPredictions:
    """``predict`` and ``decision`` of a model with ``labels``, ``config.shortlist``, ``platt``, ``rules`` and a
    ``predict_topk(inputs, k)`` returning calibrated shortlists (both tiers)."""

    labels: list[str]
    config: Any
    platt: tuple[float, float]
    rules: dict[str, DecisionRule]
    tick_curve: dict[str, Any] | None = None  # pre-tick precision per threshold (``tick_curve``), where tuned

    def predict_topk(self, inputs: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def predict(self, inputs: Any, *, objective: str = "micro_f1") -> sp.csr_matrix:
        """(N, L) 0/1 predictions by the decision rule tuned for `objective` (micro_f1, macro_f1, per_label)."""
        if objective not in PREDICT_OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(PREDICT_OBJECTIVES)}; got {objective!r}")
        rule = self.rules.get(objective) or self.rules["micro_f1"]
        k = min(len(self.labels), self.config.shortlist)
        idx, probs = self.predict_topk(inputs, k)
        return rule.apply(idx, probs, len(self.labels))

    @property
    def decision(self) -> dict[str, Any]:
        """The calibration and the decision rules, and the pre-tick curve where the model has one, as JSON values."""
        out: dict[str, Any] = {
            "platt": {"a": self.platt[0], "b": self.platt[1]},
            "rules": {name: rule.to_dict() for name, rule in self.rules.items()},
        }
        if self.tick_curve is not None:
            out["tick_curve"] = self.tick_curve
        return out
