"""Reads about projects: who may see which project in which role, the activity feed, the project's counts."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from ..exceptions import NotFound, PermissionDenied
from ..models import (
    Activity,
    Annotation,
    Document,
    Job,
    Label,
    Membership,
    Project,
    QueueItem,
    TrainingSchedule,
)
from .budgets import annotations_new_since, budget_overview
from .jobs import job_summary
from .registry import model_version_summary, serving_version


def projects_for_user(*, user) -> QuerySet[Project]:
    return Project.objects.filter(memberships__user=user).distinct().order_by("-id")


def project_get_for(*, project_id: int, user, manager: bool = False, reviewer: bool = False) -> tuple[Project, str]:
    """The project if the user is a member (a manager when `manager`, a manager or a reviewer when `reviewer`);
    NotFound / PermissionDenied otherwise.

    Non-members get the same 404 as for a missing project, so project ids leak nothing.
    """
    membership = (
        Membership.objects.select_related("project").filter(project_id=project_id, user_id=user.pk).first()
        if user.is_authenticated
        else None
    )
    if membership is None:
        raise NotFound(f"project {project_id} does not exist or you are not a member of it")
    if manager and membership.role != Membership.Role.MANAGER:
        raise PermissionDenied("only managers of this project may do this")
    if reviewer and membership.role not in (Membership.Role.MANAGER, Membership.Role.REVIEWER):
        raise PermissionDenied("only reviewers and managers of this project may do this")
    return membership.project, membership.role


def activities(*, project: Project, limit: int = 20) -> QuerySet[Activity]:
    return Activity.objects.filter(project=project).order_by("-id")[:limit]


def training_schedules(*, project: Project) -> QuerySet[TrainingSchedule]:
    return TrainingSchedule.objects.filter(project=project).select_related("project", "periodic_task")


def project_stats(*, project: Project) -> dict[str, Any]:
    documents = Document.objects.filter(project=project).count()
    answers = Annotation.objects.filter(project=project)
    annotated = answers.values("document_id").distinct().count()
    annotations = answers.count()
    version = serving_version(project=project)
    cutoff = version.data_cutoff if version else None
    latest_jobs = {}
    for kind in Job.Kind.values:
        latest_jobs[kind] = job_summary(Job.objects.filter(project=project, kind=kind).order_by("-id").first())
    queue = QueueItem.objects.filter(project=project, model_version=version)
    return {
        "project": project.pk,
        "name": project.name,
        "budget": budget_overview(project=project),
        "documents": documents,
        "annotated_documents": annotated,
        "annotations": annotations,
        "labels": Label.objects.filter(project=project).count(),
        "new_annotations_since_model": annotations_new_since(project=project, cutoff=cutoff),
        "retrain_every": project.retrain_every,
        "model_version": model_version_summary(version),
        "queue": {"items": queue.count(), "strategy": project.strategy},
        "jobs": latest_jobs,
    }
