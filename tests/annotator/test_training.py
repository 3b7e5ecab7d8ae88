"""The worker-side services (encode, train, score, reconcile) on a tiny encoder built offline.

The Celery plumbing around them is exercised with a real worker in tests/integration.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from annotator import ml, services
from annotator.exceptions import ProjectError
from annotator.models import Job, ModelVersion, QueueItem
from learner.strategies import DEFAULT_STRATEGY

from .conftest import LABELS
from .loop import encode_all, label, label_some, train

pytestmark = pytest.mark.usefixtures("tiny_encoder")


def test_training_publishes_a_serving_version_and_scoring_serves_its_suggestions(
    project, annotator_user, documents, settings
):
    encode_all(project)
    label_some(project, annotator_user, documents)
    job = Job.objects.get(project=project, kind="train")  # queued by the 5th annotation
    services.training_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED", job.error
    version = ModelVersion.objects.get(project=project)
    assert (version.number, version.is_serving, version.n_annotations, version.n_labels) == (1, True, 12, 5)
    assert job.model_version == version
    assert (Path(settings.ARTIFACTS_DIR) / version.artifact_path / "fast_tier.json").exists()
    # 12 labelled documents are too few to hold some out: no metrics yet, the default threshold.
    assert version.metrics == {} and version.config["threshold"] == 0.5

    score_job = Job.objects.get(project=project, kind="score", status="PENDING")
    services.scoring_run(job_id=score_job.pk)
    items = QueueItem.objects.filter(project=project)
    assert items.count() == 18  # every unlabelled document (queue_size is larger)
    assert {item.model_version_id for item in items} == {version.pk}
    assert {item.strategy for item in items} == {DEFAULT_STRATEGY}  # the project's "default"
    assert all(len(item.suggestions) == 5 for item in items)
    served = services.queue_lease_next(project=project, user=annotator_user)
    assert served.item.model_version == version
    assert served.item.score == max(item.score for item in items)
    assert [s["label"] for s in served.suggestions] != [] and {s["label"] for s in served.suggestions} == set(LABELS)
    scores = [s["score"] for s in served.suggestions]
    assert scores == sorted(scores, reverse=True) and all(0 <= p <= 1 for p in scores)


def test_a_duplicate_delivery_produces_one_version(project, annotator_user, documents):
    label_some(project, annotator_user, documents)
    job = Job.objects.get(project=project, kind="train")
    services.training_run(job_id=job.pk)
    services.training_run(job_id=job.pk)
    assert ModelVersion.objects.filter(project=project).count() == 1


def test_training_without_enough_data_fails_with_a_reason(project, manager, annotator_user, documents):
    services.annotation_submit(project=project, user=annotator_user, document_id=documents[0].pk, labels=["joy"])
    job = services.training_request(project=project, user=manager)
    services.training_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "FAILED"
    assert "need at least 2 labelled documents" in job.error
    assert not ModelVersion.objects.exists()


def test_new_annotations_during_training_queue_one_follow_up_run(project, annotator_user, documents, monkeypatch):
    label_some(project, annotator_user, documents, n=5)
    job = Job.objects.get(kind="train")
    real_train = ml.train

    def train_while_experts_keep_labelling(**kwargs):
        model = real_train(**kwargs)
        label_some(project, annotator_user, documents[5:], n=7)  # arrive after the snapshot
        return model

    monkeypatch.setattr(ml, "train", train_while_experts_keep_labelling)
    services.training_run(job_id=job.pk)
    assert list(Job.objects.filter(kind="train").values_list("status", flat=True).order_by("id")) == [
        "SUCCEEDED",
        "PENDING",
    ]


def test_a_label_added_after_the_first_model_joins_the_next_version_with_its_prior(project, annotator_user, documents):
    encode_all(project)
    label_some(project, annotator_user, documents)
    services.training_run(job_id=Job.objects.get(project=project, kind="train").pk)
    Job.objects.all().delete()

    services.labels_add(project=project, labels=["gratitude"])
    services.encode_run(job_id=Job.objects.get(project=project, kind="encode", status="PENDING").pk)

    train = Job.objects.get(project=project, kind="train", status="PENDING")  # queued by the new label
    assert "labels added" in train.reason
    services.training_run(job_id=train.pk)
    v2 = ModelVersion.objects.get(project=project, is_serving=True)
    assert v2.number == 2 and v2.n_labels == len(LABELS) + 1
    model = ml.load_model(str(Path(settings.ARTIFACTS_DIR) / v2.artifact_path))
    assert "gratitude" in model.labels
    # With the prior switched off a new label waits for the usual retrain schedule.
    Job.objects.all().delete()
    services.labels_add(project=project, labels=["relief"])
    project.label_prior = False
    project.save()
    services.encode_run(job_id=Job.objects.get(project=project, kind="encode", status="PENDING").pk)
    assert not Job.objects.filter(project=project, kind="train").exists()


def test_trained_versions_blend_the_prior_and_record_it_and_their_encoder(project, annotator_user, documents):
    encode_all(project)
    label_some(project, annotator_user, documents)
    services.training_run(job_id=Job.objects.get(project=project, kind="train").pk)
    version = ModelVersion.objects.get(project=project)
    assert version.config["encoder_fingerprint"] == ml.fingerprint()
    prior = version.config["label_prior"]
    assert prior["labels_with_vectors"] == len(LABELS) and prior["scale"] > 0
    model = ml.load_model(str(Path(settings.ARTIFACTS_DIR) / version.artifact_path))
    assert model.prior is not None and model.uses_embeddings


# --- full or incremental -------------------------------------------------------------------------------------------
def test_the_automatic_policy_updates_incrementally_until_the_labelled_set_grew_enough(
    project, manager, annotator_user, documents
):
    encode_all(project)
    label(project, annotator_user, documents, 0, 10)
    v1 = train(project, manager)
    assert v1.config["mode"] == "full" and v1.config["mode_reason"] == "no serving model to update"

    label(project, annotator_user, documents, 10, 3)  # +30 %: below full_retrain_growth (50 %)
    v2 = train(project, manager)
    assert v2.config["mode"] == "incremental"
    assert v2.config["base_version"] == 1 and v2.config["new_documents"] == 3 and v2.config["replayed_documents"] == 10
    assert v2.n_annotations == 13 and v2.is_serving
    assert ml.load_model(str(Path(settings.ARTIFACTS_DIR) / v2.artifact_path)).labels  # a complete model folder

    label(project, annotator_user, documents, 13, 3)  # 16 documents: +60 % since the last full retrain
    v3 = train(project, manager)
    assert v3.config["mode"] == "full" and "grew 60%" in v3.config["mode_reason"]

    label(project, annotator_user, documents, 16, 1)
    assert train(project, manager, mode="full").config["mode"] == "full"  # asked for
    label(project, annotator_user, documents, 17, 1)
    services.project_update(project=project, retrain_mode="incremental", replay_size=5)
    v5 = train(project, manager)
    assert v5.config["mode"] == "incremental" and v5.config["replayed_documents"] == 5


def test_an_incremental_update_with_nothing_new_fails_with_a_reason(project, manager, annotator_user, documents):
    encode_all(project)
    label(project, annotator_user, documents, 0, 8)
    train(project, manager)
    job = services.training_request(project=project, user=manager, mode="incremental")
    services.training_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "FAILED" and "no new annotations since the serving model" in job.error
    with pytest.raises(ProjectError, match="mode must be one of"):
        services.training_request(project=project, user=manager, mode="sometimes")


def test_a_full_request_upgrades_a_queued_automatic_run(project, manager, annotator_user, documents):
    label(project, annotator_user, documents, 0, 6)
    queued = Job.objects.get(project=project, kind="train", status="PENDING")
    assert queued.mode == "auto"
    assert services.training_request(project=project, user=manager, mode="full").pk == queued.pk
    queued.refresh_from_db()
    assert queued.mode == "full"
