"""Database constraints back every invariant the code relies on: each must reject a violating row."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotator.models import Annotation, Document, Job, Label, ModelVersion, QueueItem


def _violates(create) -> bool:
    try:
        with transaction.atomic():
            create()
    except IntegrityError:
        return True
    return False


def test_label_names_are_unique_within_a_project(project):
    assert _violates(lambda: Label.objects.create(project=project, name="joy", search_key="joy"))


def test_document_external_ids_are_unique_and_texts_not_empty(project):
    Document.objects.create(project=project, external_id="a", text="t")
    assert _violates(lambda: Document.objects.create(project=project, external_id="a", text="u"))
    assert _violates(lambda: Document.objects.create(project=project, external_id="b", text=""))


def test_one_annotation_per_document_and_annotator(project, annotator_user):
    document = Document.objects.create(project=project, external_id="a", text="t")
    Annotation.objects.create(document=document, project=document.project, annotator=annotator_user)
    assert _violates(
        lambda: Annotation.objects.create(document=document, project=document.project, annotator=annotator_user)
    )


def test_one_serving_model_version_per_project(project):
    def version(number: int, serving: bool) -> ModelVersion:
        return ModelVersion.objects.create(
            project=project,
            number=number,
            is_serving=serving,
            artifact_path=f"p/{number}",
            n_annotations=1,
            n_labels=5,
            data_cutoff=timezone.now(),
        )

    version(1, True)
    assert _violates(lambda: version(2, True))
    assert _violates(lambda: version(1, False))  # numbers are unique too
    version(2, False)


def test_at_most_one_active_job_per_kind_and_project(project):
    Job.objects.create(project=project, kind=Job.Kind.TRAIN)
    assert _violates(lambda: Job.objects.create(project=project, kind=Job.Kind.TRAIN, status=Job.Status.RUNNING))
    Job.objects.create(project=project, kind=Job.Kind.SCORE)  # another kind is fine
    Job.objects.create(project=project, kind=Job.Kind.TRAIN, status=Job.Status.FAILED)  # finished ones too


def test_a_lease_has_both_holder_and_expiry(project, annotator_user):
    document = Document.objects.create(project=project, external_id="a", text="t")
    assert _violates(
        lambda: QueueItem.objects.create(
            project=project, document=document, strategy="random", score=0, leased_to=annotator_user
        )
    )


@pytest.mark.parametrize("field,value", [("decision_threshold", 1.5), ("retrain_every", 0), ("lease_seconds", 1)])
def test_project_settings_are_range_checked_by_the_database(project, field, value):
    setattr(project, field, value)
    assert _violates(project.save)
