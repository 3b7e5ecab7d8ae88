from __future__ import annotations

import csv
import io
import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from annotator import services
from annotator.importing import parse_records
from annotator.models import Annotation, Document, Job, Label, Project, QueueItem

from .conftest import client_for, make_user


def _url(project, what: str) -> str:
    return f"/api/v1/projects/{project.pk}/{what}/"


# --- authentication and permissions ---------------------------------------------------------------------------------
def test_anonymous_requests_are_refused(project):
    response = APIClient().get(_url(project, "next"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"  # says how to authenticate
    assert response.json()["detail"] == "Authentication credentials were not provided."


def test_the_api_answers_json_only_outside_debug(project, manager_client):
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = manager_client.get(f"/api/v1/projects/{project.pk}/", HTTP_ACCEPT=browser)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"  # no browsable API (HTML forms) in production
    assert manager_client.get(f"/api/v1/projects/{project.pk}/", HTTP_ACCEPT="text/html").status_code == 406


def test_token_authentication_works(project, annotator_user, documents):
    client = APIClient()
    token = client.post("/api/v1/auth/token/", {"username": "annotator", "password": "correct horse battery"})
    assert token.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    assert client.get(_url(project, "next")).status_code == 200


def test_session_posts_need_a_csrf_token(project, annotator_user, documents):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(annotator_user)
    response = client.post(_url(project, "annotations"), {"document": documents[0].pk, "labels": []}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Annotation.objects.exists()


def test_non_members_get_404_and_change_nothing(project, outsider, documents):
    client = client_for(outsider)
    for method, what, body in [
        ("get", "next", None),
        ("post", "annotations", {"document": documents[0].pk, "labels": ["joy"]}),
        ("post", "documents", [{"id": "x", "text": "y"}]),
        ("get", "export", None),
    ]:
        response = getattr(client, method)(_url(project, what), body, format="json")
        assert response.status_code == 404, what
        assert "not a member" in response.json()["detail"]
    assert not Annotation.objects.exists()
    assert not Document.objects.filter(external_id="x").exists()


@pytest.mark.parametrize(
    "method,what,body",
    [
        ("post", "documents", [{"id": "x", "text": "y"}]),
        ("post", "members", {"username": "annotator", "role": "manager"}),
        ("post", "train", None),
        ("get", "stats", None),
        ("get", "export", None),
        ("patch", "", {"label_budget": 5}),
    ],
)
def test_annotators_cannot_use_manager_endpoints(project, annotator_client, method, what, body):
    url = _url(project, what) if what else f"/api/v1/projects/{project.pk}/"
    response = getattr(annotator_client, method)(url, body, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "only managers of this project may do this"
    project.refresh_from_db()
    assert project.label_budget is None


# --- projects ---------------------------------------------------------------------------------------------------------
def test_create_project_with_labels_and_settings(manager_client):
    response = manager_client.post(
        "/api/v1/projects/",
        {"name": "New", "labels": ["a", "b"], "label_budget": 100, "retrain_every": 10, "strategy": "margin"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["label_budget"], body["retrain_every"], body["strategy"], body["role"]) == (
        100,
        10,
        "margin",
        "manager",
    )
    assert sorted(Label.objects.filter(project_id=body["id"]).values_list("name", flat=True)) == ["a", "b"]


def test_a_manager_picks_the_query_strategy_per_project(project, manager_client):
    from learner.strategies import DEFAULT_STRATEGY

    url = f"/api/v1/projects/{project.pk}/"
    assert manager_client.get(url).json()["strategy"] == "default"  # the measured default

    response = manager_client.patch(url, {"strategy": "cardinality+kmeans"}, format="json")

    assert response.status_code == 200, response.json()
    project.refresh_from_db()
    assert project.strategy == "cardinality+kmeans"
    for bad in ("modal_min_confidence", "entropy"):  # modAL's peers are simulator baselines only
        response = manager_client.patch(url, {"strategy": bad}, format="json")
        assert response.status_code == 400 and "strategy" in json.dumps(response.json())
    project.refresh_from_db()
    assert project.strategy == "cardinality+kmeans"
    schema = manager_client.get("/api/schema/").content.decode()
    assert DEFAULT_STRATEGY in schema and "cardinality+kmeans" in schema  # the choices are documented


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"label_budgte": 5}, "label_budgte", "unknown field; the fields you can change are: "),
        ({"label_budget": 5, "labels": ["x"]}, "labels", "unknown field"),
        ({"adapt_last": {}}, "adapt_last", "unknown field"),
    ],
)
def test_patch_refuses_fields_it_cannot_change(project, manager_client, body, field, message):
    response = manager_client.patch(f"/api/v1/projects/{project.pk}/", body, format="json")
    assert response.status_code == 400
    assert any(e.startswith(f"{field}: {message}") for e in response.json()["errors"]), response.json()
    project.refresh_from_db()
    assert project.label_budget is None and project.name == "Emotions"  # nothing of the request was applied


def test_patch_of_a_schedule_refuses_read_only_and_unknown_fields(project, manager_client):
    base = f"/api/v1/projects/{project.pk}/schedules/"
    schedule = manager_client.post(base, {"kind": "daily", "at": "02:00", "mode": "full"}, format="json").json()
    for body, field in [({"last_fired_at": "2026-01-01T00:00:00Z"}, "last_fired_at"), ({"hour": 3}, "hour")]:
        response = manager_client.patch(f"{base}{schedule['id']}/", {"at": "03:30", **body}, format="json")
        assert response.status_code == 400
        assert field in response.json()["detail"]
    assert manager_client.get(f"{base}{schedule['id']}/").json()["at"] == "02:00:00"
    assert manager_client.patch(f"{base}{schedule['id']}/", {"at": "03:30"}, format="json").status_code == 200


def test_project_creation_errors_are_clear(manager_client, annotator_client):
    response = manager_client.post("/api/v1/projects/", {"name": "X", "labels": ["a", "a"]}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == ["label 2 ('a'): listed twice"]
    response = annotator_client.post("/api/v1/projects/", {"name": "X"}, format="json")
    assert response.status_code == 403
    assert not Project.objects.filter(name="X").exists()


def test_add_member(project, manager_client, outsider):
    response = manager_client.post(
        _url(project, "members"), {"username": "outsider", "role": "annotator"}, format="json"
    )
    assert response.status_code == 201
    assert client_for(outsider).get(_url(project, "next")).status_code in (200, 204)


# --- import ---------------------------------------------------------------------------------------------------------
def test_import_json_list(project, manager_client):
    body = [{"id": "a", "text": "first", "labels": ["joy"]}, {"id": "b", "text": "second"}]
    response = manager_client.post(_url(project, "documents"), body, format="json")
    assert response.status_code == 201
    assert response.json() == {"documents": 2, "annotations": 1, "labels_created": 0, "preannotations": 0}


def test_import_jsonl_file(project, manager_client):
    data = b'{"id": "a", "text": "first"}\n{"id": "b", "text": "second", "labels": ["fear"]}\n'
    upload = SimpleUploadedFile("docs.jsonl", data, content_type="application/jsonl")
    response = manager_client.post(_url(project, "documents"), {"file": upload}, format="multipart")
    assert response.status_code == 201
    assert project.documents.count() == 2


def test_import_csv_file(project, manager_client):
    upload = SimpleUploadedFile("docs.csv", b"id,text,labels\na,first,joy|fear\nb,second,\n", content_type="text/csv")
    response = manager_client.post(_url(project, "documents"), {"file": upload}, format="multipart")
    assert response.status_code == 201
    annotation = Annotation.objects.get(document__external_id="a")
    assert sorted(annotation.labels.values_list("name", flat=True)) == ["fear", "joy"]


def test_malformed_import_lines_are_named_and_nothing_is_imported(project, manager_client):
    data = (
        b'{"id": "a", "text": "fine"}\n{"id": "b", "text": ""}\n{broken\n{"id": "d", "text": "x", "labels": ["love"]}\n'
    )
    upload = SimpleUploadedFile("docs.jsonl", data)
    response = manager_client.post(_url(project, "documents"), {"file": upload}, format="multipart")
    assert response.status_code == 400
    body = response.json()
    assert "nothing was imported" in body["detail"]
    assert [e.split(":")[0] for e in body["errors"]] == ["line 2", "line 3", "line 4"]
    assert "unknown label(s) 'love'" in body["errors"][2]
    assert not Document.objects.exists()


def test_empty_text_is_refused(project, manager_client):
    response = manager_client.post(_url(project, "documents"), [{"id": "a", "text": "   "}], format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == ['item 1: "text" is empty']
    assert not Document.objects.exists()


def test_oversized_upload_is_refused_before_parsing(project, manager_client, settings):
    settings.ALABEL_MAX_IMPORT_BYTES = 100
    upload = SimpleUploadedFile("docs.jsonl", b'{"id": "a", "text": "' + b"x" * 200 + b'"}\n')
    response = manager_client.post(_url(project, "documents"), {"file": upload}, format="multipart")
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert not Document.objects.exists()


def test_oversized_json_body_is_refused(project, manager_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    body = [{"id": f"d{i}", "text": "x" * 50} for i in range(10)]
    response = manager_client.post(_url(project, "documents"), body, format="json")
    assert response.status_code == 413
    assert not Document.objects.exists()


# --- labelling --------------------------------------------------------------------------------------------------------
def test_next_then_submit(project, annotator_client, documents):
    response = annotator_client.get(_url(project, "next"))
    assert response.status_code == 200
    served = response.json()
    assert served["strategy"] is None and served["model_version"] is None  # why it was picked: managers only
    assert served["document"]["text"].startswith("document number")
    response = annotator_client.post(
        _url(project, "annotations"),
        {"document": served["document"]["id"], "labels": ["joy", "fear"], "seconds_spent": 4.2},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["labels"] == ["fear", "joy"]


def test_next_is_204_when_the_budget_is_spent(project, annotator_client, documents):
    project.label_budget = 1
    project.save()
    served = annotator_client.get(_url(project, "next")).json()
    annotator_client.post(
        _url(project, "annotations"), {"document": served["document"]["id"], "labels": []}, format="json"
    )
    response = annotator_client.get(_url(project, "next"))
    assert response.status_code == 204
    assert response["X-Reason"] == "budget"


def test_next_serves_suggestions_with_scores(project, annotator_client, documents):
    project.decision_threshold = 0.5  # a manager's pre-tick threshold (without it nothing is pre-ticked before a model)
    project.save()
    joy, fear = Label.objects.get(name="joy"), Label.objects.get(name="fear")
    QueueItem.objects.create(
        project=project,
        document=documents[3],
        strategy="cold_start",
        score=1,
        suggestions=[[joy.pk, 0.91], [fear.pk, 0.2]],
    )
    served = annotator_client.get(_url(project, "next")).json()
    assert served["document"]["id"] == documents[3].pk
    assert served["suggestions"] == [
        {"label_id": joy.pk, "label": "joy", "description": "", "score": 0.91, "preselected": True},
        {"label_id": fear.pk, "label": "fear", "description": "", "score": 0.2, "preselected": False},
    ]
    assert served["pretick"] == {
        "threshold": 0.5,
        "precision": None,
        "floor": 0.7,
        "source": "set by a project manager",
    }
    annotator_client.post(_url(project, "annotations"), {"document": documents[3].pk, "labels": ["joy"]}, format="json")
    annotation = Annotation.objects.get(document=documents[3])
    assert annotation.suggestions == [
        {"label": "joy", "score": 0.91, "preselected": True},
        {"label": "fear", "score": 0.2, "preselected": False},
    ]
    assert annotation.strategy == "cold_start"


def _served_with(project, document, pairs):
    """Queues `document` with the model shortlist `pairs` [(label name, p), ...] (only it is served)."""
    ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
    QueueItem.objects.create(
        project=project,
        document=document,
        strategy="uncertainty",
        score=99,
        suggestions=[[ids[name], p] for name, p in pairs],
    )


# --- suggestions: accept, reject, revise ----------------------------------------------------------------------------
def test_each_shown_suggestion_records_what_the_expert_did(project, annotator_client, documents):
    project.suggestions_k = 3
    project.decision_threshold = 0.5  # pre-ticks at 0.5 (a manager's threshold)
    project.save()
    _served_with(project, documents[0], [("joy", 0.9), ("anger", 0.6), ("fear", 0.3), ("surprise", 0.1)])
    served = annotator_client.get(_url(project, "next")).json()
    assert [s["label"] for s in served["suggestions"]] == ["joy", "anger", "fear"]  # k = 3 of the 4 scored
    response = annotator_client.post(
        _url(project, "annotations"),
        {"document": documents[0].pk, "labels": ["joy", "sadness"], "rejected": ["anger"]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["labels"] == ["joy", "sadness"] and response.json()["rejected"] == ["anger"]
    annotation = Annotation.objects.get(document=documents[0])
    decisions = list(annotation.decisions.values_list("rank", "label__name", "score", "preselected", "decision"))
    assert decisions == [
        (1, "joy", 0.9, True, "accepted"),
        (2, "anger", 0.6, True, "rejected"),
        (3, "fear", 0.3, False, "not_chosen"),
    ]


@pytest.mark.parametrize(
    "labels,rejected,message",
    [
        (["joy"], ["joy"], "a label cannot be both chosen and rejected: 'joy'"),
        ([], ["sadness"], "only suggested labels can be rejected; not suggested for this document: 'sadness'"),
        ([], ["nope"], "unknown label(s) in rejected for this project: 'nope'"),
        ([], "joy", "rejected"),
    ],
)
def test_bad_rejections_are_clear_400s_and_change_nothing(
    project, annotator_client, documents, labels, rejected, message
):
    _served_with(project, documents[0], [("joy", 0.9), ("anger", 0.6)])
    annotator_client.get(_url(project, "next"))
    response = annotator_client.post(
        _url(project, "annotations"),
        {"document": documents[0].pk, "labels": labels, "rejected": rejected},
        format="json",
    )
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Annotation.objects.exists()
    assert QueueItem.objects.filter(document=documents[0]).exists()  # still in the queue


def test_undo_reopens_the_answer_and_a_revision_replaces_it_and_its_decisions(project, annotator_client, documents):
    _served_with(project, documents[0], [("joy", 0.9), ("anger", 0.6), ("fear", 0.3)])
    annotator_client.get(_url(project, "next"))
    annotator_client.post(
        _url(project, "annotations"),
        {"document": documents[0].pk, "labels": ["joy"], "rejected": ["fear"], "seconds_spent": 4},
        format="json",
    )
    detail = annotator_client.get(_url(project, f"annotations/{documents[0].pk}")).json()
    assert detail["document"]["text"] == documents[0].text and detail["labels"] == ["joy"]
    assert [(s["label"], s["decision"]) for s in detail["suggestions"]] == [
        ("joy", "accepted"),
        ("anger", "not_chosen"),
        ("fear", "rejected"),
    ]
    # The revision: the queue item is gone, so the decisions refer to the suggestions shown the first time.
    response = annotator_client.post(
        _url(project, "annotations"),
        {"document": documents[0].pk, "labels": ["anger", "sadness"], "rejected": ["joy"], "seconds_spent": 2},
        format="json",
    )
    assert response.status_code == 201, response.json()
    annotation = Annotation.objects.get(document=documents[0])
    assert sorted(annotation.labels.values_list("name", flat=True)) == ["anger", "sadness"]
    assert list(annotation.decisions.values_list("label__name", "decision")) == [
        ("joy", "rejected"),
        ("anger", "accepted"),
        ("fear", "not_chosen"),
    ]
    assert annotation.seconds_spent == 6  # the time revising adds to the first
    assert Label.objects.get(project=project, name="joy").frequency == 0
    assert Label.objects.get(project=project, name="anger").frequency == 1


def test_nobody_reads_another_annotators_answer(project, manager_client, annotator_client, documents):
    annotator_client.post(_url(project, "annotations"), {"document": documents[0].pk, "labels": []}, format="json")
    response = manager_client.get(_url(project, f"annotations/{documents[0].pk}"))
    assert response.status_code == 404
    assert "you have no answer for document" in response.json()["detail"]


# --- label search ---------------------------------------------------------------------------------------------------
def test_label_search_ranks_by_match_then_the_documents_scores_then_frequency(
    project, manager, manager_client, annotator_client, documents
):
    manager_client.post(
        _url(project, "labels"),
        [
            {"name": "Künstliche Intelligenz", "description": "KI"},
            "Geschichte der künstlichen Intelligenz",
            "Kunst",
            "Intelligenz",
        ],
        format="json",
    )
    # Frequency: "Intelligenz" is used twice, "Geschichte der künstlichen Intelligenz" once.
    for doc, labels in [
        (documents[5], ["Intelligenz"]),
        (documents[6], ["Intelligenz", "Geschichte der künstlichen Intelligenz"]),
    ]:
        manager_client.post(_url(project, "annotations"), {"document": doc.pk, "labels": labels}, format="json")
    found = annotator_client.get(_url(project, "labels"), {"q": "kunstliche int"}).json()
    # The name starting with the query first, however frequent the other match is.
    assert [x["name"] for x in found] == ["Künstliche Intelligenz", "Geschichte der künstlichen Intelligenz"]
    assert found[0]["description"] == "KI" and found[1]["frequency"] == 1 and found[1]["score"] is None
    assert found[0]["match"] == "name" and found[0]["alias"] == ""
    found = annotator_client.get(_url(project, "labels"), {"q": "INTELLIGENZ"}).json()
    assert found[0]["name"] == "Intelligenz"  # the exact match first
    # With the model's shortlist for a document, its scores order the labels within a tier, never across tiers.
    _served_with(project, documents[0], [("Künstliche Intelligenz", 0.7), ("joy", 0.2)])
    annotator_client.get(_url(project, "next"))
    found = annotator_client.get(_url(project, "labels"), {"q": "intelligenz", "document": documents[0].pk}).json()
    assert [(x["name"], x["score"]) for x in found] == [
        ("Intelligenz", None),
        ("Künstliche Intelligenz", 0.7),
        ("Geschichte der künstlichen Intelligenz", None),
    ]
    found = annotator_client.get(_url(project, "labels"), {"q": "kun", "limit": 1}).json()
    assert len(found) == 1


def test_label_search_rejects_a_bad_document_id(project, annotator_client):
    response = annotator_client.get(_url(project, "labels"), {"q": "j", "document": "x"})
    assert response.status_code == 400 and "document" in response.json()["detail"]


# --- leases ---------------------------------------------------------------------------------------------------------
def test_lease_renews_while_held_and_release_returns_the_document(project, manager, annotator_client, documents):
    second = make_user("second")
    services.member_add(project=project, username="second", role="annotator")
    served = annotator_client.get(_url(project, "next")).json()
    doc = served["document"]["id"]
    item = QueueItem.objects.get(document_id=doc)
    renewed = annotator_client.post(_url(project, "lease"), {"document": doc}, format="json").json()
    assert renewed["held"] is True and renewed["lease_expires_at"] >= served["lease_expires_at"]
    # Another annotator cannot take it over while it is held.
    other = client_for(second)
    assert other.post(_url(project, "lease"), {"document": doc}, format="json").json()["held"] is False
    assert other.get(_url(project, "next")).json()["document"]["id"] != doc
    annotator_client.post(_url(project, "lease"), {"document": doc, "action": "release"}, format="json")
    item.refresh_from_db()
    assert item.leased_to is None
    other.post(
        _url(project, "skip"), {"document": other.get(_url(project, "next")).json()["document"]["id"]}, format="json"
    )
    assert other.get(_url(project, "next")).json()["document"]["id"] == doc


@pytest.mark.parametrize(
    "body,message",
    [
        ({"labels": ["joy"]}, "document"),
        ({"document": "abc", "labels": []}, "document"),
        ({"document": 1}, "labels"),
        ({"document": 1, "labels": "joy"}, "labels"),
        ({"document": 1, "labels": [], "seconds_spent": -1}, "seconds_spent"),
    ],
)
def test_malformed_annotations_are_clear_400s(project, annotator_client, documents, body, message):
    response = annotator_client.post(_url(project, "annotations"), body, format="json")
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Annotation.objects.exists()


def test_unknown_label_is_a_400_naming_it(project, annotator_client, documents):
    response = annotator_client.post(
        _url(project, "annotations"), {"document": documents[0].pk, "labels": ["joy", "nope"]}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "unknown label(s) for this project: 'nope'"
    assert not Annotation.objects.exists()


def test_document_of_another_project_is_a_400(project, manager, manager_client, annotator_client, documents):
    other = manager_client.post("/api/v1/projects/", {"name": "Other", "labels": ["joy"]}, format="json").json()
    manager_client.post(f"/api/v1/projects/{other['id']}/documents/", [{"id": "z", "text": "t"}], format="json")
    foreign = Document.objects.get(project_id=other["id"])
    response = annotator_client.post(
        _url(project, "annotations"), {"document": foreign.pk, "labels": []}, format="json"
    )
    assert response.status_code == 400
    assert "is not in project" in response.json()["detail"]
    assert not Annotation.objects.exists()


def test_label_search_endpoint(project, annotator_client):
    response = annotator_client.get(_url(project, "labels"), {"q": "SAD"})
    assert [label["name"] for label in response.json()] == ["sadness"]


def test_skip_endpoint(project, annotator_client, documents):
    served = annotator_client.get(_url(project, "next")).json()
    response = annotator_client.post(_url(project, "skip"), {"document": served["document"]["id"]}, format="json")
    assert response.status_code == 204
    assert annotator_client.get(_url(project, "next")).json()["document"]["id"] != served["document"]["id"]


# --- manager endpoints ------------------------------------------------------------------------------------------------
def test_train_now_needs_labels_then_queues_one_job(project, manager_client, annotator_client, documents):
    response = manager_client.post(_url(project, "train"))
    assert response.status_code == 400
    assert "nothing to train on" in response.json()["detail"]
    annotator_client.post(_url(project, "annotations"), {"document": documents[0].pk, "labels": ["joy"]}, format="json")
    first = manager_client.post(_url(project, "train"))
    second = manager_client.post(_url(project, "train"))
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert Job.objects.filter(project=project, kind="train").count() == 1


def test_stats_show_budget_counts_and_jobs(project, manager_client, annotator_client, documents):
    project.label_budget = 10
    project.save()
    annotator_client.post(_url(project, "annotations"), {"document": documents[0].pk, "labels": ["joy"]}, format="json")
    stats = manager_client.get(_url(project, "stats")).json()
    budget = stats["budget"]
    assert {k: budget[k] for k in ("label_budget", "spent", "remaining", "in_progress", "exhausted", "mode")} == {
        "label_budget": 10,
        "spent": 1,
        "remaining": 9,
        "in_progress": 0,
        "exhausted": False,
        "mode": "hard",
    }
    # One document in the project's first minute, counted over an hour (not over a week): 24 a day.
    assert budget["percent_spent"] == 10.0 and budget["burn_rate_per_day"] == 24.0
    assert (stats["documents"], stats["annotated_documents"], stats["model_version"]) == (30, 1, None)
    assert stats["jobs"]["encode"]["status"] == "PENDING"


def test_export_jsonl_and_csv_hold_exactly_the_labelled_documents(project, manager_client, annotator_client, documents):
    for doc, labels in [(documents[0], ["joy"]), (documents[1], []), (documents[2], ["fear", "anger"])]:
        annotator_client.post(_url(project, "annotations"), {"document": doc.pk, "labels": labels}, format="json")
    response = manager_client.get(_url(project, "export"), {"format": "jsonl"})
    assert response.status_code == 200
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [(r["id"], r["labels"]) for r in rows] == [
        ("doc-0", ["joy"]),
        ("doc-1", []),
        ("doc-2", ["anger", "fear"]),
    ]
    response = manager_client.get(_url(project, "export"), {"format": "csv"})
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == (
        "id,text,labels,labels_from,gold_reviewer,annotator,annotated_at,evaluation,answers,seconds_spent"
    )
    assert ",anger|fear,single,,annotator," in lines[3]
    assert manager_client.get(_url(project, "export"), {"format": "xml"}).status_code == 400


def test_openapi_schema_is_served(manager_client):
    response = manager_client.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/projects/{project_id}/next/" in response.content
    for path in (
        "stats/",
        "learning-curve/",
        "models/",
        "models/compare/",
        "models/{number}/promote/",
        "annotators/",
        "labels/coverage/",
        "lease/",
        "annotations/{document_id}/",
    ):
        assert f"/api/v1/projects/{{project_id}}/{path}".encode() in response.content, path


def test_hot_endpoints_use_a_bounded_number_of_queries(
    project, annotator_client, documents, django_assert_max_num_queries
):
    labels = list(Label.objects.filter(project=project))
    for rank, doc in enumerate(documents[:10]):
        QueueItem.objects.create(
            project=project,
            document=doc,
            strategy="cold_start",
            score=rank,
            suggestions=[[label.pk, 0.9 - 0.1 * i] for i, label in enumerate(labels)],
        )
    with django_assert_max_num_queries(15):  # 14 + the re-check, once locked, that nobody answered it meanwhile
        served = annotator_client.get(_url(project, "next")).json()
    # 25 + the member's quota, read on a first answer (issue 16) + issue 18's audit row and the document's answer count
    # (raised, then read to decide whether it leaves the queue) + issue 19's webhook look-up.
    with django_assert_max_num_queries(30):
        response = annotator_client.post(
            _url(project, "annotations"),
            {"document": served["document"]["id"], "labels": [label.name for label in labels]},
            format="json",
        )
    assert response.status_code == 201


def test_the_page_close_beacon_releases_the_lease_with_the_forms_csrf_token(project, annotator_user, documents):
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator_user)
    page = client.get(f"/projects/{project.pk}/annotate/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    doc = client.get(_url(project, "next")).json()["document"]["id"]
    refused = client.post(_url(project, "lease"), {"document": doc, "action": "release"})
    assert refused.status_code == 403 and QueueItem.objects.get(document_id=doc).leased_to == annotator_user
    response = client.post(_url(project, "lease"), {"document": doc, "action": "release", "csrfmiddlewaretoken": token})
    assert response.status_code == 200 and response.json()["held"] is False
    assert QueueItem.objects.get(document_id=doc).leased_to is None


# --- bad input: a clear 400 naming what is wrong, and nothing changes (issue 16) --------------------------------------
NUL = "\\u0000"  # as JSON spells it: the request body is sent as it is written here


@pytest.mark.parametrize(
    "body,problem",
    [
        ('[{"id": "a", "text": "nul ' + NUL + ' inside"}]', '"text" contains a NUL character'),
        ('[{"id": "a' + NUL + '", "text": "fine"}]', '"id" contains a NUL character'),
        ('[{"id": "a", "text": "fine", "metadata": {"k": "' + NUL + '"}}]', '"metadata" contains a NUL character'),
        ('[{"id": "a", "text": "lone \\ud800"}]', '"text" contains an unpaired surrogate'),
    ],
)
def test_import_of_text_the_database_cannot_store_is_a_400(project, manager_client, body, problem):
    response = manager_client.post(_url(project, "documents"), body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0].startswith(f"item 1: {problem}")
    assert not Document.objects.exists()


@pytest.mark.parametrize(
    "name,data,error",
    [
        ("docs.csv", b"id,text\nc1,bad\x00cell\n", 'line 2: "text" contains a NUL character'),
        ("docs.csv", b'c1,hi\nc2,"unterminated\nc3,bye\n', "line 2: a quoted field"),
        ("docs.jsonl", b'{"id": "a", "text": "' + b"x" * 101 + b'"}\n', 'line 1: "text" is 101 characters long'),
    ],
)
def test_a_bad_import_file_is_a_400_naming_the_line(project, manager_client, settings, name, data, error):
    settings.ALABEL_MAX_DOCUMENT_CHARS = 100
    upload = SimpleUploadedFile(name, data)
    response = manager_client.post(_url(project, "documents"), {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert response.json()["errors"][0].startswith(error)
    assert not Document.objects.exists()


@pytest.mark.parametrize(
    "body,problem",
    [
        ('["jo' + NUL + 'y2"]', "label 1: the name contains a NUL character"),
        ('[{"name": "calm", "description": "' + NUL + '"}]', "label 1: the description contains a NUL character"),
        ('["lone \\ud800"]', "label 1: the name contains an unpaired surrogate"),
    ],
)
def test_labels_the_database_cannot_store_are_a_400(project, manager_client, body, problem):
    before = Label.objects.count()
    response = manager_client.post(_url(project, "labels"), body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0].startswith(problem)
    created = manager_client.post(
        "/api/v1/projects/", '{"name": "P", "labels": ' + body + "}", content_type="application/json"
    )
    assert created.status_code == 400 and created.json()["errors"][0].startswith(problem)
    assert Label.objects.count() == before and Project.objects.count() == 1


@pytest.mark.parametrize(
    "what,params,message",
    [
        ("labels", {"q": "jo\x00"}, "q contains a NUL character"),
        ("labels/coverage", {"q": "jo\x00"}, "q contains a NUL character"),
        ("labels/coverage", {"offset": str(10**20)}, "offset must be an integer from 0 to 2147483647"),
        ("labels/coverage", {"max_positives": "²"}, "max_positives must be an integer"),
        ("labels", {"document": "²"}, "document must be an integer"),
    ],
)
def test_bad_query_parameters_are_a_400_naming_them(project, manager_client, what, params, message):
    response = manager_client.get(_url(project, what), params)
    assert response.status_code == 400
    assert response.json()["detail"] == message or response.json()["detail"].startswith(message)


@pytest.mark.parametrize("field", ["label_budget", "retrain_every", "lease_seconds"])
def test_settings_beyond_the_database_column_are_a_400(project, manager_client, field):
    before = Project.objects.values().get(pk=project.pk)
    response = manager_client.patch(f"/api/v1/projects/{project.pk}/", {field: 2**31}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"invalid request: {field}: Ensure this value is less than or equal")
    assert Project.objects.values().get(pk=project.pk) == before
    created = manager_client.post("/api/v1/projects/", {"name": "P", field: 2**31}, format="json")
    assert created.status_code == 400 and field in created.json()["detail"]
    assert Project.objects.count() == 1


def test_a_quota_or_schedule_interval_beyond_the_database_column_is_a_400(project, manager_client, annotator_user):
    response = manager_client.post(
        _url(project, "members"),
        {"username": annotator_user.username, "role": "annotator", "quota": 2**31},
        format="json",
    )
    assert response.status_code == 400 and "quota: Ensure" in response.json()["detail"]
    assert project.memberships.get(user=annotator_user).quota is None
    response = manager_client.post(
        _url(project, "schedules"), {"kind": "interval", "every": 10**12, "unit": "hours"}, format="json"
    )
    assert response.status_code == 400 and "every: Ensure" in response.json()["detail"]
    assert not project.schedules.exists()


def test_the_schedule_time_served_is_what_the_schema_declares(project, manager_client):
    """Issue 16: `at` was served as "03:00:00" while the schema said `format: time` (RFC 3339: with an offset)."""
    created = manager_client.post(_url(project, "schedules"), {"kind": "daily", "at": "03:00"}, format="json").json()
    schema = json.loads(manager_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    declared = schema["components"]["schemas"]["Schedule"]["properties"]["at"]
    assert "format" not in declared
    assert re.fullmatch(declared["pattern"], created["at"])
    offset = manager_client.post(_url(project, "schedules"), {"kind": "daily", "at": "03:00+02:00"}, format="json")
    assert offset.status_code == 400 and "at:" in offset.json()["detail"]


def test_the_csv_export_never_writes_a_spreadsheet_formula(project, manager, manager_client):
    formula = "=cmd|' /C calc'!A0"
    services.documents_import(
        project=project,
        user=manager,
        records=parse_records([{"id": "@x", "text": formula, "labels": ["joy"]}, {"id": "plain", "text": "-1+2"}])[0],
    )
    response = manager_client.get(_url(project, "export"), {"format": "csv", "include_unlabelled": "1"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row[:3] for row in rows[1:]] == [["'@x", "'" + formula, "joy"], ["plain", "'-1+2", ""]]
