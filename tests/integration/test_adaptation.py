"""Encoder adaptation end to end with real parts: API -> ADAPT job -> real Celery worker on Redis -> MiniLM fine-tuned
on the labelled documents -> every document re-embedded -> the full retrain it queues -> the new model's queue."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from annotator import ml, services
from annotator.models import Document, EncoderVersion, Job, ModelVersion, Project, QueueItem
from annotator.services.demo import demo_labels, demo_records

from .conftest import purge_queues, service_env, start_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def adopting_worker(transactional_db, broker_url, settings, tmp_path):
    """A worker that adopts the adapted encoder whatever its held-out check says (ALABEL_ADAPT_MIN_GAIN -1): 10
    held-out documents decide nothing reliable, and this test follows an adopted encoder through the loop."""
    purge_queues()
    service = start_worker(service_env(broker_url, settings, ALABEL_ADAPT_MIN_GAIN="-1"), tmp_path / "worker.log")
    try:
        yield service
    finally:
        service.stop()


def test_a_manager_adapts_the_encoder_and_the_next_model_serves_from_it(adopting_worker, settings):
    settings.ALABEL_ADAPT_MIN_DOCUMENTS = 20
    manager = get_user_model().objects.create_user(username="manager", password="correct horse battery")
    manager.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    manager = get_user_model().objects.get(pk=manager.pk)
    project = services.project_create(
        user=manager, name="Adapt", labels=demo_labels(), retrain_every=1000, eval_size=0, queue_size=20
    )
    sample = demo_records(80, with_labels=True)
    services.documents_import(project=project, user=manager, records=demo_records(80))
    wait_for(
        lambda: Job.objects.filter(project=project, kind="score", status="SUCCEEDED").exists(),
        timeout=240,
        what="encoding and the cold-start queue",
    )
    documents = {doc.external_id: doc.pk for doc in Document.objects.filter(project=project)}
    for record in sample[:24]:
        services.annotation_submit(
            project=project, user=manager, document_id=documents[record.external_id], labels=record.labels or []
        )

    client = APIClient()
    client.force_login(manager)
    response = client.post(f"/api/v1/projects/{project.pk}/adapt/")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    def finished(kind: str, **extra) -> Job | None:
        job = Job.objects.filter(project=project, kind=kind, **extra).order_by("-id").first()
        if job is not None and job.status == "FAILED":
            pytest.fail(f"{kind} job failed: {job.error}")
        return job if job is not None and job.status == "SUCCEEDED" else None

    wait_for(lambda: finished("adapt", pk=job_id), timeout=600, what="the adaptation run")
    encoder = EncoderVersion.objects.get(project=project)
    assert encoder.number == 1 and encoder.n_documents == 14  # 10 of the 24 held out to check it on
    last = Project.objects.get(pk=project.pk).adapt_last
    assert last["adopted"] and last["held_out"] == 10 and last["check"]["documents"] == 10
    assert ml.embedding_store(project.pk, encoder.artifact_path).missing(list(documents.values())) == []

    version = wait_for(
        lambda: ModelVersion.objects.filter(project=project, config__encoder_version=1).first(),
        timeout=300,
        what="the full retrain on the adapted encoder",
    )
    assert version.is_serving and version.config["mode"] == "full"
    assert version.config["encoder_fingerprint"] == encoder.fingerprint
    assert version.config["tick_curve"]["documents"] == 10  # pre-tick evidence: what the encoder never saw
    wait_for(
        lambda: QueueItem.objects.filter(project=project, model_version=version).exists(),
        timeout=240,
        what="the new model's queue",
    )
    assert Project.objects.get(pk=project.pk).encoder_versions.count() == 1
