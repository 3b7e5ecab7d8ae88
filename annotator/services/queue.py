"""The queue: serving documents (leases on the queue of the serving model version), and the scoring job's writes
(swapping in a version's queue, chunk by chunk while it scores). A lease is live by `selectors.live_lease_filter`."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from ..exceptions import ProjectError
from ..models import Annotation, Document, DocumentSkip, Job, ModelVersion, Project, QueueItem
from ..selectors import (
    Budget,
    item_suggestions_served,
    lease_free_filter,
    lease_held_by_other,
    live_lease_filter,
    serving_version,
)
from .budgets import lease_within_budget
from .evaluation import evaluation_turn
from .jobs import job_request
from .overlap import overlap_waiting


@dataclass(frozen=True)
class Served:
    item: QueueItem
    document: Document
    suggestions: list[dict[str, Any]]
    budget: Budget | None = None  # when serving had to count it (a hard budget): the page shows it
    # The pre-tick rule of an external source's suggestions (`selectors.preannotations`); None: the model's
    # (`selectors.pretick_rule` of the item's version).
    pretick: dict[str, Any] | None = None


@dataclass(frozen=True)
class NothingToServe:
    reason: str  # "budget", "quota", "archived" or "empty"
    message: str


def _annotated() -> Exists:
    return Exists(Annotation.objects.filter(document=OuterRef("document")))


def _open_to(user) -> Q:
    """On queue rows: the document still wants an answer, and not from `user` (who gave theirs)."""
    return Q(document__answers_count__lt=F("document__answers_wanted")) & ~Q(
        Exists(Annotation.objects.filter(document=OuterRef("document"), annotator=user))
    )


def _lease(item: QueueItem, user, project: Project) -> QueueItem:
    item.leased_to = user
    item.lease_expires_at = timezone.now() + timedelta(seconds=project.lease_seconds)
    item.save(update_fields=["leased_to", "lease_expires_at"])
    return item


def _served(item: QueueItem, project: Project, budget: Budget | None = None) -> Served:
    document = item.document  # fetched with the item (select_related)
    suggestions, pretick = item_suggestions_served(project=project, item=item)
    return Served(item=item, document=document, suggestions=suggestions, budget=budget, pretick=pretick)


def _free_documents(project: Project, user, now, *, evaluation: bool):
    """Unlabelled documents of the pool (or of the evaluation set) that nobody else holds and the user did not skip."""
    return (
        Document.objects.filter(project=project, is_evaluation=evaluation)
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("pk"))))
        .filter(~Exists(DocumentSkip.objects.filter(document=OuterRef("pk"), user=user)))
        .filter(
            ~Exists(QueueItem.objects.filter(live_lease_filter(now), document=OuterRef("pk")).exclude(leased_to=user))
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
    it), locked; None if a concurrent request leased it to someone else meanwhile, or took the last candidates."""
    ids = candidates.order_by("id").values_list("id", flat=True)
    offset = random.randrange(count)
    # Requests that took candidates since they were counted may have moved the end before `offset`: then the last.
    document_id = next(iter(ids[offset : offset + 1]), None) or ids.last()
    if document_id is None:
        return None
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
        if lease_held_by_other(item, user, now):
            return None
        return item
    return None


def _overlap_item(project: Project, user, version: ModelVersion | None, now) -> QueueItem | None:
    """A document that has some of its overlap answers and waits for more, which the user has not answered, skipped
    or seen held by someone else: served before new picks, so that overlap documents are completed (and their
    agreement known) while the project goes on. Its queue row keeps the suggestions the first expert saw (scoring
    refreshes them with each model), so every expert sees the same help."""
    candidates = (
        Document.objects.filter(overlap_waiting(), project=project)
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("pk"), annotator=user)))
        .filter(~Exists(DocumentSkip.objects.filter(document=OuterRef("pk"), user=user)))
        .filter(
            ~Exists(QueueItem.objects.filter(live_lease_filter(now), document=OuterRef("pk")).exclude(leased_to=user))
        )
    )
    count = candidates.count()
    if count == 0:
        return None
    item = _queue_row(project, user, now, candidates, count, version, "overlap")
    if item is not None and item.strategy != "overlap":  # the row the first answer was served from
        item.strategy = "overlap"  # what picked it for this expert: its answer is no strategy's pick
        QueueItem.objects.filter(pk=item.pk).update(strategy="overlap")
    return item


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
        .filter(lease_free_filter(now))
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
        .exclude(strategy__in=["evaluation", "overlap", "random"])
        .exists()
    )


def _choose(project: Project, user, now) -> QueueItem | None:
    """The queue row to serve the user (locked, not yet leased): an evaluation document when it is the set's turn,
    else the highest-scoring free item of the serving version's queue (the cold-start queue without a model),
    falling back to a random unlabelled document."""
    version = serving_version(project=project)
    if project.overlap_share > 0 or project.overlap_evaluation:  # else no document wants a further answer
        item = _overlap_item(project, user, version, now)
        if item is not None:
            return item
    if evaluation_turn(project=project):
        item = _evaluation_item(project, user, version, now)
        if item is not None:
            return item
    free = _free_items(project, user, now)
    item = free.filter(model_version=version).first()
    if item is None and version is not None and not _version_queued(project, version):
        # The new version is re-scoring the pool and has not delivered its first chunk: the previous queue serves
        # until then (its items go when the first chunk arrives).
        item = free.exclude(model_version=version).first()
    if item is None:
        item = _random_unserved(project, user, version, now) or _evaluation_item(project, user, version, now)
        if item is not None and item.strategy != "evaluation":
            job_request(project=project, kind=Job.Kind.SCORE, reason="queue empty")
    return item


def _still_open(document_id: int, user) -> bool:
    """Read after the row lock: the document still wants an answer, and the user has not given one."""
    return (
        Document.objects.filter(pk=document_id, answers_count__lt=F("answers_wanted"))
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("pk"), annotator=user)))
        .exists()
    )


@transaction.atomic
def queue_lease_next(*, project: Project, user) -> Served | NothingToServe:
    """The next document for the user, leased to them for `project.lease_seconds`.

    A document the user already holds is served again (and its lease renewed). Otherwise `_choose` picks one and
    leases it, and `lease_within_budget` (the budget check, the last step before the commit) keeps the lease only if a
    hard budget (spent plus leased) and the user's quota still hold with it; a soft budget keeps serving.
    """
    if project.archived_at is not None:
        return NothingToServe(reason="archived", message="the project is archived")
    now = timezone.now()
    held = (
        QueueItem.objects.filter(live_lease_filter(now), project=project, leased_to=user)
        .filter(_open_to(user))
        .select_related("document", "model_version")
        .order_by("-score", "id")
        .first()
    )
    if held is not None:
        return _served(_lease(held, user, project), project)

    with lease_within_budget(project=project, user=user) as verdict:
        for _ in range(3):
            item = _choose(project, user, now)
            # The row is ours now (locked). If another expert's answer completed the document while we waited for the
            # lock (their submit released their lease on it), this statement sees it: choose again (the locked row is
            # skipped).
            if item is None or _still_open(item.document_id, user):
                break
            item = None
        if item is None:
            verdict.wrote = False
        else:
            _lease(item, user, project)
    if verdict.refusal is not None:
        return NothingToServe(reason=verdict.refusal[0], message=verdict.refusal[1])
    if item is None:
        return NothingToServe(reason="empty", message="every document is labelled or in someone's hands")
    return _served(item, project, verdict.budget)  # the budget, when the check counted it: shown on the page


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
    items = QueueItem.objects.filter(project=project, document_id=int(document_id)).filter(_open_to(user))
    if connection.features.has_select_for_update:
        items = items.select_for_update()
    items = list(items.order_by("-created_at"))
    if any(lease_held_by_other(i, user, now) for i in items):
        return None
    mine = next((i for i in items if i.leased_to_id == user.pk), None)
    if mine is not None:
        return _lease(mine, user, project)
    if not items:
        return None
    with lease_within_budget(project=project, user=user) as verdict:  # taken like one `next` serves
        taken = _lease(items[0], user, project)
    return None if verdict.refusal is not None else taken


# --- writes of the scoring job ---------------------------------------------------------------------------------------
def _lock_if_serving(project: Project, version: ModelVersion | None) -> bool:
    """Inside a transaction: locks the project row (serialises queue writes with publishing and promoting) and
    says whether `version` (None: no model yet) still serves."""
    Project.objects.select_for_update(no_key=True).get(pk=project.pk)
    current = serving_version(project=project)
    return (current.pk if current else None) == (version.pk if version else None)


def queue_replace(project: Project, version: ModelVersion | None, items: list[QueueItem]) -> int | None:
    """Swaps the project's queue for `items` in one transaction, keeping live leases (their holders are working).

    Returns None and changes nothing when `version` is no longer the serving one (a newer model was published
    while scoring): its queue must not replace the newer model's.
    """
    with transaction.atomic():
        if not _lock_if_serving(project, version):
            return None
        held = {item.document_id: item for item in QueueItem.objects.filter(live_lease_filter(), project=project)}
        QueueItem.objects.filter(project=project).exclude(pk__in=[item.pk for item in held.values()]).delete()
        fresh = [item for item in items if item.document_id not in held]
        # A row another writer queued for the same document meanwhile (e.g. the evaluation set's) stays as it is:
        # a scoring run never fails on it (a crash left the job RUNNING until the reconciler noticed).
        QueueItem.objects.bulk_create(fresh, batch_size=1000, ignore_conflicts=True)
        # A document someone is working on keeps its lease but takes the new version's suggestions and provenance.
        renewed = []
        for item in items:
            current_item = held.get(item.document_id)
            if current_item is not None:
                current_item.model_version = item.model_version
                current_item.strategy = item.strategy
                current_item.score = item.score
                current_item.suggestions = item.suggestions
                renewed.append(current_item)
        QueueItem.objects.bulk_update(renewed, ["model_version", "strategy", "score", "suggestions"], batch_size=1000)
    return len(fresh) + len(renewed)


class QueueChunkPublisher:
    """Adds each scored chunk's best documents to the queue as items of `version` while scoring goes on, so that
    `next` serves the new version's best documents found so far. The first chunk (with the evaluation documents'
    suggestions) also removes the previous versions' queue, except documents someone holds."""

    def __init__(self, project: Project, version: ModelVersion, evaluation: list[QueueItem]) -> None:
        self.project = project
        self.version = version
        self.evaluation = evaluation
        self.first = True

    def __call__(self, items: list[QueueItem]) -> bool:
        """Returns False (and changes nothing) when `version` no longer serves."""
        with transaction.atomic():
            if not _lock_if_serving(self.project, self.version):
                return False
            live = {
                item.document_id: item.pk
                for item in QueueItem.objects.filter(live_lease_filter(), project=self.project)
            }
            held = set(live)
            if self.first:
                QueueItem.objects.filter(project=self.project).exclude(model_version=self.version).exclude(
                    pk__in=list(live.values())
                ).delete()
                items = items + self.evaluation
            fresh = [
                QueueItem(
                    project=self.project,
                    document_id=item.document_id,
                    model_version=self.version,
                    strategy=item.strategy,
                    score=item.score,
                    suggestions=item.suggestions,
                )
                for item in items
                if item.document_id not in held
            ]
            QueueItem.objects.bulk_create(fresh, batch_size=1000, ignore_conflicts=True)
        self.first = False
        return True


def queue_statistics_refresh(inserted: int) -> None:
    """After a large queue swap the planner's statistics are stale (PostgreSQL: a sequential sort of the new
    queue until autovacuum runs; SQLite: none at all), and `next` slows down several-fold. Refresh them."""
    if inserted < 1000:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE annotator_queueitem")
        elif connection.vendor == "sqlite":
            cursor.execute("PRAGMA optimize")
