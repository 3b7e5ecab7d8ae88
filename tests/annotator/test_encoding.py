"""Tests of annotator.services.encoding."""

from __future__ import annotations

import pytest

from annotator import ml, services
from annotator.models import Job

from .loop import encode_all, run

pytestmark = pytest.mark.usefixtures("tiny_encoder")


def test_encoding_caches_every_document_and_queues_scoring(project, documents):
    Job.objects.all().delete()
    job = run("encode", project, services.encode_run)
    assert job.status == "SUCCEEDED", job.error
    assert job.message == "encoded 30 documents and 5 label names"
    store = ml.embedding_store(project.pk)
    assert store.missing([doc.pk for doc in documents]) == []
    assert Job.objects.filter(project=project, kind="score", status="PENDING").exists()


def test_a_label_added_later_is_embedded_and_suggested_at_once(project, manager, annotator_user, documents, settings):
    settings.ALABEL_COLD_START_SIZE = 6
    encode_all(project)
    Job.objects.all().delete()
    services.labels_add(project=project, labels=["gratitude"])
    encode = Job.objects.get(project=project, kind="encode", status="PENDING")  # queued by the new label
    services.encode_run(job_id=encode.pk)
    encode.refresh_from_db()
    assert encode.message == "encoded 0 documents and 1 label names"
    services.scoring_run(job_id=Job.objects.get(project=project, kind="score", status="PENDING").pk)
    served = services.queue_lease_next(project=project, user=annotator_user)
    assert "gratitude" in [s["label"] for s in served.suggestions]
