"""Does active learning pay on this project? Labels its picks saved (or cost) against random picks, from its own data.

A project that labels an unbiased evaluation set (a uniform random sample of the pool, labelled blind by the same
experts, never trained on) already owns a random control: it needs no extra labels for one. ``estimate`` replays
both arms with the project's own learner:

- **Cross-fitting.** The labelled evaluation documents are split into two seeded folds. For fold f the held fold is
  the test set and the other fold, in a seeded random order, is the *random arm*'s training pool; then the roles
  swap. Every value is the mean over both folds and over ``orders`` random orders of the random arm.
- **The picks arm** is the documents the project's strategy picked, in the order they were labelled. The fast tier
  (the project's config and label-name prior) is trained on the first n of each arm for n on a grid (10, 20, 40,
  ... up to ``n_random``, the random arm's pool: half the labelled evaluation set) and measured on the held fold;
  the picks arm also at a few larger n, up to every pick, so that picks worse than random still get a number.
- **The estimate.** The target is the random arm's micro-F1 at ``n_random``; the picks need ``labels_picks``
  labels to reach it (first crossing, linearly interpolated: ``learner.savings.labels_to_reach``; at the grid's
  first size an upper bound) and the ratio is ``labels_picks / n_random`` (below 1: the picks saved labels).
- **The interval** is a percentile bootstrap over the held-out evaluation documents: each draw resamples the
  documents of each held fold with replacement and recomputes every trained model's micro-F1 from its stored 0/1
  predictions (no retraining), then the curves, the target and the ratio. A draw in which the picks never reach the
  target has an infinite ratio; percentiles are taken by rank, so the upper end may be "never" (``high`` None).
  Macro-F1 is estimated the same way, as a second opinion.

The verdict: ``saves`` when the whole interval is below 1 (keep the strategy), ``costs`` when it is above 1
(random picks would have been better so far: ``favoured`` is "random"), else ``undecided``; ``not_enough_data``
(with the reason) below ``min_evaluation`` labelled evaluation documents or ``min_picks`` picks.

What it cannot tell: anything beyond ``n_random`` labels; the picks arm is the path the project took (documents
chosen by the models of that time), not what the strategy would pick from scratch; and the interval covers which
evaluation documents were drawn, not the luck of the random orders. numpy, scipy and the learner only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from learner.savings import labels_to_reach

__all__ = [
    "FOLDS",
    "MIN_EVALUATION",
    "MIN_PICKS",
    "N_BOOT",
    "ORDERS",
    "Labelled",
    "estimate",
    "picks_grid",
    "random_grid",
]

logger = logging.getLogger(__name__)

MIN_EVALUATION = 20  # labelled evaluation documents (10 per fold: the random arm's pool and the test set)
MIN_PICKS = 20
FOLDS = 2
ORDERS = 3  # random orders of the random arm's pool per fold
N_BOOT = 1000
START = 10  # the first size of the grid; it doubles from there
EXTRA_PICK_POINTS = 4  # sizes of the picks arm beyond n_random (geometric, the last one every pick)
METRICS = ("micro_f1", "macro_f1")


@dataclass(frozen=True, eq=False)
class Labelled:
    """N labelled documents: texts and/or embeddings (N, D), and their 0/1 labels (N, L) over the label list."""

    Y: Any
    texts: Sequence[str] | None = None
    embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        Y = sp.csr_matrix(self.Y, dtype=np.float32)
        Y.eliminate_zeros()
        if Y.data.size and not np.all(Y.data == 1.0):
            raise ValueError("Y must contain only 0 and 1")
        object.__setattr__(self, "Y", Y)
        if self.texts is None and self.embeddings is None:
            raise ValueError("documents need texts, embeddings or both")
        if self.texts is not None and len(self.texts) != Y.shape[0]:
            raise ValueError(f"{len(self.texts)} texts but {Y.shape[0]} rows of labels")
        if self.embeddings is not None and (self.embeddings.ndim != 2 or self.embeddings.shape[0] != Y.shape[0]):
            raise ValueError(f"embeddings must be ({Y.shape[0]}, D); got {self.embeddings.shape}")

    def __len__(self) -> int:
        return int(self.Y.shape[0])

    def inputs(self, rows: np.ndarray, *, texts: bool, embeddings: bool) -> Any:
        """learner.fast.Inputs of the documents ``rows``, with what the model reads."""
        from learner.fast import Inputs

        if texts and self.texts is None:
            raise ValueError("the learner's features need the documents' texts")
        if embeddings and self.embeddings is None:
            raise ValueError("the learner's features (or the label-name prior) need the documents' embeddings")
        return Inputs(
            texts=[self.texts[int(i)] for i in rows] if texts and self.texts is not None else None,
            embeddings=self.embeddings[rows] if embeddings and self.embeddings is not None else None,
        )


# --- the grids ----------------------------------------------------------------------------------------------------
def random_grid(n_random: int, *, start: int = START) -> list[int]:
    """Training sizes of both arms up to ``n_random``: start, 2 start, 4 start, ... (those up to 3/4 of it), then
    ``n_random``; three evenly spaced sizes when that gives fewer than three."""
    if n_random < 3:
        raise ValueError(f"the random arm needs at least 3 documents; got {n_random}")
    sizes = []
    size = start
    while size <= 0.75 * n_random:
        sizes.append(size)
        size *= 2
    sizes.append(n_random)
    if len(sizes) < 3:
        sizes = sorted({max(1, round(n_random * share)) for share in (1 / 3, 2 / 3, 1.0)})
    return sizes


def picks_grid(sizes: Sequence[int], n_picks: int, *, extra: int = EXTRA_PICK_POINTS) -> list[int]:
    """The picks arm's sizes: the random arm's up to ``n_picks``, then up to ``extra`` geometric steps (of at least
    1.5x where there is room) from the last of them to ``n_picks`` (every pick), so picks worse than random still
    say how many they need."""
    grid = [size for size in sizes if size <= n_picks]
    if not grid or grid[-1] < min(n_picks, sizes[-1]):
        grid.append(min(n_picks, sizes[-1]))
    if n_picks > grid[-1]:
        count = min(extra, max(1, math.floor(math.log(n_picks / grid[-1]) / math.log(1.5))))  # steps of >= 1.5x
        steps = np.geomspace(grid[-1], n_picks, count + 1)[1:]
        grid += sorted({round(float(step)) for step in steps} - set(grid))
    return grid


# --- bootstrap statistics of one model on one held fold --------------------------------------------------------
def weighted_micro_f1(true: sp.csr_matrix, pred: sp.csr_matrix, weights: np.ndarray) -> np.ndarray:
    """Micro-F1 per weight row (B,) from per-document counts: 2TP / (2TP + FP + FN)."""
    tp = np.asarray(true.multiply(pred).sum(axis=1)).ravel()  # (N,)
    n_pred = np.asarray(pred.sum(axis=1)).ravel()
    n_true = np.asarray(true.sum(axis=1)).ravel()
    TP, P, T = weights @ tp, weights @ n_pred, weights @ n_true  # (B,) each
    denominator = P + T  # = 2TP + FP + FN
    return np.divide(2.0 * TP, denominator, out=np.zeros_like(TP), where=denominator > 0)


def weighted_macro_f1(true: sp.csr_matrix, pred: sp.csr_matrix, weights: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Macro-F1 per weight row (B,): the mean F1 over the labels present in the (reweighted) gold labels; only the
    fold's gold labels (``columns``) can be present, so only they are expanded."""
    if not len(columns):
        return np.zeros(weights.shape[0])
    t = true[:, columns]
    p = pred[:, columns]
    tp = sp.csr_matrix(t.multiply(p))
    TP, T, P = (np.asarray(m.T @ weights.T).T for m in (tp, t, p))  # (B, L') each
    present = T > 0
    f1 = np.divide(2.0 * TP, T + P, out=np.zeros_like(TP), where=present)
    count = present.sum(axis=1)
    return np.divide((f1 * present).sum(axis=1), count, out=np.zeros(len(count)), where=count > 0)


@dataclass
class _Fold:
    held: np.ndarray  # rows of the evaluation documents tested on
    pool: np.ndarray  # rows of the evaluation documents the random arm trains on
    weights: np.ndarray  # (B + 1, len(held)): row 0 all ones (the point estimate), then the bootstrap draws
    columns: np.ndarray  # labels with a positive among the held documents (macro-F1)


# --- summaries ----------------------------------------------------------------------------------------------------
def _quantile(sorted_values: np.ndarray, q: float) -> float:
    """Nearest-rank quantile of sorted values that may hold +inf."""
    rank = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[rank])


def _finite(value: float, digits: int = 4) -> float | None:
    return round(float(value), digits) if math.isfinite(value) else None


def _curve(sizes: Sequence[int], values: np.ndarray) -> list[dict[str, Any]]:
    """[{n, value, low, high}] of a curve with draws (G, B + 1): value from row 0, a 95 % percentile interval."""
    draws = values[:, 1:]
    low = np.percentile(draws, 2.5, axis=1) if draws.shape[1] else values[:, 0]
    high = np.percentile(draws, 97.5, axis=1) if draws.shape[1] else values[:, 0]
    return [
        {"n": int(n), "value": round(float(v), 5), "low": round(float(lo), 5), "high": round(float(hi), 5)}
        for n, v, lo, hi in zip(sizes, values[:, 0], low, high, strict=True)
    ]


def _ratios(
    random_sizes: Sequence[int], random_curve: np.ndarray, picks_sizes: Sequence[int], picks_curve: np.ndarray
) -> tuple[dict[str, Any], float, float]:
    """The target (the random arm's value at its last size, n_random), the labels the picks need to reach it and
    their ratio to n_random, with the bootstrap interval. Curves are (G, B + 1). Returns (the JSON block, the
    interval's ends as floats, +inf for "never")."""
    n_random = random_sizes[-1]
    ratios = np.empty(random_curve.shape[1])  # (B + 1,): the point estimate, then the draws
    reached: list[float | None] = []
    for b in range(random_curve.shape[1]):
        labels = labels_to_reach(picks_sizes, picks_curve[:, b], float(random_curve[-1, b]))
        ratios[b] = math.inf if labels is None else labels / n_random
        reached.append(labels)
    block: dict[str, Any] = {
        "target": round(float(random_curve[-1, 0]), 5),
        "labels_picks": None if reached[0] is None else round(reached[0], 1),
        "ratio": {"value": _finite(ratios[0]), "low": None, "high": None, "never": None},
    }
    if len(ratios) == 1:  # no bootstrap draws: the interval is the point
        return block, float(ratios[0]), float(ratios[0])
    draws = np.sort(ratios[1:])
    low, high = _quantile(draws, 0.025), _quantile(draws, 0.975)
    block["ratio"].update(low=_finite(low), high=_finite(high), never=round(float(np.isinf(draws).mean()), 4))
    return block, low, high


def _caveats(n_random: int, n_evaluation: int, orders: int) -> list[str]:
    return [
        f"It compares the picks with random picks up to {n_random} labels only (half of the {n_evaluation} labelled "
        "evaluation documents, the random control); it cannot tell what happens beyond.",
        "The picks arm replays the path this project took (documents chosen by the models of that time), retrained "
        "from scratch; it is not what the strategy would pick if started again.",
        f"{n_evaluation} labelled evaluation documents give a wide interval; it narrows as more are labelled.",
        f"The interval covers which evaluation documents were drawn, not the luck of the random orders (averaged "
        f"over {orders}).",
    ]


def _summary(block: dict[str, Any], n_random: int, picks_max: int, metric: str) -> str:
    name = metric.replace("_f1", "-F1")
    ratio = block["ratio"]
    reach = f"To reach the {name} that {n_random} random picks reach ({block['target']:.2f}), this project's picks "
    if block["labels_picks"] is None:
        text = reach + f"needed more than the {picks_max} labels they have"
    else:
        text = reach + f"needed {block['labels_picks']:.0f} labels: {ratio['value']:.2f}x"
    if ratio["never"] is None:  # no bootstrap draws
        return text + "."
    low = "–" if ratio["low"] is None else f"{ratio['low']:.2f}"
    high = "possibly never" if ratio["high"] is None else f"{ratio['high']:.2f}"
    if ratio["low"] is None and ratio["never"]:
        return text + f" (95 % interval: never in {ratio['never']:.0%} of the draws)."
    return text + f", 95 % interval {low}–{high}."


# --- the estimate -------------------------------------------------------------------------------------------------
def estimate(
    *,
    picks: Labelled,
    evaluation: Labelled,
    labels: Sequence[str],
    config: dict[str, Any],
    prior: Any = None,
    strategy: str = "",
    seed: int = 0,
    orders: int = ORDERS,
    n_boot: int = N_BOOT,
    min_evaluation: int = MIN_EVALUATION,
    min_picks: int = MIN_PICKS,
    on_progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Labels the picks (in pick order) saved against random picks, estimated on the labelled evaluation documents.

    ``picks`` (P documents, in the order they were labelled) and ``evaluation`` (E documents, a uniform random sample
    of the pool) carry labels over ``labels``; ``config`` is the fast tier's (``FastTierConfig`` fields), ``prior``
    an optional ``learner.prior.LabelPrior`` over ``labels`` (then both need embeddings). ``strategy`` names the
    strategy that picked them (what ``favoured`` says when the picks save labels). Seeded: the same inputs give the
    same result. Raises ``ValueError`` on inconsistent inputs.

    Returns a JSON-ready dict: ``verdict`` ("saves" | "costs" | "undecided" | "not_enough_data"), ``favoured``
    (``strategy``, "random" or None), ``headline`` and ``summary`` (words), ``target``, ``n_random``,
    ``labels_picks`` (None: more than ``picks_max``), ``ratio`` {value, low, high, never}
    (None for an infinite end: "never"), ``curves`` {"random", "picks": [{n, value, low, high}]} (micro-F1), the
    same for ``macro_f1``, ``caveats``, ``sizes``, the counts and ``seconds``; with not enough data, ``reason``.
    """
    from learner.fast import FastTier, FastTierConfig

    started = time.monotonic()
    names = list(labels)
    if not names:
        raise ValueError("labels is empty")
    for what, docs in (("picks", picks), ("evaluation", evaluation)):
        if docs.Y.shape[1] != len(names):
            raise ValueError(f"{what} labels have {docs.Y.shape[1]} columns for {len(names)} labels")
    if isinstance(orders, bool) or not isinstance(orders, int) or orders < 1:
        raise ValueError(f"orders must be a positive integer; got {orders!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer; got {n_boot!r}")
    n_eval, n_picks = len(evaluation), len(picks)
    base: dict[str, Any] = {
        "metric": "micro_f1",
        "strategy": strategy,
        "evaluation_documents": n_eval,
        "picks": n_picks,
        "caveats": _caveats(n_eval // FOLDS, n_eval, orders),
    }
    missing = []
    min_evaluation = max(min_evaluation, FOLDS * 3)  # the random arm's grid needs 3 sizes
    if n_eval < min_evaluation:
        missing.append(f"at least {min_evaluation} labelled evaluation documents (has {n_eval})")
    if n_picks < max(min_picks, 1):
        missing.append(f"at least {max(min_picks, 1)} labelled documents picked by the strategy (has {n_picks})")
    if missing:
        reason = "needs " + " and ".join(missing)
        return {
            **base,
            "verdict": "not_enough_data",
            "favoured": None,
            "reason": reason,
            "headline": "Not enough data yet",
            "summary": f"The estimate {reason}.",
            "seconds": round(time.monotonic() - started, 3),
        }

    cfg = FastTierConfig.from_dict(config)
    resolved = cfg.resolve(len(names))
    needs_texts = resolved.needs_texts
    needs_embeddings = resolved.needs_embeddings or prior is not None
    n_labels = len(names)
    k = max(5, min(n_labels, cfg.shortlist))

    rng = np.random.default_rng([seed, 7])
    permutation = rng.permutation(n_eval)
    halves = [np.sort(permutation[: n_eval // 2]), np.sort(permutation[n_eval // 2 :])]
    folds = []
    for f in range(FOLDS):
        held, pool = halves[f], halves[1 - f]
        draws = rng.multinomial(len(held), np.full(len(held), 1.0 / len(held)), size=n_boot).astype(np.float64)
        weights = np.vstack([np.ones((1, len(held))), draws])  # (B + 1, N_f)
        columns = np.flatnonzero(np.asarray(evaluation.Y[held].sum(axis=0)).ravel() > 0)
        folds.append(_Fold(held=held, pool=pool, weights=weights, columns=columns))
    n_random = min(len(fold.pool) for fold in folds)
    sizes_random = random_grid(n_random)
    sizes_picks = picks_grid(sizes_random, n_picks)

    total = FOLDS * orders * len(sizes_random) + len(sizes_picks)
    done = 0
    report = on_progress or (lambda fraction: None)

    def train(docs: Labelled, rows: np.ndarray) -> Any:
        nonlocal done
        model = FastTier.train(
            docs.inputs(rows, texts=needs_texts, embeddings=needs_embeddings), docs.Y[rows], names, cfg, prior=prior
        )
        done += 1
        report(done / total)
        return model

    def predictions(model: Any, rows: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        inputs = evaluation.inputs(rows, texts=model.uses_texts, embeddings=model.uses_embeddings)
        idx, probs = model.predict_topk(inputs, k)
        micro = model.rules["micro_f1"].apply(idx, probs, n_labels).tocsr()
        macro = model.rules.get("macro_f1", model.rules["micro_f1"]).apply(idx, probs, n_labels).tocsr()
        return micro, macro

    def scores(fold: _Fold, micro: sp.csr_matrix, macro: sp.csr_matrix) -> dict[str, np.ndarray]:
        true = evaluation.Y[fold.held]
        return {
            "micro_f1": weighted_micro_f1(true, micro, fold.weights),
            "macro_f1": weighted_macro_f1(true, macro, fold.weights, fold.columns),
        }

    # (F, O, G, B + 1) per metric: the random arm, trained on fold f's pool, tested on fold f's held documents
    random_values = {m: np.zeros((FOLDS, orders, len(sizes_random), n_boot + 1)) for m in METRICS}
    for f, fold in enumerate(folds):
        for o in range(orders):
            order = np.random.default_rng([seed, 11, f, o]).permutation(fold.pool)
            for g, n in enumerate(sizes_random):
                model = train(evaluation, order[:n])
                for metric, values in scores(fold, *predictions(model, fold.held)).items():
                    random_values[metric][f, o, g] = values
    # (F, G', B + 1): the picks arm's models do not depend on the fold: trained once, tested on every held fold
    picks_values = {m: np.zeros((FOLDS, len(sizes_picks), n_boot + 1)) for m in METRICS}
    every = np.arange(n_eval)
    for g, n in enumerate(sizes_picks):
        model = train(picks, np.arange(n))
        micro, macro = predictions(model, every)
        for f, fold in enumerate(folds):
            for metric, values in scores(fold, micro[fold.held], macro[fold.held]).items():
                picks_values[metric][f, g] = values

    blocks: dict[str, dict[str, Any]] = {}
    ends: dict[str, tuple[float, float]] = {}
    for metric in METRICS:
        random_curve = random_values[metric].mean(axis=(0, 1))  # (G, B + 1)
        picks_curve = picks_values[metric].mean(axis=0)  # (G', B + 1)
        block, low, high = _ratios(sizes_random, random_curve, sizes_picks, picks_curve)
        block["curves"] = {"random": _curve(sizes_random, random_curve), "picks": _curve(sizes_picks, picks_curve)}
        blocks[metric], ends[metric] = block, (low, high)
    micro_block = blocks["micro_f1"]
    low, high = ends["micro_f1"]
    if high < 1:
        verdict, favoured = "saves", strategy or None
        headline = "Yes, so far: the picks saved labels against random picks"
    elif low > 1:
        verdict, favoured = "costs", "random"
        headline = "Not so far: random picks would have been better"
    else:
        verdict, favoured = "undecided", None
        headline = "No evidence either way yet"
    picks_max = sizes_picks[-1]
    for metric, block in blocks.items():
        block["summary"] = _summary(block, n_random, picks_max, metric)
    seconds = round(time.monotonic() - started, 3)
    logger.info("savings estimate: %s, ratio %s, %d models in %.1f s", verdict, micro_block["ratio"], total, seconds)
    return {
        **base,
        "verdict": verdict,
        "favoured": favoured,
        "headline": headline,
        "summary": micro_block["summary"],
        "target": micro_block["target"],
        "n_random": n_random,
        "labels_picks": micro_block["labels_picks"],
        "picks_max": picks_max,
        "ratio": micro_block["ratio"],
        "curves": micro_block["curves"],
        "macro_f1": blocks["macro_f1"],
        "sizes": {"random": sizes_random, "picks": sizes_picks},
        "folds": FOLDS,
        "orders": orders,
        "n_boot": n_boot,
        "models": total,
        "seconds": seconds,
    }
