"""Webhooks: registered by managers, fired by the writers, delivered signed to a real local HTTP server, retried
with back-off, never sent once the hook is deleted, never redirected to another origin."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from annotator import services
from annotator.models import AuditEntry, Job, Project, Webhook, WebhookDelivery
from annotator.services import webhooks
from annotator.services.budgets import budget_alerts_check
from annotator.services.jobs import job_fail
from annotator.services.registry import version_publish

from .conftest import client_for, make_user

ALL_EVENTS = list(Webhook.Event.values)


# --- a real receiver ---------------------------------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 (a free port) in a thread: records every request and answers from `script`
    (status, headers) in turn, then with the last one."""

    def __init__(self, script: list[tuple[int, dict[str, str]]] | None = None) -> None:
        self.script = list(script or [(200, {})])
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                code, headers = receiver.script[min(len(receiver.requests), len(receiver.script)) - 1]
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


@pytest.fixture
def receiver_factory(receivers):
    def make(script: list[tuple[int, dict[str, str]]] | None = None) -> Receiver:
        receiver = Receiver(script)
        receivers.append(receiver)
        return receiver

    return make


@pytest.fixture(autouse=True)
def dispatched(monkeypatch) -> list[tuple[int, int | None]]:
    """No broker in these tests: dispatches are recorded (delivery id, countdown) and the tests run them."""
    sent: list[tuple[int, int | None]] = []

    def record(*, delivery_id: int, countdown: int | None = None) -> bool:
        sent.append((delivery_id, countdown))
        return True

    monkeypatch.setattr(webhooks, "webhook_dispatch", record)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    return sent


def _hook(project, manager, url: str, events: list[str] | None = None) -> Webhook:
    return services.webhook_create(project=project, user=manager, url=url, events=events or ALL_EVENTS)


def _due_now(delivery: WebhookDelivery) -> None:
    """As if its back-off had passed (no real sleeping)."""
    wait = webhooks.webhook_backoff(delivery.attempts) or 0
    WebhookDelivery.objects.filter(pk=delivery.pk).update(last_attempt_at=timezone.now() - timedelta(seconds=wait + 1))


# --- delivery ----------------------------------------------------------------------------------------------------


def test_a_delivery_reaches_the_receiver_with_a_valid_signature(
    project, manager, receiver_factory, dispatched, django_capture_on_commit_callbacks
):
    receiver = receiver_factory()
    hook = _hook(project, manager, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        (delivery,) = services.webhook_emit(project=project, event="job.failed", payload={"job": 7})
    assert dispatched == [(delivery.pk, None)]  # sent to the worker once the transaction committed

    assert services.webhook_deliver(delivery_id=delivery.pk) is None
    (request,) = receiver.requests
    headers, body = request["headers"], request["body"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Alabel-Event"] == "job.failed"
    assert headers["X-Alabel-Delivery"] == str(delivery.pk)
    expected = hmac.new(hook.secret.encode(), headers["X-Alabel-Timestamp"].encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(headers["X-Alabel-Signature"], "sha256=" + expected.hexdigest())
    wrong = hmac.new(b"another secret", headers["X-Alabel-Timestamp"].encode() + b"." + body, hashlib.sha256)
    assert headers["X-Alabel-Signature"] != "sha256=" + wrong.hexdigest()
    assert abs(int(headers["X-Alabel-Timestamp"]) - timezone.now().timestamp()) < 60
    sent = json.loads(body)
    assert sent["event"] == "job.failed" and sent["delivery"] == delivery.pk and sent["data"] == {"job": 7}
    assert sent["project"] == {"id": project.pk, "name": project.name} and sent["created_at"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.error) == ("delivered", 1, 200, "")

    services.webhook_deliver(delivery_id=delivery.pk)  # a duplicate message: a delivered delivery is never resent
    assert len(receiver.requests) == 1


def test_a_500_is_retried_with_backoff_and_then_delivered(project, manager, receiver_factory, dispatched):
    receiver = receiver_factory([(500, {}), (200, {})])
    _hook(project, manager, receiver.url)
    (delivery,) = services.webhook_emit(project=project, event="answer.created", payload={"labels": ["joy"]})

    assert services.webhook_deliver(delivery_id=delivery.pk) == 10  # first back-off: 10 s
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("pending", 1, 500)
    assert "HTTP 500" in delivery.error
    assert dispatched[-1] == (delivery.pk, 10)  # the next attempt is queued with its countdown

    # The retry's message arriving early (a duplicate) sends nothing and is put off until the attempt is due.
    wait = services.webhook_deliver(delivery_id=delivery.pk)
    assert wait is not None and 1 <= wait <= 10 and len(receiver.requests) == 1

    _due_now(delivery)
    assert services.webhook_deliver(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.error) == ("delivered", 2, 200, "")
    assert len(receiver.requests) == 2
    first, second = (json.loads(r["body"]) for r in receiver.requests)
    assert first == second  # the same body: receivers deduplicate by X-Alabel-Delivery
    assert delivery.delivered_at is not None


def test_back_off_grows_and_gives_up_after_the_last_attempt(project, manager, receiver_factory):
    assert [webhooks.webhook_backoff(n) for n in range(1, webhooks.MAX_ATTEMPTS + 1)] == [
        10,
        60,
        300,
        1800,
        7200,
        None,
    ]
    receiver = receiver_factory([(503, {})])
    _hook(project, manager, receiver.url)
    (delivery,) = services.webhook_emit(project=project, event="job.failed", payload={})
    countdowns = []
    for _ in range(webhooks.MAX_ATTEMPTS):
        countdowns.append(services.webhook_deliver(delivery_id=delivery.pk))
        delivery.refresh_from_db()
        _due_now(delivery)
    assert countdowns == [10, 60, 300, 1800, 7200, None]
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 6, 503)
    assert services.webhook_deliver(delivery_id=delivery.pk) is None  # given up: never sent again
    assert len(receiver.requests) == webhooks.MAX_ATTEMPTS


def test_a_connection_error_is_a_failed_attempt(project, manager, receiver_factory):
    receiver = receiver_factory()
    url = receiver.url
    receiver.close()  # nobody listens there any more
    _hook(project, manager, url)
    (delivery,) = services.webhook_emit(project=project, event="job.failed", payload={})
    assert services.webhook_deliver(delivery_id=delivery.pk) == 10
    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_code) == ("pending", None)
    assert "ConnectionError" in delivery.error


def test_a_deleted_hook_gets_nothing_even_what_was_pending(project, manager, receiver_factory, dispatched):
    receiver = receiver_factory()
    hook = _hook(project, manager, receiver.url)
    (delivery,) = services.webhook_emit(project=project, event="answer.created", payload={})
    services.webhook_delete(webhook=hook, user=manager)
    assert services.webhook_deliver(delivery_id=delivery.pk) is None  # the queued message finds nothing
    assert receiver.requests == []
    assert not WebhookDelivery.objects.filter(pk=delivery.pk).exists()
    assert services.webhook_emit(project=project, event="answer.created", payload={}) == []
    assert receiver.requests == []
    entry = AuditEntry.objects.filter(project=project, action="delete").latest("id")
    assert entry.object_ref == f"webhook {hook.pk}" and "secret" not in json.dumps(entry.before)


def test_a_deactivated_hook_gets_nothing_more(project, manager, receiver_factory):
    receiver = receiver_factory()
    hook = _hook(project, manager, receiver.url)
    (delivery,) = services.webhook_emit(project=project, event="answer.created", payload={})
    services.webhook_update(webhook=hook, user=manager, active=False)
    services.webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "inactive" in delivery.error and receiver.requests == []
    assert services.webhook_emit(project=project, event="answer.created", payload={}) == []


def test_a_redirect_to_another_origin_is_not_followed(project, manager, receiver_factory):
    other = receiver_factory()  # same host, another port: another origin
    first = receiver_factory([(302, {"Location": other.url})])
    _hook(project, manager, first.url)
    (delivery,) = services.webhook_emit(project=project, event="job.failed", payload={})
    assert services.webhook_deliver(delivery_id=delivery.pk) == 10
    delivery.refresh_from_db()
    assert len(first.requests) == 1 and other.requests == []
    assert delivery.response_code == 302 and "another origin" in delivery.error and delivery.status == "pending"


def test_a_redirect_within_the_origin_is_followed(project, manager, receiver_factory):
    receiver = receiver_factory([(307, {"Location": "/moved"}), (200, {})])
    _hook(project, manager, receiver.url)
    (delivery,) = services.webhook_emit(project=project, event="job.failed", payload={})
    assert services.webhook_deliver(delivery_id=delivery.pk) is None
    assert [r["path"] for r in receiver.requests] == ["/hook", "/moved"]
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_code) == ("delivered", 200)


def test_the_task_calls_the_service(project, manager, receiver_factory):
    from annotator import tasks

    receiver = receiver_factory()
    _hook(project, manager, receiver.url)
    (delivery,) = services.webhook_emit(project=project, event="job.failed", payload={})
    tasks.deliver_webhook(delivery.pk)
    tasks.deliver_webhook(delivery.pk)  # redelivered
    assert len(receiver.requests) == 1


def test_the_task_goes_to_the_default_queue():
    from webapp.celery import app

    assert webhooks.TASK in app.tasks
    assert app.amqp.router.route({}, webhooks.TASK)["queue"].name == "default"


# --- emitting ----------------------------------------------------------------------------------------------------


def test_emit_costs_one_query_without_hooks(project, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert services.webhook_emit(project=project, event="answer.created", payload={}) == []


def test_emit_goes_only_to_active_hooks_that_want_the_event(project, manager):
    wants = _hook(project, manager, "https://a.example/hook", ["answer.created"])
    _hook(project, manager, "https://b.example/hook", ["job.failed"])
    off = _hook(project, manager, "https://c.example/hook", ["answer.created"])
    services.webhook_update(webhook=off, user=manager, active=False)
    deliveries = services.webhook_emit(project=project, event="answer.created", payload={"x": 1})
    assert [d.webhook_id for d in deliveries] == [wants.pk]
    with pytest.raises(ValueError):
        services.webhook_emit(project=project, event="ping", payload={})  # ping is for tests only


def test_nothing_is_dispatched_when_the_writer_rolls_back(project, manager, dispatched):
    from django.db import transaction

    _hook(project, manager, "https://a.example/hook")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.webhook_emit(project=project, event="job.failed", payload={})
        raise RuntimeError("the writer failed")
    assert WebhookDelivery.objects.count() == 0 and dispatched == []


def _events(project) -> list[tuple[str, dict]]:
    return list(WebhookDelivery.objects.filter(webhook__project=project).order_by("id").values_list("event", "payload"))


def test_answers_fire_created_then_updated(project, manager, annotator_user, documents):
    _hook(project, manager, "https://a.example/hook")
    document = documents[0]
    services.annotation_submit(project=project, user=annotator_user, document_id=document.pk, labels=["joy"])
    services.annotation_submit(
        project=project, user=annotator_user, document_id=document.pk, labels=["anger", "fear"], source="ui"
    )
    created, updated = _events(project)
    assert created == (
        "answer.created",
        {
            "document": {"id": document.pk, "external_id": document.external_id},
            "annotator": annotator_user.username,
            "labels": ["joy"],
            "source": "api",
        },
    )
    assert updated[0] == "answer.updated" and updated[1]["labels"] == ["anger", "fear"] and updated[1]["source"] == "ui"


def test_a_budget_threshold_fires(project, manager):
    _hook(project, manager, "https://a.example/hook", ["budget.threshold"])
    Project.objects.filter(pk=project.pk).update(label_budget=10, budget_alerts=[50, 100])
    project.refresh_from_db()
    budget_alerts_check(project=project, spent=6)
    budget_alerts_check(project=project, spent=7)  # fires once
    assert _events(project) == [("budget.threshold", {"percent": 50, "spent": 6, "budget": 10})]


def test_a_failed_job_fires_once(project, manager):
    _hook(project, manager, "https://a.example/hook", ["job.failed"])
    job = Job.objects.create(project=project, kind="score", status="RUNNING")
    job_fail(job_id=job.pk, error="scoring failed: " + "x" * 1000)
    job_fail(job_id=job.pk, error="again")  # already failed: no second event
    ((event, payload),) = _events(project)
    assert event == "job.failed" and payload["job"] == job.pk and payload["kind"] == "score"
    assert payload["error"].startswith("scoring failed: ") and len(payload["error"]) == 300


def test_a_published_model_fires(project, manager):
    _hook(project, manager, "https://a.example/hook", ["model.published"])
    job = Job.objects.create(project=project, kind="train", status="RUNNING", attempts=1)
    version = version_publish(
        job_id=job.pk,
        attempt=1,
        project=project,
        relative="projects/x/models/y",
        metrics={},
        evaluation={"n_documents": 40, "metrics": {"micro_f1": {"value": 0.5, "low": 0.4, "high": 0.6}}},
        evaluation_per_label=[],
        stop_predictions=[],
        agreement=None,
        config={},
        n_annotations=25,
        n_labels=5,
        cutoff=timezone.now(),
        seconds=1.0,
        device="cpu",
    )
    assert version is not None
    ((event, payload),) = _events(project)
    assert event == "model.published"
    assert payload == {
        "version": version.number,
        "n_annotations": 25,
        "n_labels": 5,
        "job": job.pk,
        "evaluation": {"documents": 40, "micro_f1": {"value": 0.5, "low": 0.4, "high": 0.6}},
    }


def test_an_export_fires(project, manager, manager_client):
    _hook(project, manager, "https://a.example/hook", ["project.exported"])
    assert manager_client.get(f"/api/v1/projects/{project.pk}/export/?format=nope").status_code == 400
    assert _events(project) == []  # a refused export is no export
    response = manager_client.get(f"/api/v1/projects/{project.pk}/export/?format=csv")
    assert response.status_code == 200
    b"".join(response.streaming_content)
    assert _events(project) == [
        ("project.exported", {"format": "csv", "include_unlabelled": False, "by": manager.username, "via": "api"})
    ]


def test_the_export_command_fires_too(project, manager, tmp_path):
    from django.core.management import CommandError, call_command

    _hook(project, manager, "https://a.example/hook", ["project.exported"])
    with pytest.raises(CommandError, match="already exists"):
        call_command("export_project", project.pk, str(tmp_path), "--format", "jsonl", "--no-progress")
    assert _events(project) == []  # a refused export is no export
    call_command("export_project", project.pk, str(tmp_path / "out.jsonl"), "--format", "jsonl", "--no-progress")
    assert _events(project) == [
        ("project.exported", {"format": "jsonl", "include_unlabelled": False, "by": "", "via": "command"})
    ]


def test_the_reconciler_resends_deliveries_whose_message_was_lost(project, manager, receiver_factory, dispatched):
    """The broker was down when the answer was saved: the delivery stayed pending; the reconciler sends it again
    once it is overdue, and the receiver gets it exactly once."""
    from annotator.services.reconcile import jobs_reconcile

    receiver = receiver_factory()
    _hook(project, manager, receiver.url)
    (delivery,) = services.webhook_emit(project=project, event="model.published", payload={"version": 1})
    dispatched.clear()  # its message never reached the broker
    assert jobs_reconcile()["webhooks_redispatched"] == 0  # not overdue yet: its message may still be on its way
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    assert jobs_reconcile()["webhooks_redispatched"] == 1
    assert dispatched == [(delivery.pk, None)]
    services.webhook_deliver(delivery_id=delivery.pk)
    services.webhook_deliver(delivery_id=delivery.pk)  # a duplicate message: nothing sent twice
    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    dispatched.clear()
    assert jobs_reconcile()["webhooks_redispatched"] == 0  # delivered: never again
    assert dispatched == []


def test_the_reconciler_leaves_a_retry_alone_until_its_back_off_is_overdue(
    project, manager, receiver_factory, dispatched
):
    from annotator.services.reconcile import jobs_reconcile

    receiver = receiver_factory([(500, {})])
    _hook(project, manager, receiver.url)
    (delivery,) = services.webhook_emit(project=project, event="model.published", payload={"version": 1})
    services.webhook_deliver(delivery_id=delivery.pk)  # attempt 1 fails: attempt 2 is due in 10 s
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(hours=1))
    dispatched.clear()
    assert jobs_reconcile()["webhooks_redispatched"] == 0
    WebhookDelivery.objects.filter(pk=delivery.pk).update(last_attempt_at=timezone.now() - timedelta(minutes=6))
    assert jobs_reconcile()["webhooks_redispatched"] == 1


# --- API ---------------------------------------------------------------------------------------------------------


def _url(project, *rest: object) -> str:
    return f"/api/v1/projects/{project.pk}/webhooks/" + "".join(f"{part}/" for part in rest)


def test_managers_register_list_change_and_delete_hooks(project, manager, manager_client):
    response = manager_client.post(
        _url(project), {"url": "https://hooks.example/x", "events": ["answer.created", "job.failed"]}, format="json"
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert len(created["secret"]) == 64 and created["events"] == ["answer.created", "job.failed"]
    listed = manager_client.get(_url(project)).json()
    assert [h["secret"] for h in listed] == [created["secret"]]

    response = manager_client.patch(_url(project, created["id"]), {"active": False}, format="json")
    assert response.status_code == 200 and response.json()["active"] is False
    response = manager_client.patch(_url(project, created["id"]), {"secret": "mine"}, format="json")
    assert response.status_code == 400 and "secret" in response.json()["detail"]
    assert response.json()["detail"]

    assert manager_client.delete(_url(project, created["id"])).status_code == 204
    assert manager_client.get(_url(project)).json() == []
    assert manager_client.get(_url(project, created["id"])).status_code == 404
    actions = list(AuditEntry.objects.filter(project=project, target="project").values_list("action", flat=True))
    assert sorted(actions) == ["create", "delete", "update"]
    assert all("secret" not in json.dumps([e.before, e.after]) for e in AuditEntry.objects.filter(project=project))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"url": "ftp://hooks.example/x", "events": ["job.failed"]}, "http"),
        ({"url": "javascript:alert(1)", "events": ["job.failed"]}, "http"),
        ({"url": "http:///no-host", "events": ["job.failed"]}, "host"),
        ({"url": "https://user:pass@hooks.example/x", "events": ["job.failed"]}, "password"),
        ({"url": "https://hooks.example/x", "events": []}, "events"),
        ({"url": "https://hooks.example/x", "events": ["ping"]}, "unknown events"),
        ({"url": "https://hooks.example/x", "events": ["answer.created", "nope"]}, "unknown events"),
        ({"url": "https://hooks.example:99999/x", "events": ["job.failed"]}, "url"),
        ({"events": ["job.failed"]}, "url"),
    ],
)
def test_bad_hooks_are_refused_and_nothing_is_created(project, manager_client, body, problem):
    response = manager_client.post(_url(project), body, format="json")
    assert response.status_code == 400
    assert problem in json.dumps(response.json())
    assert not Webhook.objects.exists() and not AuditEntry.objects.filter(target="project").exists()


def test_only_managers_see_hooks(project, manager, annotator_client, outsider):
    hook = _hook(project, manager, "https://hooks.example/x")
    reviewer = make_user("reviewer")
    services.member_add(project=project, username=reviewer.username, role="reviewer")
    for client, code in [(annotator_client, 403), (client_for(reviewer), 403), (client_for(outsider), 404)]:
        assert client.get(_url(project)).status_code == code
        new = {"url": "https://x.example", "events": ALL_EVENTS}
        assert client.post(_url(project), new, format="json").status_code == code
        assert client.patch(_url(project, hook.pk), {"active": False}, format="json").status_code == code
        assert client.delete(_url(project, hook.pk)).status_code == code
        assert client.post(_url(project, hook.pk, "test")).status_code == code
        assert client.get(_url(project, hook.pk, "deliveries")).status_code == code
    hook.refresh_from_db()
    assert hook.active and Webhook.objects.count() == 1 and not WebhookDelivery.objects.exists()
    from rest_framework.test import APIClient

    assert APIClient().get(_url(project)).status_code in (401, 403)


def test_a_hook_of_another_project_is_not_found(project, manager, manager_client):
    other = services.project_create(user=manager, name="Other", labels=["a"], eval_size=0)
    hook = _hook(other, manager, "https://hooks.example/x")
    assert manager_client.get(_url(project, hook.pk)).status_code == 404
    assert manager_client.delete(_url(project, hook.pk)).status_code == 404
    assert Webhook.objects.filter(pk=hook.pk).exists()


def test_send_test_and_the_delivery_log(project, manager, manager_client, receiver_factory, dispatched):
    receiver = receiver_factory([(500, {}), (200, {})])
    hook = _hook(project, manager, receiver.url, ["job.failed"])
    response = manager_client.post(_url(project, hook.pk, "test"))
    assert response.status_code == 202
    ping = response.json()
    assert ping["event"] == "ping" and ping["status"] == "pending"
    services.webhook_deliver(delivery_id=ping["id"])
    for _ in range(3):
        services.webhook_emit(project=project, event="job.failed", payload={})
    page = manager_client.get(_url(project, hook.pk, "deliveries") + "?limit=2").json()
    assert [d["event"] for d in page["results"]] == ["job.failed", "job.failed"] and page["next"] is not None
    rest = manager_client.get(_url(project, hook.pk, "deliveries") + f"?limit=2&after={page['next']}").json()
    assert [d["event"] for d in rest["results"]] == ["job.failed", "ping"] and rest["next"] is None
    logged = rest["results"][1]
    assert (logged["response_code"], logged["attempts"], logged["status"]) == (500, 1, "pending")
    assert "HTTP 500" in logged["error"]
    assert json.loads(receiver.requests[0]["body"])["event"] == "ping"
    assert manager_client.get(_url(project, hook.pk, "deliveries") + "?limit=x").status_code == 400


# --- the page ----------------------------------------------------------------------------------------------------


def test_the_manage_page_lists_hooks_escaped_and_adds_deletes_and_tests(project, manager, receiver_factory):
    client = Client()
    client.force_login(manager)
    response = client.post(
        f"/projects/{project.pk}/manage/webhook/",
        {"url": "https://hooks.example/x?a=<script>alert(1)</script>", "events": ["answer.created"]},
    )
    assert response.status_code == 302
    hook = Webhook.objects.get()
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "https://hooks.example/x?a=&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert hook.secret in page and 'id="webhooks"' in page and "csrfmiddlewaretoken" in page

    receiver = receiver_factory()
    services.webhook_update(webhook=hook, user=manager, url=receiver.url)
    response = client.post(f"/projects/{project.pk}/manage/webhook-test/", {"webhook": hook.pk}, follow=True)
    assert "Test delivery" in response.content.decode()
    ping = WebhookDelivery.objects.get(webhook=hook)
    services.webhook_deliver(delivery_id=ping.pk)
    assert len(receiver.requests) == 1
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "ping" in page and "delivered" in page

    response = client.post(
        f"/projects/{project.pk}/manage/webhook/",
        {"url": "ftp://hooks.example/x", "events": ["job.failed"]},
        follow=True,
    )
    assert "url must start with http:// or https://" in response.content.decode()
    assert Webhook.objects.count() == 1

    client.post(f"/projects/{project.pk}/manage/webhook-delete/", {"webhook": hook.pk})
    assert not Webhook.objects.exists()


def test_annotators_cannot_use_the_page_actions(project, manager, annotator_user):
    hook = _hook(project, manager, "https://hooks.example/x")
    client = Client()
    client.force_login(annotator_user)
    client.post(f"/projects/{project.pk}/manage/webhook-delete/", {"webhook": hook.pk})
    client.post(f"/projects/{project.pk}/manage/webhook/", {"url": "https://x.example", "events": ["job.failed"]})
    client.post(f"/projects/{project.pk}/manage/webhook-test/", {"webhook": hook.pk})
    assert list(Webhook.objects.values_list("pk", flat=True)) == [hook.pk] and not WebhookDelivery.objects.exists()
