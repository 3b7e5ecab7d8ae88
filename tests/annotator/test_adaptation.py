"""Encoder adaptation in the platform: the job, the re-embedded project, the retrain that reads the new encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from annotator import ml, services
from annotator.exceptions import ProjectError
from annotator.models import EncoderVersion, Job, ModelVersion, QueueItem

from .conftest import client_for

pytestmark = pytest.mark.usefixtures("tiny_encoder")

GOLD = [["joy"], ["anger"], ["sadness", "fear"], ["surprise"], ["joy", "surprise"], ["anger", "fear"]]


def _labelled(project, annotator_user, documents, n: int) -> None:
    job = Job.objects.get(project=project, kind="encode", status="PENDING")  # queued by the import
    services.encode_run(job_id=job.pk)
    for i, doc in enumerate(documents[:n]):
        services.annotation_submit(project=project, user=annotator_user, document_id=doc.pk, labels=GOLD[i % 6])
    Job.objects.filter(project=project, status="PENDING").delete()


def test_adaptation_is_refused_below_the_minimum_and_queues_nothing(project, manager, annotator_user, documents):
    _labelled(project, annotator_user, documents, 5)
    with pytest.raises(ProjectError, match="at least 20 labelled documents"):
        services.adaptation_request(project=project, user=manager)
    assert not Job.objects.filter(kind="adapt").exists()


def test_an_adaptation_run_re_embeds_the_project_and_the_next_model_reads_the_new_encoder(
    project, manager, annotator_user, documents, settings
):
    settings.ALABEL_ADAPT_MIN_DOCUMENTS = 12
    _labelled(project, annotator_user, documents, 12)
    services.training_run(job_id=services.training_request(project=project, user=manager).pk)
    v1 = ModelVersion.objects.get(project=project)
    assert v1.config["encoder_path"] is None and v1.config["encoder_version"] is None
    Job.objects.filter(project=project, status="PENDING").delete()

    job = services.adaptation_request(project=project, user=manager)
    assert services.adaptation_request(project=project, user=manager) == job  # coalesced
    services.adaptation_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED", job.error

    encoder = EncoderVersion.objects.get(project=project)
    assert encoder.number == 1 and encoder.n_documents == 12 and encoder.fingerprint != ml.fingerprint()
    assert (Path(settings.ARTIFACTS_DIR) / encoder.artifact_path / "adaptation.json").is_file()
    all_ids = [doc.pk for doc in documents]
    new_store = ml.embedding_store(project.pk, encoder.artifact_path)
    assert new_store.missing(all_ids) == []  # every document embedded again, the old vectors kept
    assert ml.embedding_store(project.pk).missing(all_ids) == []
    changed = np.abs(new_store.get(all_ids) - ml.embedding_store(project.pk).get(all_ids)).max()
    assert changed > 1e-4
    assert ml.label_store(project.pk, encoder.artifact_path).dim is not None

    train = Job.objects.get(project=project, kind="train", status="PENDING")  # the retrain that follows
    assert train.mode == "full"
    services.training_run(job_id=train.pk)
    v2 = ModelVersion.objects.get(project=project, is_serving=True)
    assert v2.number == 2 and v2.config["encoder_version"] == 1
    assert v2.config["encoder_path"] == encoder.artifact_path
    assert v2.config["encoder_fingerprint"] == encoder.fingerprint
    assert v2.config["mode"] == "full"
    model = ml.load_model(str(Path(settings.ARTIFACTS_DIR) / v2.artifact_path))
    assert ml.model_encoder(model) == encoder.artifact_path  # saved with the model

    score = Job.objects.get(project=project, kind="score", status="PENDING")
    services.scoring_run(job_id=score.pk)
    score.refresh_from_db()
    assert score.status == "SUCCEEDED", score.error
    assert QueueItem.objects.filter(project=project, model_version=v2).exists()

    # A rollback to v1 scores with the base encoder v1 was trained on.
    services.version_promote(project=project, number=1, user=manager)
    rescore = Job.objects.get(project=project, kind="score", status="PENDING")
    services.scoring_run(job_id=rescore.pk)
    rescore.refresh_from_db()
    assert rescore.status == "SUCCEEDED", rescore.error
    assert QueueItem.objects.filter(project=project, model_version=v1).exists()


def test_the_api_and_the_manager_page_queue_an_adaptation(
    project, manager, annotator_user, documents, settings, client
):
    settings.ALABEL_ADAPT_MIN_DOCUMENTS = 6
    _labelled(project, annotator_user, documents, 6)
    response = client_for(annotator_user).post(f"/api/v1/projects/{project.pk}/adapt/")
    assert response.status_code == 403
    response = client_for(manager).post(f"/api/v1/projects/{project.pk}/adapt/")
    assert response.status_code == 202 and response.json()["kind"] == "adapt"
    Job.objects.filter(kind="adapt").delete()
    settings.ALABEL_ADAPT_MIN_DOCUMENTS = 50
    response = client_for(manager).post(f"/api/v1/projects/{project.pk}/adapt/")
    assert response.status_code == 400 and "at least 50 labelled documents" in response.json()["detail"]
    client.force_login(manager)
    settings.ALABEL_ADAPT_MIN_DOCUMENTS = 6
    page = client.post(f"/projects/{project.pk}/", {"action": "adapt"}, follow=True)
    assert "Encoder adaptation queued" in page.content.decode()
    assert Job.objects.filter(project=project, kind="adapt", status="PENDING").count() == 1
