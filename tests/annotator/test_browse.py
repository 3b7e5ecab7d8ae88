"""Browsing documents and answers (annotator.selectors.browse, GET .../documents/): the reviewer role, filters,
keyset paging, and what a reviewer may not see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotator import services
from annotator.models import Annotation, Document
from annotator.services.adjudication import adjudication_save

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
            "model_agreement": None,
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
        ({"agreement_below": "1.5"}, "agreement_below must be a number from 0 to 1"),
        ({"agreement_below": "nan"}, "agreement_below must be a number from 0 to 1"),
        ({"gold": "maybe"}, "gold must be 1 or 0"),
        ({"model_disagreement": "2"}, "model_disagreement must be 1 or 0"),
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


def test_filters_by_agreement_model_disagreement_and_gold(project, manager_client, answered):
    docs, reviewer = answered
    # doc-0: two answers that disagree (joy / anger); doc-2: two that agree.
    services.annotation_submit(project=project, user=reviewer, document_id=docs[0].pk, labels=["anger"])
    services.annotation_submit(project=project, user=reviewer, document_id=docs[2].pk, labels=["joy"])
    assert Document.objects.get(pk=docs[0].pk).agreement == 0
    assert _ids(_page(manager_client, project, agreement_below="1")) == ["doc-0"]
    assert _ids(_page(manager_client, project, agreement_below="0")) == []
    Annotation.objects.filter(document=docs[4]).update(model_agreement=0.5)
    Annotation.objects.filter(document=docs[5]).update(model_agreement=1.0)
    assert _ids(_page(manager_client, project, model_disagreement="1")) == ["doc-4"]
    assert "doc-4" not in _ids(_page(manager_client, project, model_disagreement="0"))
    assert _ids(_page(manager_client, project, model_disagreement="1", annotator="reviewer")) == []
    adjudication_save(project=project, reviewer=reviewer, document_id=docs[0].pk, labels=["joy"], note="<i>x</i>")
    assert _ids(_page(manager_client, project, gold="1")) == ["doc-0"]
    assert _ids(_page(manager_client, project, agreement_below="1", gold="0")) == []
    row = _page(manager_client, project, gold="1")["documents"][0]
    assert row["gold"]["labels"] == ["joy"] and row["gold"]["reviewer"] == "reviewer" and row["agreement"] == 0
    assert [
        a["model_agreement"] for a in _page(manager_client, project, model_disagreement="1")["documents"][0]["answers"]
    ] == [0.5]


def test_a_page_costs_the_same_queries_with_every_filter(
    project, manager_client, answered, django_assert_max_num_queries
):
    docs, reviewer = answered
    adjudication_save(project=project, reviewer=reviewer, document_id=docs[0].pk, labels=["joy"])
    params = {"annotator": "annotator", "label": "joy", "model_disagreement": "0", "gold": "1", "agreement_below": "1"}
    with django_assert_max_num_queries(12):
        _page(manager_client, project, **params)


def test_browse_page_for_reviewers_and_managers(project, answered, annotator_user, manager):
    from django.test import Client

    docs, reviewer = answered
    services.annotation_submit(project=project, user=reviewer, document_id=docs[0].pk, labels=["anger"])
    for user in (reviewer, manager):
        client = Client()
        client.force_login(user)
        page = client.get(f"/projects/{project.pk}/browse/", {"agreement_below": "1"}).content.decode()
        assert "doc-0" in page and "doc-1" not in page and f"/projects/{project.pk}/review/{docs[0].pk}/" in page
        assert ("Evaluation set" in page) == (user == manager)
    client = Client()
    client.force_login(reviewer)
    first = client.get(f"/projects/{project.pk}/browse/", {"label": "joy"}).content.decode()
    assert "next-page" not in first
    client.force_login(annotator_user)
    assert client.get(f"/projects/{project.pk}/browse/").status_code == 403


@pytest.mark.parametrize("rare_below", [0, 10**9], ids=["walk every document", "start from the label's documents"])
def test_label_filter_finds_the_same_pages_either_way(project, manager_client, answered, monkeypatch, rare_below):
    monkeypatch.setattr("annotator.selectors.browse.RARE_LABEL_POSITIVES", rare_below)
    assert _ids(_page(manager_client, project, label="joy")) == ["doc-0", "doc-2", "doc-4"]
    assert _ids(_page(manager_client, project, label="joy", annotator="annotator", limit=2)) == ["doc-0", "doc-2"]
    page = _page(manager_client, project, label="joy", after=Document.objects.get(external_id="doc-0").pk, limit=1)
    assert _ids(page) == ["doc-2"] and page["next"] is not None
    assert _ids(_page(manager_client, project, label="joy", annotator="reviewer")) == []
