"""Reads: permission look-ups, search, statistics, export. No writes here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from .exceptions import NotFound, PermissionDenied
from .models import (
    Annotation,
    AnnotationLabel,
    Document,
    Job,
    Label,
    Membership,
    ModelVersion,
    Project,
    QueueItem,
)
from .text import fold


# --- permissions -------------------------------------------------------------------------------------------------
def projects_for_user(*, user) -> QuerySet[Project]:
    return Project.objects.filter(memberships__user=user).distinct().order_by("-id")


def project_role(*, project: Project, user) -> str | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def project_get_for(*, project_id: int, user, manager: bool = False) -> tuple[Project, str]:
    """The project if the user is a member (and a manager when asked); NotFound / PermissionDenied otherwise.

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
    return membership.project, membership.role


# --- model versions and queue ------------------------------------------------------------------------------------
def serving_version(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, is_serving=True).first()


def annotated_documents(*, project: Project) -> QuerySet[Document]:
    return Document.objects.filter(project=project).filter(Exists(Annotation.objects.filter(document=OuterRef("pk"))))


def unlabelled_document_ids(*, project: Project) -> list[int]:
    return list(
        Document.objects.filter(project=project)
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("pk"))))
        .order_by("id")
        .values_list("id", flat=True)
    )


def annotations_new_since(*, project: Project, cutoff) -> int:
    qs = Annotation.objects.filter(document__project=project)
    if cutoff is not None:
        qs = qs.filter(updated_at__gt=cutoff)
    return qs.count()


@dataclass(frozen=True)
class Budget:
    budget: int | None
    spent: int  # documents labelled by experts (seed labels from imports are free)
    in_progress: int  # documents leased right now and not yet labelled

    @property
    def remaining(self) -> int | None:
        if self.budget is None:
            return None
        return max(self.budget - self.spent, 0)

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and self.spent >= self.budget


def budget_for(*, project: Project) -> Budget:
    spent = (
        Document.objects.filter(project=project)
        .filter(Exists(Annotation.objects.filter(document=OuterRef("pk")).exclude(source=Annotation.Source.IMPORT)))
        .count()
    )
    in_progress = (
        QueueItem.objects.filter(project=project, lease_expires_at__gt=timezone.now())
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("document"))))
        .values("document")
        .distinct()
        .count()
    )
    return Budget(budget=project.label_budget, spent=spent, in_progress=in_progress)


def effective_threshold(*, project: Project, version: ModelVersion | None) -> float:
    """The probability at which suggestions are pre-ticked: the manager's setting, else the serving model's
    threshold tuned for micro-F1 on held-out labels, else 0.5."""
    if project.decision_threshold is not None:
        return float(project.decision_threshold)
    if version is not None and isinstance(version.config.get("threshold"), int | float):
        return float(version.config["threshold"])
    return 0.5


def suggestions_named(*, pairs: list[list[float]], threshold: float) -> list[dict[str, Any]]:
    """[[label_id, p], ...] -> [{"label_id", "label", "score", "preselected"}], best first."""
    ids = [int(label_id) for label_id, _ in pairs]
    names = dict(Label.objects.filter(pk__in=ids).values_list("id", "name"))
    return [
        {
            "label_id": int(label_id),
            "label": names[int(label_id)],
            "score": round(float(score), 4),
            "preselected": float(score) >= threshold,
        }
        for label_id, score in pairs
        if int(label_id) in names
    ]


# --- labels --------------------------------------------------------------------------------------------------------
def label_search(*, project: Project, query: str, limit: int = 20) -> list[Label]:
    """Case- and diacritics-insensitive search over label names: prefix matches first, then substring matches.

    Served from the (project, search_key) index; never loads the whole label set.
    """
    limit = max(1, min(int(limit), 100))
    key = fold(query or "")
    base = Label.objects.filter(project=project).only("id", "name", "description")
    if not key:
        return list(base.order_by("name")[:limit])
    prefix = list(base.filter(search_key__startswith=key).order_by("search_key", "id")[:limit])
    if len(prefix) >= limit:
        return prefix
    seen = [label.pk for label in prefix]
    rest = list(
        base.filter(search_key__contains=key).exclude(pk__in=seen).order_by("search_key", "id")[: limit - len(prefix)]
    )
    return prefix + rest


# --- statistics ----------------------------------------------------------------------------------------------------
def job_summary(job: Job | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "progress": round(job.progress, 3),
        "message": job.message,
        "error": job.error,
        "reason": job.reason,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def model_version_summary(version: ModelVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {
        "id": version.pk,
        "number": version.number,
        "is_serving": version.is_serving,
        "created_at": version.created_at,
        "n_annotations": version.n_annotations,
        "n_labels": version.n_labels,
        "metrics": version.metrics,
        "train_seconds": version.train_seconds,
        "device": version.device,
    }


def project_stats(*, project: Project) -> dict[str, Any]:
    budget = budget_for(project=project)
    documents = Document.objects.filter(project=project).count()
    annotated = annotated_documents(project=project).count()
    annotations = Annotation.objects.filter(document__project=project).count()
    version = serving_version(project=project)
    cutoff = version.data_cutoff if version else None
    latest_jobs = {}
    for kind in Job.Kind.values:
        latest_jobs[kind] = job_summary(Job.objects.filter(project=project, kind=kind).order_by("-id").first())
    queue = QueueItem.objects.filter(project=project, model_version=version)
    return {
        "project": project.pk,
        "name": project.name,
        "budget": {
            "label_budget": budget.budget,
            "spent": budget.spent,
            "remaining": budget.remaining,
            "in_progress": budget.in_progress,
            "exhausted": budget.exhausted,
        },
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


def recent_jobs(*, project: Project, limit: int = 10) -> QuerySet[Job]:
    return Job.objects.filter(project=project).order_by("-id")[:limit]


# --- export ----------------------------------------------------------------------------------------------------------
def export_rows(*, project: Project, include_unlabelled: bool = False, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """One row per document: id, text, labels (of its latest annotation; None when unlabelled), annotator."""
    docs = Document.objects.filter(project=project).order_by("id")
    if not include_unlabelled:
        docs = docs.filter(Exists(Annotation.objects.filter(document=OuterRef("pk"))))
    ids = list(docs.values_list("id", flat=True))
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        rows = Document.objects.filter(pk__in=part).values("id", "external_id", "text").order_by("id")
        latest: dict[int, Annotation] = {}
        for annotation in (
            Annotation.objects.filter(document_id__in=part).select_related("annotator").order_by("updated_at", "id")
        ):
            latest[annotation.document_id] = annotation
        labels: dict[int, list[str]] = {}
        for annotation_id, name in AnnotationLabel.objects.filter(
            annotation_id__in=[a.pk for a in latest.values()]
        ).values_list("annotation_id", "label__name"):
            labels.setdefault(annotation_id, []).append(name)
        for row in rows:
            annotation = latest.get(row["id"])
            yield {
                "id": row["external_id"],
                "text": row["text"],
                "labels": sorted(labels.get(annotation.pk, [])) if annotation else None,
                "annotator": annotation.annotator.username if annotation else None,
                "annotated_at": annotation.updated_at.isoformat() if annotation else None,
            }


def label_counts(*, project: Project) -> dict[int, int]:
    """Positive count per label id over the project's annotations."""
    return dict(
        AnnotationLabel.objects.filter(label__project=project)
        .values("label_id")
        .annotate(n=Count("id"))
        .values_list("label_id", "n")
    )


def live_lease_filter(now=None) -> Q:
    now = now or timezone.now()
    return Q(leased_to__isnull=False, lease_expires_at__gt=now)
