"""Projects whose model_tier is "full": every training run builds a FullTier (the encoder fine-tuned with its head)
that the rest of the platform serves like a fast-tier model. A tiny encoder built offline, one epoch of 32 tokens,
GoEmotions comments from the demo sample (in the repository)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.test import Client

from annotator import ml, services
from annotator.exceptions import ProjectError
from annotator.models import Job, ModelVersion, Project, QueueItem
from annotator.services.demo import demo_records
from annotator.services.evaluation import evaluate_model
from learner.fast import FastTier
from learner.full import FullTier

from .loop import train

pytestmark = pytest.mark.usefixtures("tiny_encoder")

TINY = {"epochs": 1, "max_length": 32, "batch_size": 8}  # ALABEL_FULL_TIER of these tests
N_DOCUMENTS = 40


@pytest.fixture(autouse=True)
def tiny_full_tier(settings):
    settings.ALABEL_FULL_TIER = dict(TINY)


@pytest.fixture
def goemotions(manager, annotator_user):
    """A full-tier project on 40 GoEmotions comments, its labels those they use; no evaluation set (eval_size 0)."""
    sample = demo_records(N_DOCUMENTS, with_labels=True)
    labels = sorted({name for record in sample for name in record.labels or []})
    project = services.project_create(
        user=manager, name="GoEmotions", labels=labels, retrain_every=1000, eval_size=0, model_tier="full"
    )
    services.member_add(project=project, username=annotator_user.username, role="annotator")
    services.documents_import(project=project, user=manager, records=demo_records(N_DOCUMENTS))  # unlabelled
    services.encode_run(job_id=Job.objects.get(project=project, kind="encode", status="PENDING").pk)
    Job.objects.filter(project=project, kind="score", status="PENDING").delete()
    gold = {record.external_id: record.labels for record in sample}
    return project, [(doc, gold[doc.external_id]) for doc in project.documents.order_by("id")]


def answer(project, user, documents, start: int, n: int) -> None:
    for doc, labels in documents[start : start + n]:
        services.annotation_submit(project=project, user=user, document_id=doc.pk, labels=labels)


def load(version: ModelVersion):
    return ml.load_model(str(Path(settings.ARTIFACTS_DIR) / version.artifact_path))


def test_a_full_tier_project_publishes_a_fine_tuned_model_that_serves_suggestions(goemotions, manager, annotator_user):
    project, documents = goemotions
    answer(project, annotator_user, documents, 0, 24)
    version = train(project, manager)

    assert version.is_serving and version.n_annotations == 24
    assert version.config["tier"] == "full" and "fast_tier" not in version.config
    assert version.config["full_tier"]["head"] == "flat"  # "auto" on a few labels
    assert version.config["full_tier"]["epochs"] == 1 and version.config["full_tier"]["max_length"] == 32
    assert version.config["label_prior"] is None and version.config["tick_curve"] is None  # it has neither
    assert (Path(settings.ARTIFACTS_DIR) / version.artifact_path / "full_tier.json").exists()
    model = load(version)
    assert isinstance(model, FullTier) and model.train_info["head"] == "flat"
    assert len(version.stop_predictions) == N_DOCUMENTS  # its decisions on the stop set were recorded
    label_id = dict(project.labels.values_list("name", "id"))
    held = documents[24:]  # measured the way the evaluation set is
    measured = evaluate_model(
        model=model,
        project=project,
        doc_ids=[doc.pk for doc, _ in held],
        rows=[[label_id[name] for name in labels] for _, labels in held],
        label_counts=np.ones(len(label_id)),
        n_train=24,
    )
    assert measured["n_documents"] == len(held) and 0 <= measured["metrics"]["micro_f1"]["value"] <= 1
    page = Client()
    page.force_login(manager)
    html = page.get(f"/projects/{project.pk}/").content.decode()
    assert '<span data-stat="tier">full tier, flat head, fine-tuned on cpu</span>' in html
    assert 'id="tier-pending"' not in html  # the serving model is of the project's tier

    services.scoring_run(job_id=Job.objects.get(project=project, kind="score", status="PENDING").pk)
    items = QueueItem.objects.filter(project=project)
    assert items.count() == N_DOCUMENTS - 24 and {item.model_version_id for item in items} == {version.pk}
    served = services.queue_lease_next(project=project, user=annotator_user)
    assert served.item.model_version == version
    names = set(project.labels.values_list("name", flat=True))
    scores = [s["score"] for s in served.suggestions]
    assert served.suggestions and {s["label"] for s in served.suggestions} <= names
    assert scores == sorted(scores, reverse=True) and all(0 <= p <= 1 for p in scores)


def test_a_tree_head_trains_and_serves_on_a_small_label_set(goemotions, manager, annotator_user, settings):
    settings.ALABEL_FULL_TIER = {**TINY, "head": "tree", "tree": {"branching": 2, "leaf_size": 4}}
    project, documents = goemotions
    answer(project, annotator_user, documents, 0, 24)
    version = train(project, manager)

    assert version.config["full_tier"]["head"] == "tree"
    model = load(version)
    assert isinstance(model, FullTier) and len(model.train_info["levels"]) > 1  # a label tree, not one layer
    services.scoring_run(job_id=Job.objects.get(project=project, kind="score", status="PENDING").pk)
    served = services.queue_lease_next(project=project, user=annotator_user)
    assert served.item.model_version == version and served.suggestions


def test_a_full_tier_model_is_updated_incrementally_with_a_new_label(goemotions, manager, annotator_user):
    project, documents = goemotions
    answer(project, annotator_user, documents, 0, 20)
    v1 = train(project, manager)
    services.labels_add(project=project, labels=["nostalgia"])
    services.encode_run(job_id=Job.objects.get(project=project, kind="encode", status="PENDING").pk)
    # A fast tier would retrain at once to suggest the new label from its name; the full tier has no such prior.
    assert not Job.objects.filter(project=project, kind="train", status="PENDING").exists()
    answer(project, annotator_user, documents, 20, 4)  # +20 %: below full_retrain_growth

    v2 = train(project, manager)

    assert v2.config["mode"] == "incremental" and v2.config["tier"] == "full"
    assert (v2.config["base_version"], v2.config["new_documents"], v2.config["replayed_documents"]) == (1, 4, 20)
    model = load(v2)
    assert isinstance(model, FullTier) and model.train_info["updates"] == 1
    assert model.labels == [*load(v1).labels, "nostalgia"] and v2.n_labels == v1.n_labels + 1


def test_switching_the_tier_forces_a_full_retrain(goemotions, manager, annotator_user):
    project, documents = goemotions
    services.project_update(project=project, model_tier="fast")
    answer(project, annotator_user, documents, 0, 20)
    v1 = train(project, manager)
    assert v1.config["tier"] == "fast" and isinstance(load(v1), FastTier)

    services.project_update(project=project, user=manager, model_tier="full")
    queued = Job.objects.get(project=project, kind="train", status="PENDING")
    assert (queued.mode, queued.reason) == ("full", "the model tier was switched to full")
    answer(project, annotator_user, documents, 20, 2)
    v2 = train(project, manager, mode="incremental")  # an update of the fast model is not what the project trains

    assert v2.config["mode"] == "full"
    assert v2.config["mode_reason"] == "the model tier changed from fast to full since the serving model"
    assert isinstance(load(v2), FullTier) and v2.is_serving


def test_a_bad_tier_is_a_400_naming_the_field_and_changes_nothing(goemotions, manager_client):
    project, _ = goemotions
    url = f"/api/v1/projects/{project.pk}/"
    response = manager_client.patch(url, {"model_tier": "huge"}, format="json")
    assert response.status_code == 400
    assert any(error.startswith("model_tier:") for error in response.json()["errors"]), response.json()
    with pytest.raises(ProjectError, match="model_tier must be one of fast, full"):
        services.project_update(project=project, model_tier="huge")
    assert Project.objects.get(pk=project.pk).model_tier == "full"
    assert not Job.objects.filter(project=project, kind="train").exists()

    response = manager_client.patch(url, {"model_tier": "fast"}, format="json")
    assert response.status_code == 200 and manager_client.get(url).json()["model_tier"] == "fast"
    policy = {"retrain_every": "50", "retrain_mode": "auto", "full_retrain_growth": "0.5", "replay_size": "10"}
    response = manager_client.post(
        f"/projects/{project.pk}/manage/retraining/", {**policy, "timezone": "UTC", "model_tier": "full"}
    )
    assert response.status_code == 302 and Project.objects.get(pk=project.pk).model_tier == "full"  # the page


def test_a_bad_full_tier_setting_fails_the_run_naming_it(goemotions, manager, annotator_user, settings):
    settings.ALABEL_FULL_TIER = {**TINY, "epoch": 2}
    project, documents = goemotions
    answer(project, annotator_user, documents, 0, 10)
    job = services.training_request(project=project, user=manager)
    services.training_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "FAILED" and "ALABEL_FULL_TIER" in job.error and "epoch" in job.error
    assert not ModelVersion.objects.filter(project=project).exists()
