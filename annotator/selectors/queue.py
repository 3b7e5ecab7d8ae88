"""Reads for the annotation queue: the pool, the decision threshold, pre-ticks and suggestions as served."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from .. import ml
from ..models import (
    Annotation,
    Document,
    Label,
    ModelVersion,
    Project,
    QueueItem,
)
from .preannotations import preannotation_suggestions


def unlabelled_document_ids(*, project: Project) -> list[int]:
    """The active-learning pool: unlabelled documents outside the evaluation set."""
    return list(
        Document.objects.filter(project=project, is_evaluation=False)
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("pk"))))
        .order_by("id")
        .values_list("id", flat=True)
    )


def effective_threshold(*, project: Project, version: ModelVersion | None) -> float:
    """The probability at which the model decides a label applies (margin strategies, stop-set decisions): the
    manager's setting, else the serving model's threshold tuned for micro-F1 on held-out labels, else 0.5.
    Pre-ticks follow `pretick_rule` instead."""
    if project.decision_threshold is not None:
        return float(project.decision_threshold)
    if version is not None and isinstance(version.config.get("threshold"), int | float):
        return float(version.config["threshold"])
    return 0.5


def _evidence(result: dict[str, Any]) -> str:
    source = f"checked on {result['documents']} labelled documents the model did not train on"
    if result["decisions"]:
        n = result["decisions"]
        source += f" and {n} expert decision{'s' if n != 1 else ''} on its suggestions"
    return source


def pretick_rule(*, project: Project, version: ModelVersion | None) -> dict[str, Any]:
    """When the suggestions of `version` are pre-ticked, and why: {"threshold", "precision", "floor", "source"}, or
    {"threshold": None, "floor", "reason"} when nothing is.

    A manager's `decision_threshold` wins; else nothing when pre-ticks are switched off; else the lowest score at
    which pre-ticks were right at least `pretick_floor` of the time with 95 % confidence (the lower bound of their
    precision, learner.decision.pretick_threshold), on the version's tick curve (its calibrated
    scores checked by cross-validation, or on held-out documents, at training) plus the experts' decisions on its
    suggestions (`ModelVersion.decision_counts`). No version, or one without a curve (trained on too few
    documents): nothing. No queries: `version` comes with its queue item."""
    floor = float(project.pretick_floor)
    curve = version.config.get("tick_curve") if version is not None else None
    bins = (version.decision_counts or {}).get("bins", []) if version is not None else []
    if project.decision_threshold is not None:
        threshold = float(project.decision_threshold)
        checked = ml.pretick(curve, bins, floor=floor, threshold=threshold) if curve else None
        return {
            "threshold": threshold,
            "precision": checked["precision"] if checked else None,
            "floor": floor,
            "source": "set by a project manager",
        }
    if not project.preticks_enabled:
        return {"threshold": None, "floor": floor, "reason": "a project manager switched pre-ticks off"}
    if version is None:
        return {
            "threshold": None,
            "floor": floor,
            "reason": "no model is trained yet (suggestions come from the label names alone)",
        }
    result = ml.pretick(curve, bins, floor=floor) if curve else None
    if result is None:
        return {
            "threshold": None,
            "floor": floor,
            "reason": "this model's scores are not checked yet (that needs 20 labelled documents)",
        }
    if result["threshold"] is None:
        return {
            "threshold": None,
            "floor": floor,
            "reason": f"no score is shown, with {round(ml.PRETICK_CONFIDENCE * 100)} % confidence, to be right at "
            f"least {round(floor * 100)} % of the time yet ({_evidence(result)})",
        }
    return {
        "threshold": result["threshold"],
        "precision": result["precision"],
        "floor": floor,
        "source": _evidence(result),
    }


def suggestions_named(*, pairs: list[list[float]], threshold: float | None) -> list[dict[str, Any]]:
    """[[label_id, p], ...] -> [{"label_id", "label", "description", "score", "preselected"}], best first; pre-ticked
    at `threshold` (None: none). Deprecated labels (and labels merged away since scoring) are left out."""
    ids = [int(label_id) for label_id, _ in pairs]
    named = {
        pk: (name, description)
        for pk, name, description in Label.objects.filter(pk__in=ids, deprecated_at__isnull=True).values_list(
            "id", "name", "description"
        )
    }
    return [
        {
            "label_id": int(label_id),
            "label": named[int(label_id)][0],
            "description": named[int(label_id)][1],
            "score": round(float(score), 4),
            "preselected": threshold is not None and round(float(score), 4) >= threshold,
        }
        for label_id, score in pairs
        if int(label_id) in named
    ]


def item_suggestions_served(*, project: Project, item: QueueItem) -> tuple[list[dict[str, Any]], dict | None]:
    """What a queue item shows as suggestions, and the pre-tick rule when it is not the model's (None: `pretick_rule`
    of the item's version). An external source's pre-annotations while the item's model has not beaten it
    (`selectors.preannotations`, each suggestion marked with its `source`); else the first `suggestions_k` of the
    item's shortlist, named, pre-ticked by the pre-tick rule of the version that scored it (`pretick_rule`), marked
    `"source": "model"` (the label-name prior's before the first model are not marked)."""
    external = preannotation_suggestions(project=project, item=item)
    if external is not None:
        return external
    named = suggestions_named(
        pairs=item.suggestions[: project.suggestions_k],
        threshold=pretick_rule(project=project, version=item.model_version)["threshold"],
    )
    if item.model_version_id is not None:
        for suggestion in named:
            suggestion["source"] = "model"
    return named, None


def item_suggestions(*, project: Project, item: QueueItem) -> list[dict[str, Any]]:
    """What a queue item shows as suggestions (`item_suggestions_served`)."""
    return item_suggestions_served(project=project, item=item)[0]


def live_lease_filter(now=None) -> Q:
    """Queue rows someone holds now (their holders are working on them): the one rule of a live lease."""
    now = now or timezone.now()
    return Q(leased_to__isnull=False, lease_expires_at__gt=now)


def lease_free_filter(now=None) -> Q:
    """Queue rows nobody holds now (never leased, or the lease expired): the complement of `live_lease_filter`."""
    now = now or timezone.now()
    return Q(leased_to__isnull=True) | Q(lease_expires_at__lte=now)


def lease_held_by_other(item: QueueItem, user, now=None) -> bool:
    """Whether someone other than `user` holds the queue row `item` now (the row as read, in Python)."""
    now = now or timezone.now()
    return (
        item.leased_to_id not in (None, user.pk) and item.lease_expires_at is not None and item.lease_expires_at > now
    )
