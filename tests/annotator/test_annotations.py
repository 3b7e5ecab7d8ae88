"""Tests of annotator.services.annotations."""

from __future__ import annotations

import pytest

from annotator import services
from annotator.exceptions import ProjectError
from annotator.models import Annotation, Document, Job, Label, QueueItem

from .conftest import client_for, make_user, records


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


def test_label_frequency_follows_imports_and_changed_answers(project, manager, annotator_user):
    services.documents_import(project=project, user=manager, records=records(3, labels=[["joy"], ["joy", "fear"], []]))
    counts = dict(Label.objects.filter(project=project).values_list("name", "frequency"))
    assert counts == {"joy": 2, "fear": 1, "anger": 0, "sadness": 0, "surprise": 0}
    document = Document.objects.get(project=project, external_id="doc-0")
    services.annotation_submit(project=project, user=annotator_user, document_id=document.pk, labels=["anger"])
    services.annotation_submit(project=project, user=annotator_user, document_id=document.pk, labels=["sadness"])
    counts = dict(Label.objects.filter(project=project).values_list("name", "frequency"))
    assert counts == {"joy": 2, "fear": 1, "anger": 0, "sadness": 1, "surprise": 0}


def test_a_document_someone_else_holds_cannot_be_answered(project, annotator_user, documents):
    """Issue 16: an annotator could answer a document leased to someone else (whose queue row was deleted)."""
    other = make_user("second")
    services.member_add(project=project, username="second", role="annotator")
    QueueItem.objects.create(project=project, document=documents[0], strategy="cold_start", score=1.0)
    served = services.queue_lease_next(project=project, user=other)
    assert served.document == documents[0]
    response = client_for(annotator_user).post(
        f"/api/v1/projects/{project.pk}/annotations/", {"document": documents[0].pk, "labels": ["joy"]}, format="json"
    )
    assert response.status_code == 409 and "someone else" in response.json()["detail"]
    assert QueueItem.objects.get(document=documents[0]).leased_to == other  # the holder keeps the document
    services.annotation_submit(project=project, user=other, document_id=documents[0].pk, labels=["anger"])
    assert list(Annotation.objects.filter(document=documents[0]).values_list("annotator__username", flat=True)) == [
        "second"
    ]


def test_an_evaluation_document_is_answered_only_once_served(project, manager, annotator_user, documents):
    """Issue 16: an annotator answered an evaluation-set document never served to them; the set is labelled blind."""
    services.project_update(project=project, eval_size=3)
    evaluation = list(Document.objects.filter(project=project, is_evaluation=True))
    assert len(evaluation) == 3
    with pytest.raises(ProjectError, match="evaluation set, which is labelled blind") as refused:
        services.annotation_submit(project=project, user=annotator_user, document_id=evaluation[0].pk, labels=[])
    assert refused.value.status == 409 and not Annotation.objects.exists()
    services.project_update(project=project, eval_share=1)  # every document served is an evaluation one
    served = services.queue_lease_next(project=project, user=annotator_user)
    assert served.document.is_evaluation
    services.annotation_submit(project=project, user=annotator_user, document_id=served.document.pk, labels=["joy"])
    services.annotation_submit(project=project, user=annotator_user, document_id=served.document.pk, labels=[])
    assert Annotation.objects.get(document=served.document).labels.count() == 0  # revised: allowed
