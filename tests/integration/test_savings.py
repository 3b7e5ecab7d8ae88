"""Does active learning pay here? End to end with real parts: documents answered through the API (picks from the
queue and interleaved evaluation documents) -> a training run on a real Celery worker on Redis -> the ESTIMATE job
it queues -> the estimate stored -> a manager's re-estimate through the API -> the same worker -> the API's answer."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from annotator.models import Annotation, Job, SavingsEstimate
from annotator.services.demo import demo_labels, demo_records

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _client(username: str, *, can_create: bool = False) -> APIClient:
    user = get_user_model().objects.create_user(username=username, password="correct horse battery")
    if can_create:
        user.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    client = APIClient()
    client.force_login(user)
    return client


def _finished(project_id: int, kind: str, **extra) -> Job | None:
    job = Job.objects.filter(project_id=project_id, kind=kind, **extra).order_by("-id").first()
    if job is not None and job.status == "FAILED":
        pytest.fail(f"{kind} job failed: {job.error}")
    return job if job is not None and job.status == "SUCCEEDED" else None


def test_a_worker_estimates_the_labels_the_picks_saved_against_random(celery_worker):
    manager, annotator = _client("manager", can_create=True), _client("annotator")
    project = manager.post(
        "/api/v1/projects/",
        {
            "name": "Savings",
            "labels": demo_labels(),
            "retrain_every": 1000,
            "eval_fraction": 0.4,
            "eval_share": 0.4,
            "queue_size": 60,
        },
        format="json",
    ).json()
    base = f"/api/v1/projects/{project['id']}"
    manager.post(f"{base}/members/", {"username": "annotator", "role": "annotator"}, format="json")
    sample = demo_records(90, with_labels=True)
    gold = {record.external_id: record.labels or [] for record in sample}
    response = manager.post(
        f"{base}/documents/", [{"id": r.external_id, "text": r.text} for r in sample], format="json"
    )
    assert response.status_code == 201, response.content
    wait_for(lambda: _finished(project["id"], "score"), timeout=240, what="encoding and the cold-start queue")

    for _ in range(64):  # 40 % of them from the evaluation set, the rest picked by the queue
        served = annotator.get(f"{base}/next/")
        assert served.status_code == 200, served.content
        document = served.json()["document"]
        answer = annotator.post(
            f"{base}/annotations/",
            {"document": document["id"], "labels": gold[document["external_id"]]},
            format="json",
        )
        assert answer.status_code == 201, answer.content
    evaluation = Annotation.objects.filter(project_id=project["id"], document__is_evaluation=True).count()
    assert evaluation >= 20 and 64 - evaluation >= 20

    # A published training run queues the first estimate on its own.
    assert manager.post(f"{base}/train/", {}, format="json").status_code == 202
    first = wait_for(lambda: _finished(project["id"], "estimate"), timeout=400, what="the estimate after training")
    assert first.requested_by is None
    estimate = SavingsEstimate.objects.get(project_id=project["id"])
    assert estimate.job_id == first.pk and estimate.evaluation_documents == evaluation
    assert estimate.picks == 64 - evaluation and estimate.model_version is not None

    # A manager re-estimates through the API; any member reads the answer.
    assert annotator.post(f"{base}/savings/").status_code == 403
    response = manager.post(f"{base}/savings/")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert job_id != first.pk
    wait_for(lambda: _finished(project["id"], "estimate", pk=job_id), timeout=400, what="the manager's estimate")
    body = annotator.get(f"{base}/savings/").json()
    assert body["active"] is False and body["job"]["id"] == job_id
    result = body["estimate"]["result"]
    assert body["estimate"]["job"] == job_id
    assert result["verdict"] in {"saves", "costs", "undecided"}
    assert result["n_random"] == evaluation // 2 and result["picks_max"] == 64 - evaluation
    assert (
        result["ratio"]["low"] is None
        or result["ratio"]["value"] is None
        or (result["ratio"]["low"] <= result["ratio"]["value"])
    )
    assert [p["n"] for p in result["curves"]["picks"]] == result["sizes"]["picks"]
    assert SavingsEstimate.objects.filter(project_id=project["id"]).count() == 2
