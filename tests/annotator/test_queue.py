"""Tests of annotator.services.queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotator import services
from annotator.exceptions import ProjectError
from annotator.models import (
    Annotation,
    DocumentSkip,
    Job,
    QueueItem,
)
from annotator.services import queue

from .conftest import make_user, records
from .loop import encode_all, label, train


# --- queue and leases ------------------------------------------------------------------------------------------------
def _queue(project, documents, scores):
    for doc, score in zip(documents, scores, strict=False):
        QueueItem.objects.create(project=project, document=doc, strategy="cold_start", score=score)


# --- re-scoring without staleness -------------------------------------------------------------------------------
@pytest.mark.usefixtures("tiny_encoder")
def test_next_serves_the_old_queue_until_the_first_chunk_then_the_new_versions_best(
    project, manager, annotator_user, documents, monkeypatch
):
    encode_all(project)
    label(project, annotator_user, documents, 0, 6)
    v1 = train(project, manager)
    services.scoring_run(job_id=Job.objects.get(kind="score", status="PENDING").pk)
    label(project, annotator_user, documents, 6, 2)
    v2 = train(project, manager, mode="full")
    other = make_user("second")
    services.member_add(project=project, username="second", role="annotator")

    served = services.queue_lease_next(project=project, user=other)  # v2 has not scored anything yet
    assert served.item.model_version_id == v1.pk and served.item.strategy != "random"
    services.queue_release(project=project, user=other)

    seen = []
    real_publish = queue.QueueChunkPublisher.__call__

    def publish_then_serve(self, items):
        ok = real_publish(self, items)
        served = services.queue_lease_next(project=project, user=other)  # mid-scoring, after this chunk
        seen.append((served.item.model_version_id, served.item.strategy))
        services.queue_release(project=project, user=other)
        return ok

    monkeypatch.setattr(queue.QueueChunkPublisher, "__call__", publish_then_serve)
    scoring = Job.objects.get(kind="score", status="PENDING", model_version=v2)
    services.scoring_run(job_id=scoring.pk)
    assert seen and seen[0][0] == v2.pk and seen[0][1] not in ("random", "evaluation")
    assert set(QueueItem.objects.filter(project=project).values_list("model_version_id", flat=True)) == {v2.pk}
    scoring.refresh_from_db()
    assert scoring.status == "SUCCEEDED"


def test_next_serves_the_best_item_and_leases_it(project, annotator_user, documents):
    _queue(project, documents[:3], [0.1, 0.9, 0.5])
    served = services.queue_lease_next(project=project, user=annotator_user)
    assert served.document == documents[1]
    assert served.item.leased_to == annotator_user
    assert served.item.lease_expires_at > timezone.now()
    again = services.queue_lease_next(project=project, user=annotator_user)
    assert again.document == documents[1]  # the held document comes back until it is answered


def test_two_annotators_never_get_the_same_document_while_the_lease_holds(project, annotator_user, documents):
    other = make_user("second")
    services.member_add(project=project, username="second", role="annotator")
    _queue(project, documents[:2], [0.9, 0.5])
    first = services.queue_lease_next(project=project, user=annotator_user)
    second = services.queue_lease_next(project=project, user=other)
    assert first.document != second.document
    QueueItem.objects.filter(pk=first.item.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    services.annotation_submit(project=project, user=other, document_id=second.document.pk, labels=[])
    third = services.queue_lease_next(project=project, user=other)
    assert third.document == first.document  # the expired lease returned it to the queue


def test_answer_after_the_lease_expired_is_still_saved(project, annotator_user, documents):
    _queue(project, documents[:1], [0.9])
    served = services.queue_lease_next(project=project, user=annotator_user)
    QueueItem.objects.filter(pk=served.item.pk).update(lease_expires_at=timezone.now() - timedelta(hours=1))
    services.annotation_submit(project=project, user=annotator_user, document_id=served.document.pk, labels=["joy"])
    annotation = Annotation.objects.get(document=served.document)
    assert annotation.strategy == "cold_start"
    assert not QueueItem.objects.filter(document=served.document).exists()


def test_an_expired_lease_renews_only_while_nobody_else_took_the_document(project, annotator_user, documents):
    other = make_user("second")
    services.member_add(project=project, username="second", role="annotator")
    _queue(project, documents[:2], [0.9, 0.5])
    served = services.queue_lease_next(project=project, user=annotator_user)
    expired = timezone.now() - timedelta(seconds=1)
    QueueItem.objects.filter(pk=served.item.pk).update(lease_expires_at=expired)
    renewed = services.lease_renew(project=project, user=annotator_user, document_id=served.document.pk)
    assert renewed is not None and renewed.leased_to == annotator_user and renewed.lease_expires_at > timezone.now()
    QueueItem.objects.filter(pk=served.item.pk).update(lease_expires_at=expired)
    assert services.queue_lease_next(project=project, user=other).document == served.document  # taken over
    assert services.lease_renew(project=project, user=annotator_user, document_id=served.document.pk) is None
    assert QueueItem.objects.get(pk=served.item.pk).leased_to == other  # the failed renewal changed nothing
    with pytest.raises(ProjectError, match="numeric id"):
        services.lease_renew(project=project, user=annotator_user, document_id="x")


def test_skipped_documents_are_not_served_again_to_that_annotator(project, annotator_user, documents):
    _queue(project, documents[:2], [0.9, 0.5])
    first = services.queue_lease_next(project=project, user=annotator_user)
    services.document_skip(project=project, user=annotator_user, document_id=first.document.pk)
    assert DocumentSkip.objects.filter(document=first.document, user=annotator_user).exists()
    assert services.queue_lease_next(project=project, user=annotator_user).document == documents[1]


def test_empty_queue_falls_back_to_a_random_unlabelled_document(project, annotator_user, documents):
    served = services.queue_lease_next(project=project, user=annotator_user)
    assert served.item.strategy == "random"
    assert served.document in documents
    assert Job.objects.filter(kind="score", status="PENDING").exists()


def test_spent_budget_stops_serving(project, annotator_user, documents):
    project.label_budget = 2
    project.save()
    for _ in range(2):
        served = services.queue_lease_next(project=project, user=annotator_user)
        services.annotation_submit(project=project, user=annotator_user, document_id=served.document.pk, labels=[])
    result = services.queue_lease_next(project=project, user=annotator_user)
    assert isinstance(result, services.NothingToServe)
    assert result.reason == "budget"


def test_leases_in_progress_count_against_the_budget(project, annotator_user, documents):
    project.label_budget = 1
    project.save()
    other = make_user("second")
    services.member_add(project=project, username="second", role="annotator")
    services.queue_lease_next(project=project, user=annotator_user)
    second = services.queue_lease_next(project=project, user=other)
    assert isinstance(second, services.NothingToServe)


def test_nothing_left_when_every_document_is_labelled(project, manager, annotator_user):
    services.documents_import(project=project, user=manager, records=records(1, labels=[["joy"]]))
    result = services.queue_lease_next(project=project, user=annotator_user)
    assert isinstance(result, services.NothingToServe)
    assert result.reason == "empty"


def test_a_document_taken_between_counting_and_picking_does_not_fail_next(project, annotator_user, documents):
    """Issue 16: `_queue_row` counted the candidates, then read one at a random offset; when another request took a
    document in between, the offset was past the end (IndexError: a 500 in 1 of 500 calls at 50 annotators)."""
    from django.utils import timezone

    candidates = queue._free_documents(project, annotator_user, timezone.now(), evaluation=False)
    stale_count = candidates.count() + 5  # five documents were taken since the count
    item = queue._queue_row(project, annotator_user, timezone.now(), candidates, stale_count, None, "random")
    assert item is not None and item.document_id in {doc.pk for doc in documents}
