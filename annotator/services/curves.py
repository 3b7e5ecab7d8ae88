"""The learning curve's fit and forecasts, computed by the workers when the measured points change."""

from __future__ import annotations

import logging
import math

import numpy as np

from .. import ml
from ..models import Project
from ..selectors.curves import CURVE_METRIC, MIN_EVALUATION_ANSWERS, curve_points, points_fingerprint

logger = logging.getLogger(__name__)

CURVE_BOOTSTRAP = 300


def learning_curve_refresh(*, project: Project, metric: str = CURVE_METRIC) -> dict:
    """Fits the inverse power law to the measured points and stores the forecasts on the project (a summary keyed by
    the points' fingerprint). Returns what was stored. No fit while the best-measured point rests on fewer than
    MIN_EVALUATION_ANSWERS labelled evaluation documents (the page then says so instead of forecasting). Every
    forecast is in [0, 1] with its value inside its interval (learner.curves); "labels to reach" states the interval
    in the same unit as the value ("more labels")."""
    points = curve_points(project=project, metric=metric)
    fingerprint = points_fingerprint(points)
    if project.curve_fit.get("fingerprint") == fingerprint and project.curve_fit.get("metric") == metric:
        return project.curve_fit
    stored: dict = {"fingerprint": fingerprint, "metric": metric, "fit": None}
    curve = None
    enough = max((p["evaluated_on"] for p in points), default=0) >= MIN_EVALUATION_ANSWERS
    if enough and len({p["labels"] for p in points}) >= 3:
        try:
            curve = ml.learning_curve(
                # a 95 % interval spans about 3.92 standard errors
                [(p["labels"], p["value"], max((p["high"] - p["low"]) / 3.92, 1e-3)) for p in points],
                n_boot=CURVE_BOOTSTRAP,
            )
        except ValueError as exc:
            logger.warning("learning curve of project %s not fitted: %s", project.pk, exc)
    if curve is not None:
        last = max(p["labels"] for p in points)
        best = max(p["value"] for p in points)
        grid = np.unique(np.geomspace(min(p["labels"] for p in points), last * 2, 40).round().astype(int))
        targets = sorted({round(best + step, 2) for step in (0.02, 0.05) if best + step <= 1.0})
        stored["fit"] = {
            "model": "inverse power law: metric = a - b * labels^(-c) (weighted least squares, parametric bootstrap)",
            "params": curve.params,
            "n_points": curve.n_points,
            "level": curve.predict(1e12).as_dict(),  # what the curve approaches
            "last_labels": int(last),
            "per_100": curve.gain(last, last + 100).as_dict(),
            "next_500": curve.gain(last, last + 500).as_dict(),
            "to_reach": [
                {
                    "target": target,
                    "labels": None if reach is None else _labels_needed(reach.as_dict(), int(last)),
                }
                for target in targets
                for reach in [curve.labels_to_reach(target)]
            ],
            "curve": [{"labels": int(n), **curve.predict(float(n)).as_dict()} for n in grid],
        }
    project.curve_fit = stored
    Project.objects.filter(pk=project.pk).update(curve_fit=stored)
    return stored


def _labels_needed(reach: dict[str, float], last: int) -> dict[str, int | None]:
    """Labels in all (value, low, high; None: never) and the same three as labels beyond the `last` trained on
    (more, more_low, more_high), so the page never sets a count of more labels beside an interval of all labels.
    Rounding and the shift keep low <= value <= high."""
    total = {k: round(v) if math.isfinite(v) else None for k, v in reach.items()}
    beyond = {k: None if v is None else max(0, v - last) for k, v in total.items()}
    return {**total, "more": beyond["value"], "more_low": beyond["low"], "more_high": beyond["high"]}
