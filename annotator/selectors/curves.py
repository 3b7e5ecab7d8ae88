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
    key = [(p["version"], p["labels"], p["value"], p["low"], p["high"]) for p in points]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


STOP_AGREEMENT = 0.99  # Bloodgood & Vijay-Shanker (2009): kappa of successive models above this ...


STOP_WINDOW = 3  # ... for this many successive versions


def learning_curve(*, project: Project) -> dict[str, Any]:
    """The measured points (micro-F1 on the evaluation set per model version, with intervals), the stored fit when
    it matches them, and a plain-words stopping advice."""
    points = curve_points(project=project)
    stored = project.curve_fit or {}
    fit = stored.get("fit") if stored.get("fingerprint") == points_fingerprint(points) else None
    pending = bool(points) and stored.get("fingerprint") != points_fingerprint(points)
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
        "agreements": kappas,
        "advice": _stopping_advice(project, points, fit, kappas),
    }


def _stopping_advice(project: Project, points: list[dict], fit: dict | None, kappas: list[float]) -> dict[str, Any]:
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
