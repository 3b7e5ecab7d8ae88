"""Tests of annotator.services.annotations."""

from __future__ import annotations

import pytest

from annotator import services
from annotator.exceptions import ProjectError
from annotator.models import Annotation, Document, Job, Label

from .conftest import records


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
