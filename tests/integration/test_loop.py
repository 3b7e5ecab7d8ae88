"""The whole loop with real parts: API -> database -> real Celery worker on Redis -> pretrained MiniLM -> queue.

Import 300 demo documents, annotate 24 through the API with their gold labels (20 for training, 4 of the evaluation
set), wait for the model version the 20th training answer triggers, and check that the next documents come from
that version's queue (the default strategy).
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from annotator.models import Annotation, Document, Job, ModelVersion, QueueItem
from annotator.services.demo import demo_labels, demo_records
from learner.strategies import DEFAULT_STRATEGY

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _client(username: str, *, can_create: bool = False) -> APIClient:
    user = get_user_model().objects.create_user(username=username, password="correct horse battery")
    if can_create:
        user.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    client = APIClient()
    client.force_login(user)
    return client


def test_annotations_train_a_model_whose_queue_serves_the_next_documents(celery_worker):
    manager, annotator = _client("manager", can_create=True), _client("annotator")
    project = manager.post(
        "/api/v1/projects/",
        {"name": "Loop", "labels": demo_labels(), "retrain_every": 20, "label_budget": 100},
        format="json",
    ).json()
    base = f"/api/v1/projects/{project['id']}"
    assert (
        manager.post(f"{base}/members/", {"username": "annotator", "role": "annotator"}, format="json").status_code
        == 201
    )

    sample = demo_records(300, with_labels=True)
    gold = {record.external_id: record.labels for record in sample}
    response = manager.post(
        f"{base}/documents/", [{"id": r.external_id, "text": r.text} for r in sample], format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["documents"] == 300

    # The worker encodes the pool and fills the cold-start queue.
    wait_for(
        lambda: Job.objects.filter(project_id=project["id"], kind="score", status="SUCCEEDED").exists(),
        timeout=240,
        what="encoding and the cold-start queue",
    )
    assert QueueItem.objects.filter(project_id=project["id"], strategy="cold_start").count() > 0

    # 24 answers: every fifth document served is one of the evaluation set (30 of the 300, eval_share 0.2), so 20
    # train the model (the 20th triggers training) and 4 measure it; the annotator cannot tell which is which.
    labelled = []
    for _ in range(24):
        served = annotator.get(f"{base}/next/").json()
        assert served["model_version"] is None
        assert served["strategy"] is None  # what picked it is not shown to annotators
        external_id = served["document"]["external_id"]
        response = annotator.post(
            f"{base}/annotations/",
            {"document": served["document"]["id"], "labels": gold[external_id], "seconds_spent": 2.0},
            format="json",
        )
        assert response.status_code == 201, response.content
        labelled.append(external_id)
    assert len(set(labelled)) == 24
    evaluation = set(
        Document.objects.filter(project_id=project["id"], is_evaluation=True).values_list("external_id", flat=True)
    )
    assert len(evaluation) == 30 and [e in evaluation for e in labelled] == ([False] * 4 + [True]) * 4 + [False] * 4

    version = wait_for(
        lambda: ModelVersion.objects.filter(project_id=project["id"], is_serving=True).first(),
        timeout=240,
        what="the model version triggered by the 20th training answer",
    )
    assert version.number == 1 and version.n_annotations == 20
    assert version.evaluation["n_documents"] == 4  # measured on the evaluation answers, never trained on them
    micro = version.evaluation["metrics"]["micro_f1"]
    assert micro["low"] <= micro["value"] <= micro["high"]
    wait_for(
        lambda: Job.objects.filter(
            project_id=project["id"], kind="score", status="SUCCEEDED", model_version=version
        ).exists(),
        timeout=120,
        what="the pool to be re-scored by v1",
    )

    # The 25th document is the evaluation set's turn (5 of 25), served with v1's suggestions like any other.
    served = annotator.get(f"{base}/next/").json()
    item = QueueItem.objects.get(document_id=served["document"]["id"], model_version=version)
    assert item.strategy == "evaluation" and served["document"]["external_id"] in evaluation
    assert served["model_version"] == 1 and len(served["suggestions"]) == 10
    external_id = served["document"]["external_id"]
    annotator.post(
        f"{base}/annotations/", {"document": served["document"]["id"], "labels": gold[external_id]}, format="json"
    )
    labelled.append(external_id)

    for _ in range(3):
        served = annotator.get(f"{base}/next/").json()
        assert served["model_version"] == 1
        item = QueueItem.objects.get(document_id=served["document"]["id"], model_version=version)
        assert item.strategy == DEFAULT_STRATEGY  # the project default
        assert len(served["suggestions"]) == 10
        assert all(0.0 <= s["score"] <= 1.0 for s in served["suggestions"])
        assert served["document"]["external_id"] not in labelled
        annotator.post(f"{base}/skip/", {"document": served["document"]["id"]}, format="json")

    export = manager.get(f"{base}/export/", {"format": "jsonl"})
    rows = [json.loads(line) for line in b"".join(export.streaming_content).decode().splitlines()]
    assert sorted(row["id"] for row in rows) == sorted(labelled)
    assert all(sorted(row["labels"]) == sorted(gold[row["id"]]) for row in rows)
    assert Annotation.objects.filter(document__project_id=project["id"]).count() == 25
    stats = manager.get(f"{base}/stats/").json()
    assert stats["model_version"]["number"] == 1
    assert stats["budget"]["spent"] == 25
