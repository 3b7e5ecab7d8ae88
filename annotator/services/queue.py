"""Serving documents: leases on the queue of the serving model version."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ..exceptions import ProjectError
from ..models import Annotation, Document, DocumentSkip, Job, ModelVersion, Project, QueueItem
from ..selectors import Budget, budget_for, item_suggestions, member_quota_left, serving_version
from .evaluation import evaluation_turn
from .jobs import job_request


@dataclass(frozen=True)
class Served:
    item: QueueItem
    document: Document
    suggestions: list[dict[str, Any]]
    budget: Budget | None = None  # when serving had to count it (a hard budget): the page shows it


@dataclass(frozen=True)
class NothingToServe:
    reason: str  # "budget", "quota" or "empty"
    message: str


def _annotated() -> Exists:
    return Exists(Annotation.objects.filter(document=OuterRef("document")))


def _lease(item: QueueItem, user, project: Project) -> QueueItem:
    item.leased_to = user
    item.lease_expires_at = timezone.now() + timedelta(seconds=project.lease_seconds)
    item.save(update_fields=["leased_to", "lease_expires_at"])
    return item


def _served(item: QueueItem, project: Project, budget: Budget | None = None) -> Served:
    document = item.document  # fetched with the item (select_related)
    return Served(item=item, document=document, suggestions=item_suggestions(project=project, item=item), budget=budget)


def _free_documents(project: Project, user, now, *, evaluation: bool):
    """Unlabelled documents of the pool (or of the evaluation set) that nobody else holds and the user did not skip."""
    return (
        Document.objects.filter(project=project, is_evaluation=evaluation)
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("pk"))))
        .filter(~Exists(DocumentSkip.objects.filter(document=OuterRef("pk"), user=user)))
        .filter(
            ~Exists(
                QueueItem.objects.filter(
                    document=OuterRef("pk"), leased_to__isnull=False, lease_expires_at__gt=now
                ).exclude(leased_to=user)
            )
        )
    )


def _evaluation_item(project: Project, user, version: ModelVersion | None, now) -> QueueItem | None:
    """A random unlabelled document of the evaluation set, as a queue row of the serving version (with the model's
    suggestions when scoring prepared them, so it looks like any other document)."""
    candidates = _free_documents(project, user, now, evaluation=True)
    count = candidates.count()
    if count == 0:
        return None
    return _queue_row(project, user, now, candidates, count, version, "evaluation")


def _queue_row(
    project: Project, user, now, candidates, count: int, version: ModelVersion | None, strategy: str
) -> QueueItem | None:
    """A random one of `count` candidate documents as a queue row of `version` (the existing one if scoring made
    it), locked; None if a concurrent request leased it to someone else meanwhile."""
    document_id = candidates.order_by("id").values_list("id", flat=True)[random.randrange(count)]
    rows = QueueItem.objects.select_related("document", "model_version")
    if connection.features.has_select_for_update:
        rows = rows.select_for_update(of=("self",))
    for _ in range(3):
        item, _ = QueueItem.objects.get_or_create(
            project=project,
            document_id=document_id,
            model_version=version,
            defaults={"strategy": strategy, "score": -1.0, "suggestions": []},
        )
        try:
            item = rows.get(pk=item.pk)
        except QueueItem.DoesNotExist:  # a scoring run replaced the queue between the two: take the new row
            continue
        if item.leased_to_id not in (None, user.pk) and item.lease_expires_at > now:
            return None
        return item
    return None


def _random_unserved(project: Project, user, version: ModelVersion | None, now) -> QueueItem | None:
    """Fallback when the queue is empty: a random unlabelled document of the pool nobody holds."""
    candidates = _free_documents(project, user, now, evaluation=False)
    count = candidates.count()
    if count == 0:
        return None
    return _queue_row(project, user, now, candidates, count, version, "random")


def _free_items(project: Project, user, now):
    """Queue rows of the pool the user may take, best first, locked (skipping rows locked by a concurrent `next`)."""
    free = (
        QueueItem.objects.filter(project=project, document__is_evaluation=False)
        .filter(Q(leased_to__isnull=True) | Q(lease_expires_at__lte=now))
        .filter(~_annotated())
        .filter(~Exists(DocumentSkip.objects.filter(document=OuterRef("document"), user=user)))
        .select_related("document", "model_version")
        .order_by("-score", "id")
    )
    if connection.features.has_select_for_update_skip_locked:
        free = free.select_for_update(skip_locked=True, of=("self",))
    return free


def _version_queued(project: Project, version: ModelVersion) -> bool:
    """Whether scoring has put any document of the pool into `version`'s queue yet."""
    return (
        QueueItem.objects.filter(project=project, model_version=version)
        .exclude(strategy__in=["evaluation", "random"])
        .exists()
    )


@transaction.atomic
def queue_lease_next(*, project: Project, user) -> Served | NothingToServe:
    """The next document for the user, leased to them for `project.lease_seconds`.

    A document the user already holds is served again (and its lease renewed). Otherwise the highest-scoring
    free item of the serving model version's queue (the cold-start queue when there is no model yet), falling
    back to a random unlabelled document. With a hard budget nothing new is served once the label budget (spent
    plus leased) or the user's quota is reached; a soft budget keeps serving.
    """
    now = timezone.now()
    held = (
        QueueItem.objects.filter(project=project, leased_to=user, lease_expires_at__gt=now)
        .filter(~_annotated())
        .select_related("document", "model_version")
        .order_by("-score", "id")
        .first()
    )
    if held is not None:
        return _served(_lease(held, user, project), project)

    budget = None
    if project.budget_mode == Project.BudgetMode.HARD:
        if project.label_budget is not None:
            budget = budget_for(project=project)
            if budget.spent + budget.in_progress >= project.label_budget:
                return NothingToServe(
                    reason="budget",
                    message=f"the label budget of {project.label_budget} documents is spent",
                )
        if member_quota_left(project=project, user=user) == 0:
            return NothingToServe(reason="quota", message="you have labelled your quota of documents here")
    version = serving_version(project=project)
    if evaluation_turn(project=project):
        item = _evaluation_item(project, user, version, now)
        if item is not None:
            return _served(_lease(item, user, project), project, budget)
    free = _free_items(project, user, now)
    item = free.filter(model_version=version).first()
    if item is None and version is not None and not _version_queued(project, version):
        # The new version is re-scoring the pool and has not delivered its first chunk: the previous queue serves
        # until then (its items go when the first chunk arrives).
        item = free.exclude(model_version=version).first()
    if item is None:
        item = _random_unserved(project, user, version, now) or _evaluation_item(project, user, version, now)
        if item is None:
            return NothingToServe(reason="empty", message="every document is labelled or in someone's hands")
        if item.strategy != "evaluation":
            job_request(project=project, kind=Job.Kind.SCORE, reason="queue empty")
    return _served(_lease(item, user, project), project, budget)


@transaction.atomic
def queue_release(*, project: Project, user, document_id: int | None = None) -> int:
    """Ends the user's leases in the project, or on one document (the documents return to the queue)."""
    held = QueueItem.objects.filter(project=project, leased_to=user)
    if document_id is not None:
        held = held.filter(document_id=document_id)
    return held.update(leased_to=None, lease_expires_at=None)


@transaction.atomic
def lease_renew(*, project: Project, user, document_id: object) -> QueueItem | None:
    """Extends the user's lease on a document by `project.lease_seconds` (the page does this while it is open).

    A lease that expired is taken again if nobody else took the document meanwhile. Returns None when the document
    is no longer the user's to hold (someone else holds it, or it left the queue): the page then tells the expert,
    whose answer is still accepted.
    """
    if isinstance(document_id, bool) or not str(document_id).isdigit():
        raise ProjectError("document must be the numeric id returned by `next`")
    now = timezone.now()
    items = QueueItem.objects.filter(project=project, document_id=int(document_id)).filter(~_annotated())
    if connection.features.has_select_for_update:
        items = items.select_for_update()
    items = list(items.order_by("-created_at"))
    if any(i.leased_to_id not in (None, user.pk) and i.lease_expires_at > now for i in items):
        return None
    mine = next((i for i in items if i.leased_to_id == user.pk), None) or (items[0] if items else None)
    return _lease(mine, user, project) if mine is not None else None
