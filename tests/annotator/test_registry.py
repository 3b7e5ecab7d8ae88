"""The model registry: rollback and back, what is served after it, and comparing two versions."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from annotator import services
from annotator.models import Activity, Document, Job, Label, ModelVersion, QueueItem
from annotator.services.registry import artifacts_sweep

from .conftest import records
from .loop import GOLD, encode_all, label, train


def _run(project, kind, runner):
    Job.objects.filter(project=project, kind=kind, status="PENDING").delete()
    job, _ = services.job_request(project=project, kind=kind, reason="test")
    runner(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED", job.error


@pytest.mark.usefixtures("tiny_encoder")
def test_rollback_changes_the_suggestions_served_and_back(
    project, manager, manager_client, annotator_user, annotator_client
):
    services.documents_import(project=project, user=manager, records=records(40))
    services.project_update(project=project, retrain_every=1000)
    ids = list(Document.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    Job.objects.all().delete()
    _run(project, "encode", services.encode_run)
    for i, doc_id in enumerate(ids[:8]):
        services.annotation_submit(project=project, user=manager, document_id=doc_id, labels=GOLD[i % 6])
    _run(project, "train", services.training_run)
    for i, doc_id in enumerate(ids[8:24]):
        services.annotation_submit(project=project, user=manager, document_id=doc_id, labels=GOLD[(i + 3) % 6])
    _run(project, "train", services.training_run)
    _run(project, "score", services.scoring_run)
    served = annotator_client.get(f"/api/v1/projects/{project.pk}/next/").json()
    assert served["model_version"] == 2
    doc = served["document"]["id"]
    by_v2 = {s["label"]: s["score"] for s in served["suggestions"]}

    response = manager_client.post(f"/api/v1/projects/{project.pk}/models/1/promote/")
    assert response.status_code == 200 and response.json()["is_serving"] is True
    assert Job.objects.filter(project=project, kind="score", status="PENDING").exists()
    assert services.training_maybe_request(project=project) is None  # a rollback does not trigger a retrain
    _run(project, "score", services.scoring_run)
    assert set(QueueItem.objects.filter(project=project).values_list("model_version__number", flat=True)) == {1}
    served = annotator_client.get(f"/api/v1/projects/{project.pk}/next/").json()
    assert served["model_version"] == 1 and served["document"]["id"] == doc  # still leased, with v1's suggestions
    by_v1 = {s["label"]: s["score"] for s in served["suggestions"]}
    assert by_v1 != by_v2
    assert (
        Activity.objects.filter(project=project, kind="model")
        .first()
        .message.startswith("v1 promoted to serving (was v2) by manager")
    )

    manager_client.post(f"/api/v1/projects/{project.pk}/models/2/promote/")
    _run(project, "score", services.scoring_run)
    served = annotator_client.get(f"/api/v1/projects/{project.pk}/next/").json()
    assert served["model_version"] == 2
    assert {s["label"]: s["score"] for s in served["suggestions"]} == by_v2


def test_promoting_needs_a_manager_and_an_existing_version(project, manager_client, annotator_client):
    ModelVersion.objects.create(
        project=project,
        number=1,
        is_serving=True,
        artifact_path="x/v1",
        n_annotations=3,
        n_labels=5,
        data_cutoff=timezone.now(),
    )
    assert annotator_client.post(f"/api/v1/projects/{project.pk}/models/1/promote/").status_code == 403
    response = manager_client.post(f"/api/v1/projects/{project.pk}/models/7/promote/")
    assert response.status_code == 404 and "has no model version 7" in response.json()["detail"]


def test_compare_reports_metric_label_and_prediction_changes(project, manager_client, documents):
    joy, anger, fear = (Label.objects.get(project=project, name=n).pk for n in ("joy", "anger", "fear"))
    stop = [documents[0].pk, documents[1].pk, documents[2].pk]
    project.stop_set = stop
    project.save()
    common = {"project": project, "n_labels": 5, "data_cutoff": timezone.now()}
    ModelVersion.objects.create(
        number=1,
        artifact_path="x/v1",
        n_annotations=20,
        metrics={"micro_f1": 0.40},
        evaluation={"n_documents": 50, "metrics": {"micro_f1": {"value": 0.30, "low": 0.2, "high": 0.4}}},
        evaluation_per_label=[{"label": "joy", "f1": 0.5}, {"label": "fear", "f1": 0.0}],
        stop_predictions=[[joy], [anger], []],
        **common,
    )
    ModelVersion.objects.create(
        number=2,
        is_serving=True,
        artifact_path="x/v2",
        n_annotations=40,
        metrics={"micro_f1": 0.45},
        evaluation={"n_documents": 50, "metrics": {"micro_f1": {"value": 0.36, "low": 0.26, "high": 0.46}}},
        evaluation_per_label=[{"label": "joy", "f1": 0.6}, {"label": "fear", "f1": 0.4}],
        stop_predictions=[[joy], [anger, fear], [joy]],
        **common,
    )
    body = manager_client.get(f"/api/v1/projects/{project.pk}/models/compare/", {"a": 1, "b": 2}).json()
    assert body["metrics"]["micro_f1"] == {"a": 0.40, "b": 0.45, "delta": 0.05}
    assert body["evaluation"]["micro_f1"]["delta"] == pytest.approx(0.06)
    assert [(r["label"], r["delta"]) for r in body["per_label"]] == [("fear", 0.4), ("joy", pytest.approx(0.1))]
    changed = body["changed"]
    assert (changed["comparable"], changed["documents"], changed["count"]) == (True, 3, 2)
    assert [(e["external_id"], e["added"], e["removed"]) for e in changed["examples"]] == [
        ("doc-1", ["fear"], []),
        ("doc-2", ["joy"], []),
    ]
    bad = manager_client.get(f"/api/v1/projects/{project.pk}/models/compare/", {"a": 1})
    assert bad.status_code == 400


@pytest.mark.usefixtures("tiny_encoder")
def test_the_sweep_removes_only_old_model_folders_nobody_refers_to(project, manager, annotator_user, documents):
    encode_all(project)
    label(project, annotator_user, documents, 0, 6)
    version = train(project, manager)
    models = Path(settings.ARTIFACTS_DIR) / "projects" / str(project.pk) / "models"
    orphan, fresh = models / "job999-deadbeef", models / "job998-cafecafe"
    for folder in (orphan, fresh):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    os.utime(Path(settings.ARTIFACTS_DIR) / version.artifact_path, (old, old))
    assert artifacts_sweep() == 1
    assert not orphan.exists() and fresh.exists() and (Path(settings.ARTIFACTS_DIR) / version.artifact_path).exists()


def _measured(value, half):
    return {"value": value, "low": round(value - half, 5), "high": round(value + half, 5)}


def _two_versions(project):
    common = {"project": project, "n_labels": 5, "data_cutoff": timezone.now()}
    ModelVersion.objects.create(
        number=1,
        artifact_path="x/v1",
        n_annotations=20,
        metrics={"micro_f1": 0.40, "macro_f1": 0.30, "P@1": 0.5, "n_val": 59.0},
        evaluation={"n_documents": 50, "metrics": {"micro_f1": _measured(0.30, 0.1), "macro_f1": _measured(0.2, 0.1)}},
        evaluation_per_label=[
            {"label": "joy", "f1": 0.5, "low": 0.3, "high": 0.7},
            {"label": "fear", "f1": 0.0, "low": 0.0, "high": 0.0},
            {"label": "anger", "f1": 0.25, "low": 0.0, "high": 0.5},
        ],
        **common,
    )
    ModelVersion.objects.create(
        number=2,
        is_serving=True,
        artifact_path="x/v2",
        n_annotations=40,
        metrics={"micro_f1": 0.45, "macro_f1": 0.35, "P@1": 0.55, "n_val": 59.0},
        evaluation={"n_documents": 50, "metrics": {"micro_f1": _measured(0.36, 0.1), "macro_f1": _measured(0.2, 0.1)}},
        evaluation_per_label=[
            {"label": "joy", "f1": 0.6, "low": 0.4, "high": 0.8},
            {"label": "fear", "f1": 0.0, "low": 0.0, "high": 0.0},
            {"label": "anger", "f1": 0.25, "low": 0.0, "high": 0.5},
        ],
        **common,
    )


def _page(user, path):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.get(path).content.decode()


def test_compare_hides_unchanged_labels_and_gives_every_change_an_interval(project, manager, manager_client):
    _two_versions(project)
    body = manager_client.get(f"/api/v1/projects/{project.pk}/models/compare/", {"a": 1, "b": 2}).json()
    assert [row["label"] for row in body["per_label"]] == ["joy"] and body["unchanged_labels"] == 2
    joy = body["per_label"][0]
    half = (0.2**2 + 0.2**2) ** 0.5  # the two 95 % half-widths combined as if independent (conservative)
    assert (joy["a_low"], joy["a_high"], joy["b_low"], joy["b_high"]) == (0.3, 0.7, 0.4, 0.8)
    assert joy["delta_low"] == pytest.approx(0.1 - half, abs=1e-5)
    assert joy["delta_high"] == pytest.approx(0.1 + half, abs=1e-5)
    micro = body["evaluation"]["micro_f1"]
    assert micro["name"] == "micro-F1" and micro["delta"] == pytest.approx(0.06)
    assert micro["delta_low"] <= micro["delta"] <= micro["delta_high"]
    assert micro["delta_low"] == pytest.approx(0.06 - (0.1**2 * 2) ** 0.5, abs=1e-5)
    page = _page(manager, f"/projects/{project.pk}/?a=1&b=2")
    comparison = page[page.index('id="comparison"') :]
    assert "0.000 → 0.000" not in comparison and "fear" not in comparison and "anger:" not in comparison
    assert 'joy: 0.500 <span class="hint">(0.300–0.700)</span> → 0.600' in comparison
    assert "2 labels with the same F1 in both versions not listed." in comparison
    assert '<td>micro-F1</td><td>0.300 <span class="hint">(0.200–0.400)</span></td>' in comparison


def test_the_model_card_names_its_metrics_and_where_each_was_measured(project, manager):
    _two_versions(project)
    page = _page(manager, f"/projects/{project.pk}/")
    card = page[page.index('data-stat="model"') : page.index('id="learning-curve"')]
    assert "n_val" not in card and "59.000" not in card and "P@1" not in card
    assert 'On validation <span class="hint">(59 validation documents)</span>' in card
    assert 'On the evaluation set <span class="hint">(50 documents, 95% intervals)</span>' in card
    assert "<dt>precision at 1</dt><dd>0.550</dd>" in card
    assert '<dt>micro-F1</dt><dd>0.360 <span class="hint">(0.260–0.460)</span></dd>' in card
    glossary = card[card.index('id="card-glossary"') :]
    # Each metric explained once, whichever measurement shows it.
    assert [glossary.count(f"<dt>{name}</dt>") for name in ("micro-F1", "macro-F1", "precision at 1")] == [1, 1, 1]


def test_the_strategy_row_names_the_strategy_actually_used(project, manager):
    from annotator.text import fold
    from learner.strategies import DEFAULT_STRATEGY, DEFAULT_STRATEGY_LARGE, LARGE_LABEL_SPACE

    def row():
        page = _page(manager, f"/projects/{project.pk}/")
        start = page.index('data-stat="strategy">') + len('data-stat="strategy">')
        return page[start : page.index("</dd>", start)]

    cold = "cold start (documents picked for diversity) until the first model"
    assert row() == f"{cold}, then {DEFAULT_STRATEGY} (the default for 5 labels)"
    Label.objects.bulk_create(
        [Label(project=project, name=f"topic {i}", search_key=fold(f"topic {i}")) for i in range(LARGE_LABEL_SPACE)]
    )
    ModelVersion.objects.create(
        project=project,
        number=1,
        is_serving=True,
        artifact_path="x/v1",
        n_annotations=20,
        n_labels=LARGE_LABEL_SPACE + 5,
        data_cutoff=timezone.now(),
    )
    assert row() == f"{DEFAULT_STRATEGY_LARGE} (the default for {LARGE_LABEL_SPACE + 5:,} labels)"
    project.strategy = "random"
    project.save()
    assert row() == "random"
