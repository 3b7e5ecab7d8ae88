"""Browsing documents and answers (annotator.selectors.browse, GET .../documents/): the reviewer role, filters,
keyset paging, and what a reviewer may not see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotator import services
from annotator.models import Annotation, Document

from .conftest import client_for, make_user, records


@pytest.fixture
def answered(project, manager, annotator_user):
    """12 documents: 0-5 answered by the annotator (joy on the even ones), 6-7 by a reviewer, 8-11 unanswered;
    document 3 in the evaluation set."""
    services.documents_import(project=project, user=manager, records=records(12))
    reviewer = make_user("reviewer")
    services.member_add(project=project, username="reviewer", role="reviewer", user=manager)
    docs = list(Document.objects.filter(project=project).order_by("id"))
    for i, doc in enumerate(docs[:6]):
        services.annotation_submit(
            project=project, user=annotator_user, document_id=doc.pk, labels=["joy"] if i % 2 == 0 else ["anger"]
        )
    for doc in docs[6:8]:
        services.annotation_submit(project=project, user=reviewer, document_id=doc.pk, labels=["fear"])
    Document.objects.filter(pk=docs[3].pk).update(is_evaluation=True)
    return docs, reviewer


def _page(client, project, **params):
    response = client.get(f"/api/v1/projects/{project.pk}/documents/", params)
    assert response.status_code == 200, response.content
    return response.json()


def _ids(page) -> list[str]:
    return [d["external_id"] for d in page["documents"]]


def test_filters_by_annotator_label_answered_and_evaluation(project, manager_client, answered):
    assert _ids(_page(manager_client, project, annotator="annotator")) == [f"doc-{i}" for i in range(6)]
    assert _ids(_page(manager_client, project, label="joy")) == ["doc-0", "doc-2", "doc-4"]
    assert _ids(_page(manager_client, project, annotator="reviewer", label="fear")) == ["doc-6", "doc-7"]
    assert _ids(_page(manager_client, project, annotator="annotator", label="fear")) == []  # one answer matches both
    assert _ids(_page(manager_client, project, answered="0")) == [f"doc-{i}" for i in range(8, 12)]
    assert _ids(_page(manager_client, project, evaluation="1")) == ["doc-3"]
    first = _page(manager_client, project, label="joy")["documents"][0]
    assert first["answers"] == [
        {
            "annotator": "annotator",
            "labels": ["joy"],
            "source": "api",
            "seconds_spent": None,
            "updated_at": first["answers"][0]["updated_at"],
        }
    ]


def test_dates_are_days_in_the_servers_time_zone_both_included(project, manager_client, answered):
    docs, _ = answered
    Annotation.objects.filter(document=docs[0]).update(updated_at=timezone.now() - timedelta(days=10))
    today = timezone.localdate().isoformat()
    assert "doc-0" not in _ids(_page(manager_client, project, date_from=today, date_to=today))
    ten_days_ago = (timezone.localdate() - timedelta(days=10)).isoformat()
    assert _ids(_page(manager_client, project, date_from=ten_days_ago, date_to=ten_days_ago)) == ["doc-0"]


def test_keyset_paging_walks_every_document_once(project, manager_client, answered):
    seen, after = [], None
    while True:
        params = {"limit": 5, **({"after": after} if after else {})}
        page = _page(manager_client, project, **params)
        seen += _ids(page)
        after = page["next"]
        if after is None:
            break
    assert seen == [f"doc-{i}" for i in range(12)]


def test_bad_filters_are_a_clear_400(project, manager_client, answered):
    url = f"/api/v1/projects/{project.pk}/documents/"
    for params, message in (
        ({"label": "nonexistent"}, "no label 'nonexistent'"),
        ({"date_from": "2026-13-01"}, "date_from must be a date"),
        ({"date_from": "2026-12-02", "date_to": "2026-12-01"}, "date_from must not be after date_to"),
        ({"answered": "maybe"}, "answered must be 1 or 0"),
        ({"limit": "-1"}, "limit must be an integer"),
        ({"after": "x"}, "after must be an integer"),
    ):
        response = manager_client.get(url, params)
        assert response.status_code == 400 and message in response.json()["detail"], (params, response.content)


def test_reviewers_browse_without_the_evaluation_set_and_annotators_may_not(
    project, annotator_client, outsider, answered
):
    _, reviewer = answered
    reviewer_client = client_for(reviewer)
    page = _page(reviewer_client, project)
    assert len(page["documents"]) == 12 and {d["evaluation"] for d in page["documents"]} == {None}
    url = f"/api/v1/projects/{project.pk}/documents/"
    assert reviewer_client.get(url, {"evaluation": "1"}).status_code == 403
    assert annotator_client.get(url).status_code == 403
    assert client_for(outsider).get(url).status_code == 404
    # A reviewer annotates like anyone, but changes no setting.
    assert reviewer_client.get(f"/api/v1/projects/{project.pk}/next/").status_code in (200, 204)
    assert (
        reviewer_client.patch(f"/api/v1/projects/{project.pk}/", {"retrain_every": 3}, format="json").status_code == 403
    )
