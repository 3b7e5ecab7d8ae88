"""Labels saved against random picks: labels-to-target ratios with intervals over seeds (numpy only).

A manager buys active learning for one number: how many expert labels a strategy needs, against random picks, to
reach a given model quality. AULC (the mean of a learning curve) compresses that saving: a strategy that needs
0.66x random's labels to reach a target can have an AULC only 3 % above random's. So the simulator reports, per
strategy and metric, the labels needed to reach

- ``end``: what random reaches at the end of the budget (the seed-mean value of its last round),
- ``at_N``: what random reaches with N labels (``ANCHORS``, e.g. 2,000: the issue's targets), when a round has N,
- ``90`` / ``95``: 90 % / 95 % of the full-data quality (the model trained on the whole pool),

as ratios to random's labels for the same target (below 1: labels saved).

**Labels to reach a target** (``labels_to_reach``): the first crossing of the seed-mean curve, linearly
interpolated between the two rounds around it (rounds are 20 to 500 labels apart, and "first round at or above"
would round every saving to a batch). A curve that never reaches the target within the budget has no value
(``None``): the strategy needs more labels than the simulation gave it.

**Intervals** (``ratio_interval``): a paired percentile bootstrap over seeds. Every strategy of a seed starts from
the same seed documents, so a draw resamples seed numbers with replacement and recomputes both mean curves (and
the ``end`` target, random's mean final value in that draw) from the same seeds. A draw in which the strategy
never reaches the target gives an infinite ratio; one in which random does not reach it is left out (no ratio).
Percentiles are taken by rank, so an interval whose upper end is infinite says "possibly never within the budget"
(``high`` is ``None`` in JSON, ``never`` the share of such draws). With 5 seeds the interval is wide: that is what
5 seeds can tell (CDALBench 2024: 3 seeds make one method look both better and worse than random).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ANCHORS",
    "LEVELS",
    "TARGETS",
    "band",
    "labels_to_reach",
    "ratio_interval",
    "savings",
    "seed_matrix",
]

LEVELS = (90, 95)  # per cent of the full-data quality
ANCHORS = (500, 2000)  # label counts at which random's value is a target too ("at_2000")
TARGETS = ("end", *(f"at_{n}" for n in ANCHORS), *(str(level) for level in LEVELS))
N_BOOT = 2000


def labels_to_reach(counts: Any, values: Any, target: float) -> float | None:
    """Labels at which the curve ``values`` (R,) over labelled ``counts`` (R,) first reaches ``target``, linearly
    interpolated between the rounds around the crossing; ``None`` when it never does."""
    c = np.asarray(counts, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if c.ndim != 1 or v.shape != c.shape:
        raise ValueError(f"counts and values must be 1-D of the same length; got {c.shape} and {v.shape}")
    if not np.isfinite(target):
        raise ValueError(f"target must be finite; got {target}")
    reached = np.flatnonzero(v >= target)
    if not len(reached):
        return None
    r = int(reached[0])
    if r == 0:
        return float(c[0])
    below, above = v[r - 1], v[r]
    share = (target - below) / (above - below)  # above > target > below, so the division is safe
    return float(c[r - 1] + share * (c[r] - c[r - 1]))


def seed_matrix(runs: Mapping[str, Sequence[Mapping[str, Any]]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(labelled counts (R,), values (S, R)) of one strategy's runs (seed -> points), over the rounds every seed has.

    Seeds must share the round schedule (the simulator's seeds do)."""
    curves = [list(points) for _, points in sorted(runs.items(), key=lambda item: int(item[0]))]
    if not curves:
        raise ValueError("no runs")
    rounds = min(len(curve) for curve in curves)
    counts = np.array([curves[0][r]["labelled"] for r in range(rounds)], dtype=np.float64)
    for curve in curves[1:]:
        if [p["labelled"] for p in curve[:rounds]] != counts.tolist():
            raise ValueError("the seeds of a strategy must share the labelled counts of their rounds")
    values = np.array([[float(curve[r][metric]) for r in range(rounds)] for curve in curves], dtype=np.float64)
    return counts, values


def _quantile(sorted_values: np.ndarray, q: float) -> float:
    """Nearest-rank quantile of sorted values that may hold +inf (np.percentile interpolates inf into nan)."""
    rank = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[rank])


def _finite(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def ratio_interval(
    counts: np.ndarray,
    values: np.ndarray,
    random_counts: np.ndarray,
    random_values: np.ndarray,
    target: float | None,
    *,
    random_round: int = -1,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """Labels to reach a target and their ratio to random's, with a paired 95 % bootstrap interval over seeds.

    ``values`` (S, R) and ``random_values`` (S, R') hold the same seeds in the same order. ``target`` None means
    "what random reaches at its round ``random_round`` (default: the last, the end of the budget)", recomputed
    in every draw. Returns ``{"target", "labels",
    "random_labels", "ratio", "low", "high", "never", "draws"}``: the point estimate from all seeds, the interval
    from the draws (``high`` None: the strategy may not reach it within the budget), ``never`` the share of draws in
    which the strategy did not reach it, ``draws`` how many draws had a random crossing (the others are left out).
    """
    values = np.asarray(values, dtype=np.float64)
    random_values = np.asarray(random_values, dtype=np.float64)
    if values.ndim != 2 or random_values.ndim != 2 or values.shape[0] != random_values.shape[0]:
        raise ValueError(
            f"values must be (seeds, rounds) for the same seeds; got {values.shape} and {random_values.shape}"
        )

    def one(rows: np.ndarray) -> tuple[float, float | None, float | None]:
        mine, theirs = values[rows].mean(axis=0), random_values[rows].mean(axis=0)
        goal = float(theirs[random_round]) if target is None else float(target)
        return goal, labels_to_reach(counts, mine, goal), labels_to_reach(random_counts, theirs, goal)

    n_seeds = values.shape[0]
    goal, labels, random_labels = one(np.arange(n_seeds))
    ratio: float | None = None
    if labels is not None and random_labels:
        ratio = labels / random_labels
    rng = np.random.default_rng(seed)
    ratios = []
    for rows in rng.integers(0, n_seeds, size=(n_boot, n_seeds)):  # (B, S) seed draws
        _, mine, theirs = one(rows)
        if not theirs:
            continue
        ratios.append(math.inf if mine is None else mine / theirs)
    out: dict[str, Any] = {
        "target": round(goal, 5),
        "labels": None if labels is None else round(labels, 1),
        "random_labels": None if random_labels is None else round(random_labels, 1),
        "ratio": None if ratio is None else round(ratio, 4),
        "low": None,
        "high": None,
        "never": None,
        "draws": len(ratios),
    }
    if ratios:
        draws = np.sort(np.array(ratios))
        out.update(
            low=_finite(_quantile(draws, 0.025)),
            high=_finite(_quantile(draws, 0.975)),
            never=round(float(np.isinf(draws).mean()), 4),
        )
    return out


def savings(
    curves: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    full: Mapping[str, float],
    metrics: Sequence[str],
    *,
    baseline: str = "random",
    n_boot: int = N_BOOT,
) -> dict[str, Any]:
    """strategy -> metric -> target (``end``, ``at_N``, ``90``, ``95``) -> ``ratio_interval``; the baseline's own
    ratios are 1. An ``at_N`` target is left out when random has no round at N labels.

    ``curves`` is strategy -> seed -> points (the simulator's runs); ``full`` the full-data value of each metric.
    Raises ``ValueError`` when the baseline was not run or the strategies do not share their seeds."""
    if baseline not in curves:
        raise ValueError(f"savings need the {baseline!r} strategy's curves")
    seeds = sorted(curves[baseline], key=int)
    out: dict[str, Any] = {}
    for name, runs in curves.items():
        if sorted(runs, key=int) != seeds:
            raise ValueError(f"{name} was run on seeds {sorted(runs)}, {baseline} on {seeds}")
        out[name] = {}
        for metric in metrics:
            counts, values = seed_matrix(runs, metric)
            random_counts, random_values = seed_matrix(curves[baseline], metric)
            targets: dict[str, tuple[float | None, int]] = {"end": (None, -1)}
            for anchor in ANCHORS:
                rounds = np.flatnonzero(random_counts == anchor)
                if len(rounds):
                    targets[f"at_{anchor}"] = (None, int(rounds[0]))
            targets.update({str(level): (level / 100 * float(full[metric]), -1) for level in LEVELS})
            out[name][metric] = {
                key: ratio_interval(
                    counts, values, random_counts, random_values, goal, random_round=round_, n_boot=n_boot
                )
                for key, (goal, round_) in targets.items()
            }
    return out


def band(values: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seed mean and 95 % bootstrap interval of the mean, round by round, of ``values`` (S, R): three (R,) arrays."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"values must be (seeds, rounds); got {values.shape}")
    rows = np.random.default_rng(seed).integers(0, values.shape[0], size=(n_boot, values.shape[0]))
    draws = values[rows].mean(axis=1)  # (B, R)
    return values.mean(axis=0), np.percentile(draws, 2.5, axis=0), np.percentile(draws, 97.5, axis=0)
