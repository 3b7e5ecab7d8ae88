"""Reads of the learning curve: measured points, the stored fit, stopping advice, evaluation progress."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db.models import Exists, OuterRef

from ..models import (
    Annotation,
    Document,
    ModelVersion,
    Project,
)

CURVE_METRIC = "micro_f1"
# Labelled evaluation documents the best-measured model version must rest on before the curve forecasts anything:
# below about 30 documents a bootstrap percentile interval undercovers (it cannot see what the few documents never
# show), so a forecast fitted to such points would state a precision it does not have.
MIN_EVALUATION_ANSWERS = 30
# Part of the points' fingerprint: a fit stored under older rules (an unbounded level, intervals in other units) no
# longer matches and is refitted by the next refresh instead of being shown.
CURVE_RULES = 2


def curve_points(*, project: Project, metric: str = CURVE_METRIC) -> list[dict]:
    """One point per model version measured on the evaluation set: training labels and the metric with its
    interval, in order of training labels."""
    points = []
    for number, labels, evaluation, agreement, created_at in (
        ModelVersion.objects.filter(project=project)
        .order_by("n_annotations", "number")
        .values_list("number", "n_annotations", "evaluation", "agreement", "created_at")
    ):
        measured = (evaluation or {}).get("metrics", {}).get(metric)
        if not measured or labels <= 0:
            continue
        points.append(
            {
                "version": number,
                "labels": labels,
                "value": measured["value"],
                "low": measured["low"],
                "high": measured["high"],
                "evaluated_on": evaluation.get("n_documents", 0),
                "agreement": agreement,
                "created_at": created_at.isoformat(),
            }
        )
    return points


def points_fingerprint(points: list[dict]) -> str:
    key = [
        CURVE_RULES,
        *((p["version"], p["labels"], p["value"], p["low"], p["high"], p["evaluated_on"]) for p in points),
    ]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


STOP_AGREEMENT = 0.99  # Bloodgood & Vijay-Shanker (2009): kappa of successive models above this ...


STOP_WINDOW = 3  # ... for this many successive versions


def learning_curve(*, project: Project) -> dict[str, Any]:
    """The measured points (micro-F1 on the evaluation set per model version, with intervals), the stored fit when
    it matches them, and a plain-words stopping advice."""
    points = curve_points(project=project)
    stored = project.curve_fit or {}
    evaluated_on = max((p["evaluated_on"] for p in points), default=0)
    enough = evaluated_on >= MIN_EVALUATION_ANSWERS
    fresh = stored.get("fingerprint") == points_fingerprint(points)
    fit = stored.get("fit") if fresh and enough else None
    pending = bool(points) and enough and not fresh
    kappas = [
        k
        for k in ModelVersion.objects.filter(project=project).order_by("number").values_list("agreement", flat=True)
        if k is not None
    ]
    return {
        "metric": CURVE_METRIC,
        "points": points,
        "fit": fit,
        "fit_pending": pending,
        # The forecast needs the best-measured version on at least `min_evaluation_answers` evaluation documents.
        "enough_evaluation": enough,
        "evaluated_on": evaluated_on,
        "min_evaluation_answers": MIN_EVALUATION_ANSWERS,
        "agreements": kappas,
        "advice": _stopping_advice(project, points, fit, kappas, evaluated_on),
    }


def _stopping_advice(
    project: Project, points: list[dict], fit: dict | None, kappas: list[float], evaluated_on: int
) -> dict[str, Any]:
    metric = CURVE_METRIC.replace("_f1", "-F1")
    reasons = []
    recent = kappas[-STOP_WINDOW:]
    stabilised = len(recent) == STOP_WINDOW and all(k > STOP_AGREEMENT for k in recent)
    if stabilised:
        reasons.append(
            f"the last {STOP_WINDOW} models agree on the stop set (Cohen's kappa "
            f"{', '.join(f'{k:.3f}' for k in recent)}, all above {STOP_AGREEMENT}): predictions have stabilised"
        )
    low_gain = fit is not None and fit["per_100"]["value"] < project.stop_min_gain
    if low_gain:
        reasons.append(
            f"the curve forecasts {fit['per_100']['value']:+.4f} {metric} per 100 more labels, below the "
            f"{project.stop_min_gain:.4f} set for this project"
        )
    if reasons:
        text = "Consider stopping: " + "; and ".join(reasons) + "."
    elif not points:
        text = "No model has been measured on the evaluation set yet: label evaluation documents to see the curve."
    elif evaluated_on < MIN_EVALUATION_ANSWERS:
        text = (
            f"Keep labelling: not enough evaluation answers yet for a forecast (models are measured on "
            f"{evaluated_on} labelled evaluation documents; a forecast needs at least {MIN_EVALUATION_ANSWERS})."
        )
    elif fit is None:
        text = (
            f"Keep labelling: {len(points)} measured model version(s); a forecast needs three at different label "
            "counts."
        )
    else:
        gain = fit["next_500"]
        text = (
            f"Keep labelling: the next 500 labels are expected to add {gain['value']:+.3f} {metric} "
            f"(95% interval {gain['low']:+.3f} to {gain['high']:+.3f})."
        )
    return {"stop": bool(reasons), "stabilised": stabilised, "low_gain": low_gain, "text": text}


def evaluation_progress(*, project: Project) -> dict[str, int]:
    """Size of the evaluation set and how many of its documents are labelled."""
    members = Document.objects.filter(project=project, is_evaluation=True)
    return {
        "size": members.count(),
        "labelled": members.filter(Exists(Annotation.objects.filter(document=OuterRef("pk")))).count(),
    }
