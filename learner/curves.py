"""Learning curves: fit, forecast and stopping signals.

**The curve.** Model quality against the number of training labels follows, over the range active learning
covers, an inverse power law (Figueroa et al. 2012, "Predicting sample size required for classification
performance"; Mukherjee et al. 2003): ``y(n) = a - b * n^(-c)``, with ``a`` the level the curve approaches, ``b > 0``
and ``0 < c <= 2``. The metric is a share (F1, precision), so the level ``a`` is bounded to [0, 1] in the fit and
every forecast is clipped to [0, 1]: a fitted asymptote above the best possible score would be a promise no data
can keep. ``fit`` estimates it by bounded non-linear least squares (``scipy.optimize.curve_fit``), each point
weighted by its standard error when one is given (a point measured on few evaluation documents counts less).
The fit's own uncertainty comes from refitting it ``n_boot`` times: with standard errors, on points redrawn within
them (a parametric bootstrap: the measurement error of every point carries into the forecast); without, on the
residuals resampled onto the fitted curve (redrawn points are clipped to [0, 1] too). Every forecast is the fitted
value with a 95 % percentile interval over those refits, widened where needed so that it always contains the value:
on a handful of points the refits can all land on one side of the fit, and an interval that excludes its own point
estimate misleads.

**Forecasts.** ``LearningCurve.predict(n)``, ``labels_to_reach(target)`` (None when the curve levels off below the
target) and ``gain(n_from, n_to)``.

**Stopping.** ``agreement(a, b)`` is Cohen's kappa between two models' label decisions on the same fixed stop set
of documents, over the (document, label) pairs either model predicts positive somewhere (so that the thousands of
labels neither ever predicts do not inflate it). Bloodgood & Vijay-Shanker (2009, "A method for stopping active
learning based on stabilizing predictions") stop when the kappa of successive models stays above 0.99 for three
consecutive rounds: ``stabilised(kappas)`` applies that rule.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_POINTS = 3
LEVEL_MAX = 1.0  # the metric is a share: the curve cannot level off above it


def _power_law(n: Any, a: Any, b: Any, c: Any) -> np.ndarray:
    """a - b * n^(-c), elementwise; scalars or arrays (broadcast). Unclipped: what the least squares fit."""
    return np.asarray(a - b * np.power(n, -c), dtype=np.float64)


def _metric(n: Any, a: Any, b: Any, c: Any) -> np.ndarray:
    """The curve as a forecast of the metric: ``_power_law`` clipped to [0, 1] (below the data the power law can
    dip under 0)."""
    return np.clip(_power_law(n, a, b, c), 0.0, LEVEL_MAX)


@dataclass(frozen=True)
class Forecast:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": round(self.value, 5), "low": round(self.low, 5), "high": round(self.high, 5)}


@dataclass
class LearningCurve:
    """A fitted ``a - b * n^(-c)`` and its bootstrap refits (each row a, b, c)."""

    a: float
    b: float
    c: float
    refits: np.ndarray = field(repr=False)  # (B, 3)
    n_points: int = 0

    @property
    def params(self) -> dict[str, float]:
        return {"a": round(self.a, 5), "b": round(self.b, 5), "c": round(self.c, 5)}

    def _spread(self, values: np.ndarray, point: float) -> Forecast:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return Forecast(point, point, point)
        low, high = np.quantile(finite, [0.025, 0.975])
        return Forecast(point, float(min(low, point)), float(max(high, point)))

    def predict(self, n: float) -> Forecast:
        """The metric at ``n`` labels, in [0, 1], with its interval (which contains it)."""
        point = float(_metric(np.asarray(float(n)), self.a, self.b, self.c))
        values = _metric(float(n), self.refits[:, 0], self.refits[:, 1], self.refits[:, 2])
        return self._spread(np.asarray(values, dtype=np.float64), point)

    def gain(self, n_from: float, n_to: float) -> Forecast:
        """Expected change of the metric from ``n_from`` to ``n_to`` labels (both forecasts clipped to [0, 1], so the
        change lies in [-1, 1]; in [0, 1] when ``n_to >= n_from``, the curve never falls)."""
        point = float(_metric(np.asarray(float(n_to)), self.a, self.b, self.c)) - float(
            _metric(np.asarray(float(n_from)), self.a, self.b, self.c)
        )
        r = self.refits
        values = _metric(float(n_to), r[:, 0], r[:, 1], r[:, 2]) - _metric(float(n_from), r[:, 0], r[:, 1], r[:, 2])
        return self._spread(np.asarray(values, dtype=np.float64), point)

    def labels_to_reach(self, target: float) -> Forecast | None:
        """Labels needed for the metric to reach ``target``; None when the fitted curve levels off below it. The
        interval is over the refits that do reach it (``high`` is inf when some of them never do)."""

        def needed(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                out = np.power(b / (a - target), 1.0 / c)
            return np.where(a > target, out, np.inf)

        point = float(needed(np.array([self.a]), np.array([self.b]), np.array([self.c]))[0])
        if not math.isfinite(point):
            return None
        values = needed(self.refits[:, 0], self.refits[:, 1], self.refits[:, 2])
        # Refits that never reach the target sort last (inf): the upper end is inf when more than 2.5 % of them don't.
        ordered = np.sort(values)
        low = float(ordered[int(0.025 * (ordered.size - 1))])
        high = float(ordered[int(np.ceil(0.975 * (ordered.size - 1)))])
        return Forecast(point, min(low, point), max(high, point))


def fit(
    n: Sequence[float], y: Sequence[float], *, sigma: Sequence[float] | None = None, n_boot: int = 300, seed: int = 0
) -> LearningCurve | None:
    """Fits ``y = a - b * n^(-c)`` to the points (labels, metric); None with fewer than MIN_POINTS distinct label
    counts or when the fit does not converge. ``sigma`` (same length): each point's standard error (e.g. the width
    of its 95 % bootstrap interval / 3.92); it weights the fit, and the refits redraw every point within it."""
    from scipy.optimize import curve_fit

    x = np.asarray(n, dtype=np.float64)
    values = np.asarray(y, dtype=np.float64)
    if x.shape != values.shape or x.ndim != 1:
        raise ValueError("n and y must be 1-D of the same length")
    if np.any(x <= 0) or not np.all(np.isfinite(values)):
        raise ValueError("label counts must be positive and metrics finite")
    if np.unique(x).size < MIN_POINTS:
        return None
    weights = None
    if sigma is not None:
        weights = np.maximum(np.asarray(sigma, dtype=np.float64), 1e-3)
    if np.any(values < 0) or np.any(values > LEVEL_MAX):
        raise ValueError(f"metrics must lie in [0, {LEVEL_MAX}]")
    lower, upper = [0.0, 1e-9, 1e-3], [LEVEL_MAX, np.inf, 2.0]
    start = [min(LEVEL_MAX, float(values.max()) + 0.05), max(float(values.max() - values.min()), 0.05) * 10.0, 0.5]

    def solve(targets: np.ndarray) -> np.ndarray | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params, _ = curve_fit(
                    _power_law, x, targets, p0=start, sigma=weights, bounds=(lower, upper), maxfev=20_000
                )
        except (RuntimeError, ValueError):
            return None
        return np.asarray(params, dtype=np.float64)

    best = solve(values)
    if best is None:
        return None
    fitted = _power_law(x, *best)
    residuals = values - fitted
    rng = np.random.default_rng(seed)
    refits = []
    for _ in range(n_boot):
        if weights is not None:  # each point redrawn within its own measurement error (parametric bootstrap)
            sample = values + rng.normal(0.0, weights)
        else:  # the residuals resampled onto the fitted curve
            sample = fitted + rng.choice(residuals, size=residuals.size, replace=True)
        sample = np.clip(sample, 0.0, LEVEL_MAX)  # a redrawn score stays a score
        params = solve(sample)
        if params is not None:
            refits.append(params)
    stack = np.array(refits) if refits else best[None, :]
    return LearningCurve(a=float(best[0]), b=float(best[1]), c=float(best[2]), refits=stack, n_points=int(x.size))


def agreement(first: np.ndarray, second: np.ndarray) -> float:
    """Cohen's kappa of two (N, L) binary decision matrices over the labels either predicts somewhere; 1.0 when
    both predict nothing at all."""
    a = np.asarray(first, dtype=bool)
    b = np.asarray(second, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"the decision matrices differ in shape: {a.shape} vs {b.shape}")
    in_play = a.any(axis=0) | b.any(axis=0)
    if not in_play.any():
        return 1.0
    a, b = a[:, in_play].ravel(), b[:, in_play].ravel()
    observed = float(np.mean(a == b))
    pa, pb = float(a.mean()), float(b.mean())
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected >= 1.0:
        return 1.0
    return (observed - expected) / (1.0 - expected)


def stabilised(kappas: Sequence[float], *, threshold: float = 0.99, window: int = 3) -> bool:
    """Bloodgood & Vijay-Shanker's rule: the last ``window`` agreements between successive models all exceed
    ``threshold``."""
    recent = list(kappas)[-window:]
    return len(recent) == window and all(k > threshold for k in recent)
