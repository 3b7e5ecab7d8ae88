from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotator import selectors, services
from annotator.exceptions import ProjectError
from annotator.models import Annotation, Document, DocumentSkip, Job, Label, Membership, ModelVersion, QueueItem

from .conftest import make_user, records


# --- projects and labels -------------------------------------------------------------------------------------------
def test_creator_becomes_manager_and_labels_are_created(manager):
    project = services.project_create(user=manager, name="P", labels=["a", {"name": "b", "description": "bee"}])
    assert Membership.objects.get(project=project, user=manager).role == "manager"
    assert list(project.labels.values_list("name", "description")) == [("a", ""), ("b", "bee")]


def test_creating_a_project_needs_the_permission(annotator_user):
    with pytest.raises(ProjectError, match="may not create projects"):
        services.project_create(user=annotator_user, name="P", labels=["a"])


def test_bad_labels_are_all_reported_and_nothing_is_created(manager):
    with pytest.raises(ProjectError) as caught:
        services.project_create(user=manager, name="P", labels=["a", "a", "", "x|y", "ok"])
    assert len(caught.value.errors) == 3
    assert not Label.objects.exists()


def test_a_project_supports_50000_labels(manager):
    names = [f"label {i:05d}" for i in range(50_000)]
    project = services.project_create(user=manager, name="Big", labels=names)
    assert project.labels.count() == 50_000
    hits = selectors.label_search(project=project, query="LABEL 4999", limit=20)
    # The ten names starting with the query first, then names holding both words: "label 04999", "label 14999", ...
    assert [label.name for label in hits[:10]] == [f"label {i}" for i in range(49990, 50000)]
    assert [label.name for label in hits[10:]] == [f"label {d}4999" for d in range(5)]
    assert [label.name for label in selectors.label_search(project=project, query="04999")] == ["label 04999"]


def test_label_search_ignores_case_and_diacritics_and_ranks_prefix_first(manager):
    project = services.project_create(
        user=manager,
        name="GND",
        labels=["Künstliche Intelligenz", "Geschichte der künstlichen Kunst", "Kunst"],
    )
    names = [label.name for label in selectors.label_search(project=project, query="kunstliche int")]
    assert names == ["Künstliche Intelligenz"]
    names = [label.name for label in selectors.label_search(project=project, query="KUNST")]
    assert names == ["Kunst", "Künstliche Intelligenz", "Geschichte der künstlichen Kunst"]


def test_member_roles_change_but_the_last_manager_stays(project, manager, annotator_user):
    services.member_add(project=project, username="annotator", role="manager")
    assert Membership.objects.get(project=project, user=annotator_user).role == "manager"
    services.member_add(project=project, username="annotator", role="annotator")
    with pytest.raises(ProjectError, match="at least one manager"):
        services.member_add(project=project, username="manager", role="annotator")
    with pytest.raises(ProjectError, match="no user"):
        services.member_add(project=project, username="ghost", role="annotator")


# --- import --------------------------------------------------------------------------------------------------------
def test_import_is_all_or_nothing(project, manager):
    good = records(3)
    duplicate = records(1)  # same external id as the first good one
    duplicate[0].line = 4
    with pytest.raises(ProjectError) as caught:
        services.documents_import(project=project, user=manager, records=good + duplicate)
    assert "nothing was imported" in caught.value.message
    assert caught.value.errors == ["line 4: id 'doc-0' already appears on line 1"]
    assert not Document.objects.filter(project=project).exists()


def test_import_with_labels_records_seed_annotations_and_queues_encoding(project, manager):
    result = services.documents_import(
        project=project, user=manager, records=records(3, labels=[["joy"], [], ["anger", "fear"]])
    )
    assert (result.documents, result.annotations) == (3, 3)
    annotations = Annotation.objects.filter(document__project=project).order_by("document__external_id")
    assert [sorted(a.labels.values_list("name", flat=True)) for a in annotations] == [
        ["joy"],
        [],
        ["anger", "fear"],
    ]
    assert {a.source for a in annotations} == {"import"}
    assert Job.objects.filter(project=project, kind="encode", status="PENDING").count() == 1


def test_import_refuses_unknown_labels_unless_asked_to_create_them(project, manager):
    with pytest.raises(ProjectError) as caught:
        services.documents_import(project=project, user=manager, records=records(1, labels=[["love"]]))
    assert caught.value.errors == ["line 1: unknown label(s) 'love'"]
    services.documents_import(project=project, user=manager, records=records(1, labels=[["love"]]), create_labels=True)
    assert project.labels.filter(name="love").exists()


def test_existing_ids_are_refused(project, manager, documents):
    with pytest.raises(ProjectError, match="1 problem"):
        services.documents_import(project=project, user=manager, records=records(1))


# --- annotations -----------------------------------------------------------------------------------------------------
def test_resubmitting_replaces_the_answer(project, annotator_user, documents):
    doc = documents[0]
    services.annotation_submit(project=project, user=annotator_user, document_id=doc.pk, labels=["joy", "fear"])
    services.annotation_submit(
        project=project, user=annotator_user, document_id=doc.pk, labels=["anger"], seconds_spent=3.5
    )
    annotation = Annotation.objects.get(document=doc, annotator=annotator_user)
    assert list(annotation.labels.values_list("name", flat=True)) == ["anger"]
    assert annotation.seconds_spent == 3.5


def test_empty_label_set_is_a_valid_answer(project, annotator_user, documents):
    annotation = services.annotation_submit(
        project=project, user=annotator_user, document_id=documents[0].pk, labels=[]
    )
    assert annotation.labels.count() == 0


def test_unknown_labels_change_nothing(project, annotator_user, documents):
    with pytest.raises(ProjectError, match=r"unknown label.*'love'"):
        services.annotation_submit(
            project=project, user=annotator_user, document_id=documents[0].pk, labels=["joy", "love"]
        )
    assert not Annotation.objects.exists()


def test_document_of_another_project_is_refused(project, manager, annotator_user, documents):
    other = services.project_create(user=manager, name="Other", labels=["joy"])
    services.documents_import(project=other, user=manager, records=records(1, start=100))
    foreign = other.documents.get()
    with pytest.raises(ProjectError, match=f"document {foreign.pk} is not in project {project.pk}"):
        services.annotation_submit(project=project, user=annotator_user, document_id=foreign.pk, labels=["joy"])
    assert not Annotation.objects.exists()


def test_enough_new_annotations_queue_exactly_one_training_run(project, annotator_user, documents):
    assert project.retrain_every == 5
    for doc in documents[:4]:
        services.annotation_submit(project=project, user=annotator_user, document_id=doc.pk, labels=["joy"])
    assert not Job.objects.filter(kind="train").exists()
    for doc in documents[4:12]:  # crossing the threshold, then more while the run is queued
        services.annotation_submit(project=project, user=annotator_user, document_id=doc.pk, labels=["joy"])
    assert Job.objects.filter(kind="train").count() == 1


# --- queue and leases ------------------------------------------------------------------------------------------------
def _queue(project, documents, scores):
    for doc, score in zip(documents, scores, strict=False):
        QueueItem.objects.create(project=project, document=doc, strategy="cold_start", score=score)


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


def test_label_frequency_follows_imports_and_changed_answers(project, manager, annotator_user):
    services.documents_import(project=project, user=manager, records=records(3, labels=[["joy"], ["joy", "fear"], []]))
    counts = dict(Label.objects.filter(project=project).values_list("name", "frequency"))
    assert counts == {"joy": 2, "fear": 1, "anger": 0, "sadness": 0, "surprise": 0}
    document = Document.objects.get(project=project, external_id="doc-0")
    services.annotation_submit(project=project, user=annotator_user, document_id=document.pk, labels=["anger"])
    services.annotation_submit(project=project, user=annotator_user, document_id=document.pk, labels=["sadness"])
    counts = dict(Label.objects.filter(project=project).values_list("name", "frequency"))
    assert counts == {"joy": 2, "fear": 1, "anger": 0, "sadness": 1, "surprise": 0}


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


def test_changing_the_strategy_rescores_the_queue_only_when_a_model_serves(project, manager):
    Job.objects.all().delete()
    services.project_update(project=project, strategy="adaptive")
    assert not Job.objects.filter(kind="score").exists()  # no model yet: the cold-start queue stays
    ModelVersion.objects.create(
        project=project,
        number=1,
        is_serving=True,
        artifact_path="x",
        n_annotations=5,
        n_labels=5,
        data_cutoff=timezone.now(),
    )

    services.project_update(project=project, strategy="margin+ranked")
    services.project_update(project=project, strategy="margin+ranked")  # unchanged: nothing more to do

    assert Job.objects.filter(project=project, kind="score").count() == 1
    with pytest.raises(ProjectError, match="strategy must be one of default, random"):
        services.project_update(project=project, strategy="modal_avg_score")
    project.refresh_from_db()
    assert project.strategy == "margin+ranked"
