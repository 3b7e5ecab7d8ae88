"""Review and adjudication (annotator.selectors.review, annotator.services.adjudication, annotator.api.review and the
review pages): the queue, gold answers with their audit rows, validation, the permission matrix, and gold through
label merges and into the training snapshot."""

from __future__ import annotations

import pytest
from django.test import Client

from annotator import selectors, services
from annotator.exceptions import NotFound, PermissionDenied, ProjectError
from annotator.models import Adjudication, AdjudicationLabel, AuditEntry, Document, Label
from annotator.services.adjudication import adjudication_delete, adjudication_save
from annotator.services.taxonomy import label_merge

from .conftest import client_for, make_user, records


@pytest.fixture
def reviewer(project, manager):
    user = make_user("reviewer")
    services.member_add(project=project, username="reviewer", role="reviewer", user=manager)
    return user


@pytest.fixture
def disagreements(project, manager, annotator_user):
    """doc-0: joy vs anger (agreement 0); doc-1: joy+fear vs joy (0.5); doc-2: both joy (1.0); doc-3: one answer."""
    services.documents_import(project=project, user=manager, records=records(5))
    second = make_user("annotator2")
    services.member_add(project=project, username="annotator2", role="annotator", user=manager)
    docs = list(Document.objects.filter(project=project).order_by("id"))
    answers = {0: (["joy"], ["anger"]), 1: (["joy", "fear"], ["joy"]), 2: (["joy"], ["joy"]), 3: (["sadness"], None)}
    for index, (first, other) in answers.items():
        services.annotation_submit(project=project, user=annotator_user, document_id=docs[index].pk, labels=first)
        if other is not None:
            services.annotation_submit(project=project, user=second, document_id=docs[index].pk, labels=other)
    return docs


def _gold(document) -> set[str]:
    return set(AdjudicationLabel.objects.filter(adjudication__document=document).values_list("label__name", flat=True))


def test_queue_holds_disagreements_without_gold_worst_first(project, disagreements, reviewer):
    docs = disagreements
    page = selectors.review_queue(project=project)
    assert [d["external_id"] for d in page["documents"]] == ["doc-0", "doc-1"]
    assert page["documents"][0]["agreement"] == 0 and page["documents"][1]["agreement"] == pytest.approx(0.5)
    assert page["remaining"] == 2
    first = selectors.review_queue(project=project, limit=1)
    assert [d["external_id"] for d in first["documents"]] == ["doc-0"] and first["next"] == docs[0].pk
    second = selectors.review_queue(project=project, after=first["next"], limit=1)
    assert [d["external_id"] for d in second["documents"]] == ["doc-1"] and second["next"] is None
    adjudication_save(project=project, reviewer=reviewer, document_id=docs[0].pk, labels=["joy"])
    assert [d["external_id"] for d in selectors.review_queue(project=project)["documents"]] == ["doc-1"]


def test_review_item_shows_answers_votes_and_prechecks_the_strict_majority(project, disagreements, reviewer):
    item = selectors.review_item(project=project, document_id=disagreements[1].pk)
    assert [a["annotator"] for a in item["answers"]] == ["annotator", "annotator2"]
    assert item["answers"][0]["labels"] == ["fear", "joy"] and "suggestions" in item["answers"][0]
    votes = {v["label"]: v for v in item["votes"]}
    assert votes["joy"]["votes"] == 2 and votes["joy"]["majority"] and votes["joy"]["checked"]
    assert votes["fear"]["votes"] == 1 and not votes["fear"]["majority"] and not votes["fear"]["checked"]
    assert item["gold"] is None
    adjudication_save(project=project, reviewer=reviewer, document_id=disagreements[1].pk, labels=["fear"])
    item = selectors.review_item(project=project, document_id=disagreements[1].pk)
    votes = {v["label"]: v for v in item["votes"]}
    assert votes["fear"]["checked"] and not votes["joy"]["checked"]  # the gold's labels, not the majority's
    assert item["gold"]["labels"] == ["fear"] and item["gold"]["reviewer"] == "reviewer"
    with pytest.raises(NotFound):
        selectors.review_item(project=project, document_id=10**9)


def test_gold_save_update_delete_write_audit_rows(project, disagreements, reviewer, manager):
    doc = disagreements[0]
    gold = adjudication_save(project=project, reviewer=reviewer, document_id=doc.pk, labels=["joy"], note="clear")
    assert _gold(doc) == {"joy"} and gold.reviewer == reviewer and gold.note == "clear"
    adjudication_save(project=project, reviewer=reviewer, document_id=doc.pk, labels=["joy"], note="clear")
    adjudication_save(project=project, reviewer=manager, document_id=doc.pk, labels=["anger", "joy"], note="clear")
    gold.refresh_from_db()
    assert _gold(doc) == {"anger", "joy"} and gold.reviewer == manager
    adjudication_delete(project=project, reviewer=manager, document_id=doc.pk)
    assert not Adjudication.objects.filter(document=doc).exists()
    rows = list(AuditEntry.objects.filter(project=project, target="gold").order_by("id"))
    assert [(r.action, r.username) for r in rows] == [
        ("create", "reviewer"),
        ("update", "manager"),  # saving the same labels and note again wrote nothing
        ("delete", "manager"),
    ]
    assert rows[0].before is None and rows[0].after == {"labels": ["joy"], "note": "clear"}
    assert rows[1].before == {"labels": ["joy"], "note": "clear"}
    assert rows[1].after == {"labels": ["anger", "joy"], "note": "clear"}
    assert rows[2].after is None and str(doc.pk) in rows[2].object_ref


def test_bad_gold_requests_change_nothing(project, disagreements, reviewer, manager, annotator_user):
    doc = disagreements[0]
    adjudication_save(project=project, reviewer=reviewer, document_id=doc.pk, labels=["joy"])
    audit_rows = AuditEntry.objects.count()
    other = services.project_create(user=manager, name="Other", labels=["joy"], eval_size=0)
    services.documents_import(project=other, user=manager, records=records(1, start=50))
    foreign = Document.objects.get(project=other)
    for kwargs, error, message in (
        ({"labels": ["joy", "<b>nope</b>", "also-nope"]}, ProjectError, "'<b>nope</b>', 'also-nope'"),
        ({"labels": "joy"}, ProjectError, "labels must be a list"),
        ({"labels": ["joy"], "note": "x" * 2001}, ProjectError, "at most 2000"),
        ({"labels": ["joy"], "note": "a\x00b"}, ProjectError, "NUL"),
        ({"labels": ["joy"], "document_id": foreign.pk}, NotFound, "not found in this project"),
        ({"labels": ["joy"], "document_id": "x"}, ProjectError, "document_id must be an integer"),
        ({"labels": ["joy"], "reviewer": annotator_user}, PermissionDenied, "only reviewers and managers"),
    ):
        arguments = {"project": project, "reviewer": reviewer, "document_id": doc.pk, "note": "", **kwargs}
        with pytest.raises(error, match=message):
            adjudication_save(**arguments)
    assert _gold(doc) == {"joy"} and AuditEntry.objects.count() == audit_rows
    with pytest.raises(NotFound, match="no gold answer"):
        adjudication_delete(project=project, reviewer=reviewer, document_id=disagreements[1].pk)


def test_gold_does_not_count_against_budgets_or_quotas(project, disagreements, reviewer, manager):
    before = selectors.member_spent(project=project, user=reviewer)
    spent = selectors.budget_for(project=project).spent
    adjudication_save(project=project, reviewer=reviewer, document_id=disagreements[4].pk, labels=["joy"])
    assert selectors.member_spent(project=project, user=reviewer) == before
    assert selectors.budget_for(project=project).spent == spent


def test_merge_keeps_gold_on_the_kept_label(project, disagreements, reviewer, manager):
    doc, other = disagreements[0], disagreements[1]
    adjudication_save(project=project, reviewer=reviewer, document_id=doc.pk, labels=["joy", "anger"])
    adjudication_save(project=project, reviewer=reviewer, document_id=other.pk, labels=["anger"])
    anger, joy = Label.objects.get(project=project, name="anger"), Label.objects.get(project=project, name="joy")
    label_merge(project=project, user=manager, label_id=anger.pk, into_id=joy.pk)
    assert _gold(doc) == {"joy"} and _gold(other) == {"joy"}
    merge = AuditEntry.objects.filter(project=project, target="label", action="delete").get()
    assert merge.after["gold_moved"] == 2 and merge.before["name"] == "anger"


def test_adjudication_changes_the_training_snapshot(project, disagreements, reviewer):
    doc = disagreements[0]
    label_name = dict(Label.objects.filter(project=project).values_list("id", "name"))

    def labels_of_doc() -> set[str]:
        doc_ids, _, rows = selectors.training_snapshot(project)
        return {label_name[label_id] for label_id in rows[doc_ids.index(doc.pk)]}

    assert labels_of_doc() in ({"joy"}, {"anger"})  # no majority: the latest answer
    adjudication_save(project=project, reviewer=reviewer, document_id=doc.pk, labels=["fear", "surprise"])
    assert labels_of_doc() == {"fear", "surprise"}  # gold wins over every answer


# The API and the pages: annotator 403, reviewer and manager OK, outsider 404 -----------------------------------


def _api_calls(project, doc):
    base = f"/api/v1/projects/{project.pk}"
    return [
        ("get", f"{base}/review/", None),
        ("get", f"{base}/documents/{doc.pk}/", None),
        ("put", f"{base}/documents/{doc.pk}/gold/", {"labels": ["joy"], "note": "n"}),
        ("delete", f"{base}/documents/{doc.pk}/gold/", None),
    ]


def test_api_permission_matrix(project, disagreements, reviewer, manager, annotator_user, outsider):
    doc = disagreements[0]
    for user, expected in ((annotator_user, 403), (outsider, 404)):
        client = client_for(user)
        for method, url, body in _api_calls(project, doc):
            response = getattr(client, method)(url, body, format="json")
            assert response.status_code == expected, (user.username, method, url, response.content)
        assert client.get(f"/api/v1/projects/{project.pk}/audit/").status_code == expected
    assert not Adjudication.objects.exists()
    for user in (reviewer, manager):
        client = client_for(user)
        statuses = [
            getattr(client, m)(url, body, format="json").status_code for m, url, body in _api_calls(project, doc)
        ]
        assert statuses == [200, 200, 200, 204], user.username
    assert client_for(reviewer).get(f"/api/v1/projects/{project.pk}/audit/").status_code == 403
    assert client_for(manager).get(f"/api/v1/projects/{project.pk}/audit/").status_code == 200


def test_api_queue_item_and_gold(project, disagreements, reviewer):
    client = client_for(reviewer)
    base = f"/api/v1/projects/{project.pk}"
    queue = client.get(f"{base}/review/", {"limit": 1}).json()
    assert queue["documents"][0]["external_id"] == "doc-0" and queue["remaining"] == 2
    assert client.get(f"{base}/review/", {"after": queue["next"]}).json()["documents"][0]["external_id"] == "doc-1"
    doc = disagreements[0]
    response = client.put(f"{base}/documents/{doc.pk}/gold/", {"labels": ["nope"]}, format="json")
    assert response.status_code == 400 and "unknown label(s)" in response.json()["detail"]
    response = client.put(f"{base}/documents/{doc.pk}/gold/", {"labels": ["anger"], "note": "n"}, format="json")
    assert response.status_code == 200 and response.json()["gold"]["labels"] == ["anger"]
    assert client.get(f"{base}/review/").json()["remaining"] == 1
    assert client.get(f"{base}/documents/{10**9}/").status_code == 404
    assert client.delete(f"{base}/documents/{disagreements[1].pk}/gold/").status_code == 404


def test_pages_permission_matrix(project, disagreements, reviewer, manager, annotator_user, outsider):
    doc = disagreements[0]
    pages = [f"/projects/{project.pk}/browse/", f"/projects/{project.pk}/review/{doc.pk}/"]
    for user, expected in ((annotator_user, 403), (outsider, 404)):
        client = Client()
        client.force_login(user)
        for url in [*pages, f"/projects/{project.pk}/review/", f"/projects/{project.pk}/audit/"]:
            assert client.get(url).status_code == expected, (user.username, url)
        assert client.post(pages[1], {"labels": ["joy"]}).status_code == expected
    assert not Adjudication.objects.exists()
    for user in (reviewer, manager):
        client = Client()
        client.force_login(user)
        for url in pages:
            assert client.get(url).status_code == 200, (user.username, url)
        response = client.get(f"/projects/{project.pk}/review/")
        assert response.status_code == 302 and response["Location"].endswith(f"/review/{doc.pk}/")
    reviewer_client = Client()
    reviewer_client.force_login(reviewer)
    assert reviewer_client.get(f"/projects/{project.pk}/audit/").status_code == 403


def test_review_page_saves_gold_moves_on_and_escapes(project, disagreements, reviewer):
    Label.objects.filter(project=project, name="anger").update(name="<b>anger</b>")
    doc = disagreements[0]
    client = Client()
    client.force_login(reviewer)
    page = client.get(f"/projects/{project.pk}/review/{doc.pk}/").content.decode()
    assert "&lt;b&gt;anger&lt;/b&gt;" in page and "<b>anger</b>" not in page
    response = client.post(
        f"/projects/{project.pk}/review/{doc.pk}/", {"labels": ["<b>anger</b>"], "labels_extra": "fear\n", "note": "x"}
    )
    assert response.status_code == 302 and response["Location"].endswith(f"/projects/{project.pk}/review/")
    assert _gold(doc) == {"<b>anger</b>", "fear"}
    response = client.post(f"/projects/{project.pk}/review/{doc.pk}/", {"labels": ["unknown"]})
    assert response.status_code == 200 and "unknown label(s)" in response.content.decode()
    assert _gold(doc) == {"<b>anger</b>", "fear"}
    adjudication_save(project=project, reviewer=reviewer, document_id=disagreements[1].pk, labels=["joy"])
    assert "Nothing to review" in client.get(f"/projects/{project.pk}/review/").content.decode()


def test_a_project_with_gold_can_be_deleted(project, disagreements, reviewer, manager):
    adjudication_save(project=project, reviewer=reviewer, document_id=disagreements[0].pk, labels=["joy"])
    services.project_delete(project=project, user=manager, confirm=project.name)
    assert not Adjudication.objects.exists() and not AdjudicationLabel.objects.exists()


def test_the_project_list_leads_reviewers_to_review_and_browse_but_not_annotators(db):
    boss = make_user("boss", can_create=True)
    project = services.project_create(user=boss, name="Listed", labels=["joy"], eval_size=0)
    reviewer, annotator = make_user("rev"), make_user("ann")
    services.member_add(project=project, username="rev", role="reviewer")
    services.member_add(project=project, username="ann", role="annotator")
    link = f'href="/projects/{project.pk}/review/"'.encode()
    assert link in client_for(reviewer).get("/").content
    assert link not in client_for(annotator).get("/").content
