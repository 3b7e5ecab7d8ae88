"""Label coverage and annotator statistics for the manager, with date ranges."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from annotator import services
from annotator.models import Annotation, QueueItem

from .conftest import make_user


def _url(project, what: str) -> str:
    return f"/api/v1/projects/{project.pk}/{what}/"


def _answer(project, user, doc, labels, seconds, rejected=(), shown=None):
    if shown:
        ids = dict(project.labels.values_list("name", "id"))
        QueueItem.objects.create(
            project=project, document=doc, strategy="x", score=1, suggestions=[[ids[n], 0.5] for n in shown]
        )
    services.annotation_submit(
        project=project, user=user, document_id=doc.pk, labels=labels, rejected=list(rejected), seconds_spent=seconds
    )


def test_coverage_counts_positives_and_filters_by_name_count_and_date(
    project, annotator_user, manager_client, documents
):
    _answer(project, annotator_user, documents[0], ["joy"], 5)
    _answer(project, annotator_user, documents[1], ["joy", "fear"], 5)
    _answer(project, annotator_user, documents[2], [], 5)
    body = manager_client.get(_url(project, "labels/coverage")).json()
    assert (body["labels"], body["zero"], body["under_5"]) == (5, 3, 5)
    assert body["distribution"][:3] == [
        {"bucket": "0", "labels": 3},
        {"bucket": "1", "labels": 1},
        {"bucket": "2-4", "labels": 1},
    ]
    assert [(x["name"], x["positives"]) for x in body["items"]] == [
        ("anger", 0),
        ("sadness", 0),
        ("surprise", 0),
        ("fear", 1),
        ("joy", 2),
    ]
    found = manager_client.get(_url(project, "labels/coverage"), {"q": "SAD", "max_positives": 0}).json()
    assert [x["name"] for x in found["items"]] == ["sadness"] and found["matching"] == 1
    Annotation.objects.filter(document=documents[0]).update(updated_at=timezone.now() - timedelta(days=10))
    recent = manager_client.get(
        _url(project, "labels/coverage"), {"date_from": (timezone.localdate() - timedelta(days=2)).isoformat()}
    ).json()
    assert {x["name"]: x["positives"] for x in recent["items"]}["joy"] == 1


def test_annotator_statistics(project, annotator_user, manager_client, documents):
    second = make_user("second")
    services.member_add(project=project, username="second", role="annotator")
    _answer(project, annotator_user, documents[0], ["joy"], 10, rejected=["fear"], shown=["joy", "fear", "anger"])
    _answer(project, annotator_user, documents[1], ["anger"], 20, shown=["anger", "joy"])
    _answer(project, annotator_user, documents[2], [], 60)
    _answer(project, second, documents[3], ["joy"], 4)
    rows = {r["username"]: r for r in manager_client.get(_url(project, "annotators")).json()}
    mine = rows[annotator_user.username]
    assert (mine["documents"], mine["median_seconds"], mine["documents_per_hour"]) == (3, 20.0, 120.0)
    assert (mine["suggestions_shown"], mine["accepted_share"]) == (5, 0.4)
    assert rows["second"]["documents"] == 1 and rows["second"]["accepted_share"] is None
    Annotation.objects.filter(annotator=second).update(updated_at=timezone.now() - timedelta(days=3))
    today = timezone.localdate().isoformat()
    rows = manager_client.get(_url(project, "annotators"), {"date_from": today, "date_to": today}).json()
    assert [r["username"] for r in rows] == [annotator_user.username]


def test_bad_dates_are_400s_and_annotators_get_403(project, manager_client, annotator_client):
    response = manager_client.get(_url(project, "annotators"), {"date_from": "yesterday"})
    assert response.status_code == 400 and "date_from must be a date" in response.json()["detail"]
    response = manager_client.get(_url(project, "annotators"), {"date_from": "2026-02-02", "date_to": "2026-01-01"})
    assert response.status_code == 400
    for what in ("annotators", "labels/coverage", "learning-curve", "models", "stats"):
        assert annotator_client.get(_url(project, what)).status_code == 403, what
