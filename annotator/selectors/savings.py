"""Reads for 'does active learning pay here?': the strategy picks and the latest estimate."""

from __future__ import annotations

from typing import Any

from ..models import (
    Annotation,
    Job,
    Project,
    SavingsEstimate,
)
from .jobs import job_summary

NOT_PICKED = ("import", "evaluation", "overlap", "")  # answers no strategy picked: seeds, blind, further, unserved


SAVINGS_JOB_FIELDS = ("id", "status", "progress", "message", "error", "reason", "created_at", "finished_at")


def savings_pick_ids(*, project: Project) -> list[int]:
    """The documents the project's picks labelled, in the order they were first answered: documents outside the
    evaluation set whose first annotation came from the queue (cold-start, a strategy's picks or the random
    fallback), not from an import or an answer to a document never served."""
    first: dict[int, str] = {}
    for document_id, strategy in (
        Annotation.objects.filter(project=project, document__is_evaluation=False)
        .order_by("created_at", "id")
        .values_list("document_id", "strategy")
    ):
        first.setdefault(document_id, strategy)
    return [document_id for document_id, strategy in first.items() if strategy not in NOT_PICKED]


def savings_latest(*, project: Project) -> SavingsEstimate | None:
    """The project's newest savings estimate."""
    return SavingsEstimate.objects.filter(project=project).select_related("model_version").order_by("-id").first()


def savings_overview(*, project: Project) -> dict[str, Any]:
    """The newest estimate (None before the first), the newest estimate job (queued, running or finished) and
    whether the estimate favours a strategy the project does not use yet (`adoptable`)."""
    latest = savings_latest(project=project)
    job = Job.objects.filter(project=project, kind=Job.Kind.ESTIMATE).order_by("-id").first()
    estimate = None
    favoured = None
    if latest is not None:
        favoured = latest.result.get("favoured")
        estimate = {
            "id": latest.pk,
            "created_at": latest.created_at,
            "picks": latest.picks,
            "evaluation_documents": latest.evaluation_documents,
            "model_version": latest.model_version.number if latest.model_version_id else None,
            "job": latest.job_id,
            "result": latest.result,
        }
    summary = job_summary(job)
    return {
        "estimate": estimate,
        # what any member may see of it (no worker host names)
        "job": {key: summary[key] for key in SAVINGS_JOB_FIELDS} if summary is not None else None,
        "active": job is not None and job.status in Job.ACTIVE,
        "strategy": project.strategy,
        "favoured": favoured,
        "adoptable": bool(favoured) and favoured != project.strategy,
    }
