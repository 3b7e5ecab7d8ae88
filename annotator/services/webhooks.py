"""Webhooks: URLs a manager registers to hear about a project's events, and their deliveries.

`webhook_emit` is called by the writers inside their transactions: it writes one WebhookDelivery row per hook that
wants the event and sends each to the default worker after the commit (`deliver_webhook` -> `webhook_deliver`).
A delivery is a POST of JSON signed with HMAC-SHA256 over "<timestamp>." + body with the hook's own secret. An
attempt that fails (no 2xx, a connection error, a redirect to another origin) is tried again after a back-off, at
most MAX_ATTEMPTS times; every attempt's outcome is kept on the row (the delivery log). Deleting or deactivating a
hook stops everything still pending for it: the delivery re-reads the hook before sending.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

from django.db import transaction
from django.utils import timezone

from ..exceptions import ProjectError
from ..models import AuditEntry, Project, Webhook, WebhookDelivery
from .audit import audit_record

logger = logging.getLogger(__name__)

TASK = "annotator.tasks.deliver_webhook"  # by name: services never import the tasks module
PING = "ping"  # the event of a test delivery ("Send test"); no hook subscribes to it
MAX_WEBHOOKS = 20  # per project
MAX_URL_LENGTH = 500  # Webhook.url's column
TIMEOUT_SECONDS = 10
MAX_REDIRECTS = 3  # followed only within the hook's own origin (scheme, host, port)
# Seconds to wait before attempt 2, 3, ...: MAX_ATTEMPTS attempts in all over about 2 h 36 min.
BACKOFF_SECONDS = (10, 60, 300, 1800, 7200)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
USER_AGENT = "alabel-webhooks/1"
# A pending delivery this late past its due attempt lost its message (broker down at dispatch, or a lost
# message): the reconciler sends it again (webhooks_redispatch).
REDISPATCH_GRACE_SECONDS = 300


# --- hooks -----------------------------------------------------------------------------------------------------------


def _url_clean(url: object) -> str:
    """The URL if a hook may be sent to it (http or https, a host, no user name or password), else ProjectError."""
    if not isinstance(url, str) or not url.strip():
        raise ProjectError("url is required")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise ProjectError(f"url must be at most {MAX_URL_LENGTH} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise ProjectError("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # a port that is not a number raises ValueError
    except ValueError as exc:
        raise ProjectError(f"url is not a valid URL ({exc})") from exc
    if parts.scheme.lower() not in {"http", "https"}:
        raise ProjectError("url must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise ProjectError("url must not contain a user name or password: the deliveries are signed instead")
    if not parts.hostname:
        raise ProjectError("url must name a host")
    if port == 0:
        raise ProjectError("url must not name port 0")
    if parts.fragment:
        raise ProjectError("url must not contain a #fragment")
    return url


def _events_clean(events: object) -> list[str]:
    if not isinstance(events, list | tuple) or not events:
        raise ProjectError(f"events must be a non-empty list of: {', '.join(Webhook.Event.values)}")
    unknown = [str(e)[:50] for e in events if e not in Webhook.Event.values]
    if unknown:
        raise ProjectError(
            f"unknown events: {', '.join(repr(e) for e in unknown[:10])}; known: {', '.join(Webhook.Event.values)}"
        )
    return [e for e in Webhook.Event.values if e in events]  # the declared order, each once


def _audit_view(webhook: Webhook) -> dict[str, Any]:
    """What the audit log keeps of a hook: never its secret."""
    return {"url": webhook.url, "events": list(webhook.events), "active": webhook.active}


@transaction.atomic
def webhook_create(*, project: Project, user, url: object, events: object, active: bool = True) -> Webhook:
    """Registers a hook (managers; the caller checks the role). Its secret is drawn here and shown to managers."""
    url = _url_clean(url)
    clean_events = _events_clean(events)
    if Webhook.objects.filter(project=project).count() >= MAX_WEBHOOKS:
        raise ProjectError(f"a project has at most {MAX_WEBHOOKS} webhooks; delete one first")
    webhook = Webhook.objects.create(
        project=project,
        url=url,
        events=clean_events,
        secret=secrets.token_hex(32),
        active=bool(active),
        created_by=user if getattr(user, "pk", None) else None,
    )
    audit_record(
        project=project,
        user=user,
        target=AuditEntry.Target.PROJECT,
        action=AuditEntry.Action.CREATE,
        object_ref=f"webhook {webhook.pk}",
        after=_audit_view(webhook),
    )
    return webhook


@transaction.atomic
def webhook_update(
    *, webhook: Webhook, user, url: object = None, events: object = None, active: object = None
) -> Webhook:
    """Changes a hook's URL, events or active flag (None: unchanged). A hook made inactive gets nothing more, not
    even what is still pending for it."""
    webhook = Webhook.objects.select_for_update().get(pk=webhook.pk)
    before = _audit_view(webhook)
    if url is not None:
        webhook.url = _url_clean(url)
    if events is not None:
        webhook.events = _events_clean(events)
    if active is not None:
        if not isinstance(active, bool):
            raise ProjectError("active must be true or false")
        webhook.active = active
    webhook.save(update_fields=["url", "events", "active"])
    audit_record(
        project=webhook.project_id,
        user=user,
        target=AuditEntry.Target.PROJECT,
        action=AuditEntry.Action.UPDATE,
        object_ref=f"webhook {webhook.pk}",
        before=before,
        after=_audit_view(webhook),
    )
    return webhook


@transaction.atomic
def webhook_delete(*, webhook: Webhook, user) -> None:
    """Deletes a hook and its delivery log. Nothing more is sent to it: a delivery still queued finds no row."""
    audit_record(
        project=webhook.project_id,
        user=user,
        target=AuditEntry.Target.PROJECT,
        action=AuditEntry.Action.DELETE,
        object_ref=f"webhook {webhook.pk}",
        before=_audit_view(webhook),
    )
    Webhook.objects.filter(pk=webhook.pk).delete()


# --- events ----------------------------------------------------------------------------------------------------------


def webhook_dispatch(*, delivery_id: int, countdown: int | None = None) -> bool:
    """Sends a delivery's task to the broker (the default queue). A broker that is down is logged, not raised: a
    writer's request never fails for a webhook; the delivery stays pending in the log."""
    from celery import current_app
    from kombu.exceptions import OperationalError

    try:
        current_app.send_task(TASK, args=[delivery_id], countdown=countdown)
    except (OperationalError, ConnectionError, OSError) as exc:
        logger.warning("could not dispatch webhook delivery %s (%s)", delivery_id, exc)
        return False
    return True


def _dispatch_on_commit(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        transaction.on_commit(lambda pk=delivery_id: webhook_dispatch(delivery_id=pk))


def webhook_emit(*, project: Project | int, event: str, payload: dict[str, Any]) -> list[WebhookDelivery]:
    """Queues `event` for every active hook of the project that wants it, sent once the caller's transaction
    commits (nothing if it rolls back). One query when the project has no hook; the event filter runs on the few
    active hooks in Python (a JSON `contains` is not portable to SQLite)."""
    if event not in Webhook.Event.values:
        raise ValueError(f"unknown webhook event {event!r}")
    project_id = project if isinstance(project, int) else project.pk
    hooks = [
        pk
        for pk, events in Webhook.objects.filter(project_id=project_id, active=True).values_list("pk", "events")
        if event in (events or [])
    ]
    if not hooks:
        return []
    deliveries = WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(webhook_id=pk, event=event, payload=payload) for pk in hooks]
    )
    _dispatch_on_commit([d.pk for d in deliveries])
    return deliveries


def webhook_emit_export(
    *, project: Project, user, fmt: str, include_unlabelled: bool, via: str = "api"
) -> list[WebhookDelivery]:
    """The "project.exported" event of an export: the export views call it once the request is valid
    (`via` "api"), `manage.py export_project` once the file is written (`via` "command", no user)."""
    return webhook_emit(
        project=project,
        event=Webhook.Event.PROJECT_EXPORTED,
        payload={
            "format": fmt,
            "include_unlabelled": include_unlabelled,
            "by": getattr(user, "username", "") or "",
            "via": via,
        },
    )


def webhooks_redispatch(*, grace_seconds: int = REDISPATCH_GRACE_SECONDS, limit: int = 500) -> int:
    """The reconciler's part: pending deliveries whose attempt is overdue by more than `grace_seconds` (their
    message was never sent, the broker being down, or was lost) are sent again; returns how many. A duplicate
    message is harmless: an attempt is made only by the one that claims it (`_claim`)."""
    now = timezone.now()
    overdue: list[int] = []
    rows = (
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, webhook__active=True)
        .order_by("created_at")
        .values_list("pk", "attempts", "created_at", "last_attempt_at")[:limit]
    )
    for pk, attempts, created_at, last_attempt_at in rows:
        if attempts == 0 or last_attempt_at is None:
            due = created_at
        else:
            wait = webhook_backoff(attempts)
            if wait is None:
                continue  # its last attempt is being recorded: never sent again
            due = last_attempt_at + timedelta(seconds=wait)
        if due < now - timedelta(seconds=grace_seconds):
            overdue.append(pk)
    sent = sum(webhook_dispatch(delivery_id=pk) for pk in overdue)
    if sent:
        logger.info("re-sent %s overdue webhook deliveries", sent)
    return sent


@transaction.atomic
def webhook_send_test(*, webhook: Webhook, user) -> WebhookDelivery:
    """A "ping" delivery to one hook, whatever its events (the page's "Send test")."""
    if not webhook.active:
        raise ProjectError("this webhook is inactive: activate it to send to it")
    delivery = WebhookDelivery.objects.create(
        webhook=webhook,
        event=PING,
        payload={"message": "a test delivery", "by": getattr(user, "username", "") or ""},
    )
    _dispatch_on_commit([delivery.pk])
    return delivery


# --- delivery --------------------------------------------------------------------------------------------------------


def webhook_backoff(attempts: int) -> int | None:
    """Seconds to wait after `attempts` failed attempts before the next one; None: no attempt is left."""
    if attempts < 1 or attempts >= MAX_ATTEMPTS:
        return None
    return BACKOFF_SECONDS[attempts - 1]


def webhook_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The X-Alabel-Signature header's value: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """POSTs the body, following at most MAX_REDIRECTS redirects within the URL's own origin. Returns (the final
    status code or None, an error message; empty when the status is a 2xx)."""
    import requests

    origin = _origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = requests.post(url, data=body, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False)
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}"
        code = response.status_code
        response.close()
        if 200 <= code < 300:
            return code, ""
        if code not in (301, 302, 303, 307, 308):
            return code, f"HTTP {code} from {url}"
        location = response.headers.get("Location", "")
        if not location:
            return code, f"HTTP {code} without a Location header"
        target = urljoin(url, location)
        if _origin(target) != origin:
            return code, f"redirect to another origin not followed: {target}"
        url = target
    return code, f"more than {MAX_REDIRECTS} redirects"


def _claim(delivery_id: int) -> tuple[WebhookDelivery | None, int | None]:
    """(the delivery, claimed for its next attempt) or (None, seconds until its next attempt is due) or (None,
    None): nothing to do (delivered, given up, gone, or its hook deleted or inactive)."""
    delivery = WebhookDelivery.objects.select_related("webhook__project").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return None, None  # gone with its hook, or already delivered / given up: never sent again
    if not delivery.webhook.active:
        WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING).update(
            status=WebhookDelivery.Status.FAILED, error="not sent: the webhook is inactive"
        )
        return None, None
    now = timezone.now()
    wait = webhook_backoff(delivery.attempts) if delivery.attempts else 0
    if wait and delivery.last_attempt_at is not None:
        due = delivery.last_attempt_at + timedelta(seconds=wait)
        if due > now + timedelta(seconds=1):  # an early duplicate message: the attempt is sent when it is due
            return None, max(1, int((due - now).total_seconds()))
    # One attempt per claim, even with two messages for it: the row moves on only if nobody else moved it.
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=WebhookDelivery.Status.PENDING, attempts=delivery.attempts
    ).update(attempts=delivery.attempts + 1, last_attempt_at=now)
    if not claimed:
        return None, None
    delivery.attempts += 1
    delivery.last_attempt_at = now
    return delivery, None


def webhook_body(delivery: WebhookDelivery) -> bytes:
    project = delivery.webhook.project
    return json.dumps(
        {
            "event": delivery.event,
            "project": {"id": project.pk, "name": project.name},
            "created_at": delivery.created_at.isoformat(),
            "delivery": delivery.pk,
            "data": delivery.payload,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def webhook_deliver(*, delivery_id: int) -> int | None:
    """One attempt at a delivery (the task `deliver_webhook`). 2xx: delivered. Anything else: the attempt's status
    code or error is recorded and the next attempt is dispatched after its back-off, until MAX_ATTEMPTS; then the
    delivery has failed. Returns the countdown of the attempt it dispatched (None: none). A delivered or failed
    delivery, or one whose hook was deleted or deactivated, is never sent again."""
    delivery, wait = _claim(delivery_id)
    if delivery is None:
        if wait is not None:
            webhook_dispatch(delivery_id=delivery_id, countdown=wait)
        return wait
    body = webhook_body(delivery)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Alabel-Event": delivery.event,
        "X-Alabel-Delivery": str(delivery.pk),
        "X-Alabel-Timestamp": str(timestamp),
        "X-Alabel-Signature": webhook_signature(delivery.webhook.secret, timestamp, body),
    }
    code, error = _post(delivery.webhook.url, body, headers)
    now = timezone.now()
    pending = WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING)
    if not error:
        pending.update(status=WebhookDelivery.Status.DELIVERED, response_code=code, error="", delivered_at=now)
        return None
    retry_in = webhook_backoff(delivery.attempts)
    pending.update(
        status=WebhookDelivery.Status.PENDING if retry_in is not None else WebhookDelivery.Status.FAILED,
        response_code=code,
        error=error[:300],
    )
    logger.info("webhook delivery %s attempt %s failed: %s", delivery.pk, delivery.attempts, error)
    if retry_in is not None:
        webhook_dispatch(delivery_id=delivery.pk, countdown=retry_in)
    return retry_in
