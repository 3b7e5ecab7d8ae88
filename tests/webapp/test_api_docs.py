"""docs/api.md keeps up with the API: every endpoint (path and method) of annotator/api/urls.py has a `curl` example,
and the documented `GET` examples answer 2xx when run against a live server with the ids of a small project."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from celery import Celery
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import resolve
from django.utils import timezone

from annotator import services
from annotator.api import urls
from annotator.importing import ImportRecord
from annotator.models import Job, ModelVersion

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
METHODS = ("get", "post", "put", "patch", "delete")
API_PREFIX = "/api/v1/"


def _curl_commands(text: str) -> list[str]:
    """The `curl` command lines of the document that call `$API` (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ") and "$API/" in line]


def _parse(command: str, values: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    """(method, URL, headers) of a curl command, its $VARIABLES replaced by `values`."""
    command = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), command)
    tokens = shlex.split(command, comments=True)
    method, url, headers, has_body = "", "", {}, False
    index = 1
    while index < len(tokens):
        token = tokens[index]
        if token in ("-X", "--request"):
            method = tokens[index + 1]
            index += 1
        elif token in ("-H", "--header"):
            name, _, value = tokens[index + 1].partition(":")
            headers[name.strip()] = value.strip()
            index += 1
        elif token in ("-d", "--data", "-F", "--form", "-o", "--output"):
            has_body = has_body or token not in ("-o", "--output")
            index += 1
        elif token.startswith("http"):
            url = token
        index += 1
    return method or ("POST" if has_body else "GET"), url, headers


def _endpoints() -> set[tuple[str, str]]:
    """(URL name, method) of every operation annotator/api/urls.py serves."""
    found = set()
    for pattern in urls.urlpatterns:
        view = pattern.callback.view_class
        found |= {(pattern.name, method.upper()) for method in METHODS if hasattr(view, method)}
    return found


def _documented(values: dict[str, str]) -> dict[tuple[str, str], list[str]]:
    """(URL name, method) -> the example URLs of docs/api.md that call it."""
    found: dict[tuple[str, str], list[str]] = {}
    for command in _curl_commands(DOCS.read_text()):
        method, url, _ = _parse(command, values)
        path = urlsplit(url).path
        assert path.startswith(API_PREFIX), command
        found.setdefault((resolve(path).url_name, method), []).append(url)
    return found


IDS = {
    "API": "http://testserver/api/v1",
    "AUTH": "Authorization: Token x",
    "PROJECT": "1",
    "DOC": "2",
    "LABEL": "3",
    "OTHER": "4",
    "JOB": "5",
    "SCHEDULE": "6",
    "HOOK": "7",
    "TOKEN_ID": "8",
    "VERSION": "1",
    "MEMBER": "ana",
}


def test_every_endpoint_has_an_example():
    documented = _documented(IDS)
    missing = sorted(f"{method} {name}" for name, method in _endpoints() - set(documented))
    assert not missing, "endpoints without a curl example in docs/api.md: " + ", ".join(missing)


@pytest.fixture
def small_project(transactional_db, monkeypatch):
    """A manager's project with documents, an answer, two model versions, a job, a schedule, a hook and tokens."""
    monkeypatch.setattr(Celery, "send_task", lambda self, *args, **kwargs: None)  # no broker in this test
    users = get_user_model().objects
    manager = users.create_user(username="demo-manager", password="correct horse battery")
    manager.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    users.create_user(username="ana", password="correct horse battery")
    project = services.project_create(
        user=manager, name="Emotions", labels=["joy", "anger", "fear"], retrain_every=1000, eval_size=0
    )
    services.member_add(project=project, username="ana", role="annotator")
    records = [
        ImportRecord(line=i + 1, external_id=f"d{i}", text=f"document {i} about joy", labels=None) for i in range(6)
    ]
    services.documents_import(project=project, user=manager, records=records)
    documents = list(project.documents.order_by("id"))
    services.annotation_submit(project=project, user=manager, document_id=documents[0].pk, labels=["joy"])
    for number in (1, 2):
        ModelVersion.objects.create(
            project=project,
            number=number,
            is_serving=number == 2,
            artifact_path=f"x/v{number}",
            n_annotations=1,
            n_labels=3,
            data_cutoff=timezone.now(),
        )
    job = Job.objects.create(project=project, kind="train", status="SUCCEEDED")
    schedule = services.schedule_save(project=project, data={"kind": "daily", "at": "02:00", "mode": "full"})
    hook = services.webhook_create(project=project, user=manager, url="https://example.org/hook", events=["job.failed"])
    token, key = services.token_create(user=manager, name="docs")
    labels = dict(project.labels.values_list("name", "pk"))
    return {
        "AUTH": f"Authorization: Token {key}",
        "PROJECT": str(project.pk),
        "DOC": str(documents[0].pk),
        "LABEL": str(labels["joy"]),
        "OTHER": str(labels["anger"]),
        "JOB": str(job.pk),
        "SCHEDULE": str(schedule.pk),
        "HOOK": str(hook.pk),
        "TOKEN_ID": str(token.pk),
        "VERSION": "1",
        "MEMBER": "ana",
    }


def test_the_documented_get_examples_answer(live_server, small_project):
    values = {**small_project, "API": live_server.url + "/api/v1"}
    failed, ran = [], 0
    with requests.Session() as session:
        for command in _curl_commands(DOCS.read_text()):
            method, url, headers = _parse(command, values)
            if method != "GET":
                continue
            response = session.get(url, headers=headers, timeout=60)
            ran += 1
            if not 200 <= response.status_code < 300:
                failed.append(f"{command}\n  -> {response.status_code} {response.text[:300]}")
    assert ran >= 30
    assert not failed, "\n".join(failed)
