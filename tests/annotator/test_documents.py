"""Tests of annotator.services.documents."""

from __future__ import annotations

import pytest

from annotator import services
from annotator.exceptions import ProjectError
from annotator.models import Annotation, Document, Job

from .conftest import records


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
