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
    page = client.post(f"/projects/{project.pk}/manage/adapt/", follow=True)
    assert "Encoder adaptation queued" in page.content.decode()
    assert Job.objects.filter(project=project, kind="adapt", status="PENDING").count() == 1


# --- the held-out check and the automatic decision ------------------------------------------------------------------
def test_an_adaptation_is_checked_on_held_out_documents_and_adopted_only_when_it_pays(
    project, manager, annotator_user, documents, settings
):
    settings.ALABEL_ADAPT_MIN_GAIN = -1.0  # adopt whatever the check says: what an adopted encoder leaves behind
    _labelled(project, annotator_user, documents, 25)
    job = services.adaptation_request(project=project, user=manager)
    services.adaptation_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED", job.error
    project.refresh_from_db()
    last = project.adapt_last
    assert (last["documents"], last["held_out"], last["adopted"], last["encoder"]) == (25, 10, True, 1)
    check = last["check"]
    assert check["documents"] == 10 and last["gain"] == check["gain"]
    assert check["gain"] == pytest.approx(check["adapted"]["micro_f1"] - check["base"]["micro_f1"], abs=1e-4)
    assert "micro-F1 on 10 held-out documents" in job.message
    encoder = EncoderVersion.objects.get(project=project)
    adapted_on = set(encoder.stats["adapted_document_ids"])
    assert encoder.n_documents == 15 and len(adapted_on) == 15  # 10 of the 25 held out of the adaptation
    assert adapted_on < {doc.pk for doc in documents[:25]}

    # The retrain on the adapted encoder takes its pre-tick evidence from the 10 documents it was not adapted on.
    train = Job.objects.get(project=project, kind="train", status="PENDING")
    services.training_run(job_id=train.pk)
    version = ModelVersion.objects.get(project=project, is_serving=True)
    assert version.config["encoder_version"] == 1
    assert version.config["tick_curve"]["documents"] == 10

    # Not adopted: the project keeps its encoder, the adapted folder and its embeddings are gone, nothing retrains.
    settings.ALABEL_ADAPT_MIN_GAIN = 1.0  # no adaptation can gain more than all of micro-F1
    Job.objects.filter(project=project, status="PENDING").delete()
    job = services.adaptation_request(project=project, user=manager)
    services.adaptation_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED", job.error
    assert "not adopted" in job.message
    project.refresh_from_db()
    assert project.adapt_last["adopted"] is False and "encoder" not in project.adapt_last
    assert EncoderVersion.objects.filter(project=project).count() == 1
    encoders = Path(settings.ARTIFACTS_DIR) / "projects" / str(project.pk) / "encoders"
    assert [folder.name for folder in encoders.iterdir()] == [Path(encoder.artifact_path).name]
    stores = {folder.name for folder in (ml.project_dir(project.pk) / "embeddings").iterdir()}
    assert stores == {ml.fingerprint(), encoder.fingerprint}
    assert not Job.objects.filter(project=project, kind="train", status="PENDING").exists()


@pytest.mark.parametrize(
    "n,last,due",
    [
        (99, {}, None),
        (100, {}, "auto: 100 labelled documents"),
        (199, {"documents": 100}, None),
        (200, {"documents": 100}, "auto: 200 labelled documents, twice the 100 of the last adaptation"),
        (150, {"documents": 30}, "auto: 150 labelled documents, twice the 30 of the last adaptation"),
    ],
)
def test_an_automatic_adaptation_is_due_first_at_100_documents_then_when_they_doubled(n, last, due):
    assert services.adaptation_due(n_documents=n, last=last) == due


def test_without_cuda_automatic_adaptation_stops_at_500_documents():
    assert services.adaptation_due(n_documents=400, last={"documents": 200}, cuda=False) is not None
    assert services.adaptation_due(n_documents=800, last={"documents": 400}, cuda=False) is None
    assert services.adaptation_due(n_documents=800, last={"documents": 400}, cuda=True) is not None


def test_a_training_run_queues_the_automatic_adaptation_unless_switched_off_or_the_last_one_failed(
    project, manager, annotator_user, documents, settings
):
    settings.ALABEL_ADAPT_AUTO_DOCUMENTS = settings.ALABEL_ADAPT_MIN_DOCUMENTS = 12
    _labelled(project, annotator_user, documents, 12)
    services.training_run(job_id=services.training_request(project=project, user=manager).pk)
    adapt = Job.objects.get(project=project, kind="adapt", status="PENDING")
    assert adapt.reason == "auto: 12 labelled documents"

    adapt.status = "FAILED"
    adapt.save()
    services.training_run(job_id=services.training_request(project=project, user=manager).pk)
    assert not Job.objects.filter(project=project, kind="adapt", status="PENDING").exists()  # a manager retries it

    Job.objects.filter(project=project, kind="adapt").delete()
    response = client_for(manager).patch(f"/api/v1/projects/{project.pk}/", {"adapt_auto": False}, format="json")
    assert response.status_code == 200 and response.json()["adapt_auto"] is False
    services.training_run(job_id=services.training_request(project=project, user=manager).pk)
    assert not Job.objects.filter(project=project, kind="adapt").exists()
    bad = client_for(manager).patch(f"/api/v1/projects/{project.pk}/", {"adapt_auto": "sometimes"}, format="json")
    assert bad.status_code == 400 and "adapt_auto" in bad.content.decode()


def test_the_manager_page_says_what_the_last_adaptation_measured_and_when_the_next_one_runs(
    project, manager, client, settings
):
    settings.ALABEL_DEVICE = "cpu"  # the page says what a worker without CUDA does
    client.force_login(manager)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "Next automatic adaptation at 100 labelled documents." in page
    project.adapt_last = {
        "documents": 212,
        "held_out": 42,
        "gain": -0.01,
        "check": {"documents": 42, "base": {"micro_f1": 0.41}, "adapted": {"micro_f1": 0.4}, "gain": -0.01},
        "adopted": False,
    }
    project.save()
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert (
        "Last encoder adaptation at 212 labelled documents: micro-F1 on 42 held-out documents 0.400 with the adapted "
        "encoder against 0.410 with the one in use, not adopted (the project keeps its encoder). Next automatic "
        "adaptation at 424 labelled documents."
    ) in page
    project.adapt_last = {**project.adapt_last, "documents": 300}
    project.save()
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "Without a GPU, automatic adaptation stops at 500 labelled documents: adapt by hand." in page
