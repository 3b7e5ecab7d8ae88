"""Every error the API answers is RFC 9457 problem details: `application/problem+json`, `type`, `title` (the reason
phrase), `status`, a one-line `detail`, `errors` when the request had several problems; Django's own 404 and 500
too under /api/, while the HTML pages keep theirs (annotator/api/errors.py, webapp/urls.py)."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.test import Client
from rest_framework import exceptions
from rest_framework.test import APIClient

from annotator import selectors
from annotator.api.errors import exception_handler, handler400, handler403

PROBLEM = "application/problem+json"
PASSWORD = "correct horse battery"


def _url(project, what: str) -> str:
    return f"/api/v1/projects/{project.pk}/{what}/"


def _problem(response, status: int, title: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = json.loads(response.content)
    assert body["type"] == "about:blank" and body["title"] == title and body["status"] == status, body
    assert isinstance(body["detail"], str) and body["detail"] and "\n" not in body["detail"], body
    return body


def test_a_platform_error_names_every_problem(project, manager_client):
    response = manager_client.post("/api/v1/projects/", {"name": "", "label_budget": -1}, format="json")
    body = _problem(response, 400, "Bad Request")
    assert body["detail"].startswith("invalid request: ")
    assert {e.split(":")[0] for e in body["errors"]} >= {"name", "label_budget"}


def test_a_platform_error_with_one_problem_has_its_detail(project, manager_client):
    body = _problem(manager_client.get(_url(project, "jobs"), {"kind": "bake"}), 400, "Bad Request")
    assert body["detail"].startswith("kind must be one of") and "errors" not in body


def test_not_logged_in_is_a_401_with_its_challenge(project):
    response = APIClient().get(_url(project, "next"))
    body = _problem(response, 401, "Unauthorized")
    assert response["WWW-Authenticate"] == "Token"
    assert "credentials were not provided" in body["detail"]


def test_a_bad_token_is_a_401_saying_so(project):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-key")
    response = client.get("/api/v1/projects/")
    assert "invalid or revoked token" in _problem(response, 401, "Unauthorized")["detail"]
    assert response["WWW-Authenticate"] == "Token"


def test_forbidden_for_the_role_and_without_csrf_are_403(project, annotator_user, annotator_client):
    _problem(annotator_client.get(_url(project, "members")), 403, "Forbidden")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(annotator_user)
    body = _problem(client.post(_url(project, "skip"), {"document": 1}, format="json"), 403, "Forbidden")
    assert "CSRF" in body["detail"]


def test_unknown_objects_are_404(project, manager_client):
    assert "not found" in _problem(manager_client.get(_url(project, "jobs") + "0/"), 404, "Not Found")["detail"]
    _problem(manager_client.get("/api/v1/projects/999999/"), 404, "Not Found")


def test_an_unknown_api_path_is_problem_details_and_an_unknown_page_is_html(manager_client):
    body = _problem(manager_client.get("/api/v1/no-such-thing/"), 404, "Not Found")
    assert "/api/v1/no-such-thing/" in body["detail"]
    _problem(manager_client.get("/api/v2/projects/"), 404, "Not Found")
    page = manager_client.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_method_media_type_and_parse_errors(project, manager_client):
    response = manager_client.delete("/api/v1/projects/")
    assert "DELETE" in _problem(response, 405, "Method Not Allowed")["detail"]
    assert "GET" in response["Allow"]
    response = manager_client.post("/api/v1/projects/", "name=x", content_type="text/plain")
    assert "text/plain" in _problem(response, 415, "Unsupported Media Type")["detail"]
    response = manager_client.post("/api/v1/projects/", "{not json", content_type="application/json")
    assert "JSON parse error" in _problem(response, 400, "Bad Request")["detail"]


def test_a_body_over_the_limit_is_a_413(project, manager_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    body = [{"id": f"d{i}", "text": "x" * 50} for i in range(10)]
    response = manager_client.post(_url(project, "documents"), body, format="json")
    assert "limit" in _problem(response, 413, "Request Entity Too Large")["detail"]


def test_throttled_token_requests_say_when_to_come_back(annotator_user):
    client = APIClient()
    for _ in range(10):  # "10/minute" (ALABEL_AUTH_RATE)
        client.post("/api/v1/auth/token/", {}, format="json")
    response = client.post("/api/v1/auth/token/", {"username": "annotator", "password": PASSWORD}, format="json")
    body = _problem(response, 429, "Too Many Requests")
    assert body["retry_after"] == int(response["Retry-After"]) > 0


def test_a_login_lockout_is_problem_details(annotator_user, settings):
    client = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/api/v1/auth/token/", {"username": "annotator", "password": "wrong"}, format="json")
    response = client.post("/api/v1/auth/token/", {"username": "annotator", "password": PASSWORD}, format="json")
    body = _problem(response, 429, "Too Many Requests")
    assert "Too many failed logins" in body["detail"] and body["retry_after"] == int(response["Retry-After"])


def test_a_server_error_under_the_api_is_problem_details(manager, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("a secret the client must not see")

    monkeypatch.setattr(selectors, "projects_for_user", broken)
    client = Client(raise_request_exception=False)
    client.force_login(manager)
    body = _problem(client.get("/api/v1/projects/"), 500, "Internal Server Error")
    assert "secret" not in body["detail"]


@pytest.mark.parametrize(
    ("detail", "expected_detail", "expected_errors"),
    [
        ({"name": ["too long"]}, "name: too long", ["name: too long"]),
        (
            {"name": ["required"], "labels": [{"name": ["blank"]}], "non_field_errors": ["clash"]},
            "invalid request: name: required; labels[0].name: blank; clash",
            ["name: required", "labels[0].name: blank", "clash"],
        ),
        (["one thing"], "one thing", None),
        (
            [{"text": ["empty"]}, {"id": ["taken"]}],
            "invalid request: item 1.text: empty; item 2.id: taken",
            ["item 1.text: empty", "item 2.id: taken"],
        ),
    ],
)
def test_validation_errors_are_flattened(detail, expected_detail, expected_errors):
    response = exception_handler(exceptions.ValidationError(detail), {})
    assert response is not None and response.status_code == 400 and response.content_type == PROBLEM
    assert response.data["detail"] == expected_detail
    assert response.data.get("errors") == expected_errors


def test_schema_describes_the_problem_answers(manager_client):
    schema = manager_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert set(schema["components"]["schemas"]["Problem"]["required"]) == {"type", "title", "status", "detail"}
    answers = schema["paths"]["/api/v1/projects/"]["get"]["responses"]
    assert answers["404"]["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert {"X-Total-Count", "Link"} <= set(answers["200"]["headers"])


def test_a_form_body_over_the_limit_is_a_413_before_any_login(db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    body = "username=annotator&password=" + "x" * 500
    response = APIClient().post("/api/v1/auth/token/", body, content_type="application/x-www-form-urlencoded")
    assert "limit" in _problem(response, 413, "Request Entity Too Large")["detail"]


def test_django_level_400_and_403_under_the_api_are_problem_details(rf):
    _problem(handler400(rf.get("/api/v1/projects/"), SuspiciousOperation("bad")), 400, "Bad Request")
    _problem(handler403(rf.get("/api/v1/projects/"), PermissionDenied()), 403, "Forbidden")
    assert handler400(rf.get("/accounts/login/"), SuspiciousOperation("bad"))["Content-Type"].startswith("text/html")
