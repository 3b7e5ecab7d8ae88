"""Reads of webhooks: a project's hooks, one hook, its delivery log (newest first, keyset by id)."""

from __future__ import annotations

from typing import Any

from django.db.models import F, QuerySet, Window
from django.db.models.functions import RowNumber

from ..exceptions import NotFound
from ..models import Project, Webhook, WebhookDelivery

DELIVERIES_MAX_LIMIT = 100


def webhooks_for(*, project: Project) -> QuerySet[Webhook]:
    return Webhook.objects.filter(project=project).select_related("created_by").order_by("id")


def webhook_get(*, project: Project, webhook_id: int) -> Webhook:
    webhook = webhooks_for(project=project).filter(pk=webhook_id).first()
    if webhook is None:
        raise NotFound(f"webhook {webhook_id} not found in this project")
    return webhook


def webhook_deliveries(
    *, webhook: Webhook, limit: int = 20, after: int | None = None, status: str | None = None
) -> dict[str, Any]:
    """A page of the hook's delivery log, newest first: {"results", "next"}; pass `next` as `after` for older ones.
    `status`: only the deliveries in it (pending, delivered, failed)."""
    limit = max(1, min(int(limit), DELIVERIES_MAX_LIMIT))
    rows = WebhookDelivery.objects.filter(webhook=webhook)
    if status is not None:
        rows = rows.filter(status=status)
    if after is not None:
        rows = rows.filter(pk__lt=after)
    page = list(rows.order_by("-id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return {"results": page, "next": page[-1].pk if more and page else None}


def webhooks_overview(*, project: Project, recent: int = 10) -> list[dict[str, Any]]:
    """The manage page's card: each hook with its last `recent` deliveries (two queries in all)."""
    hooks = list(webhooks_for(project=project))
    latest: dict[int, list[WebhookDelivery]] = {hook.pk: [] for hook in hooks}
    if hooks:
        rows = (
            WebhookDelivery.objects.filter(webhook__project=project)
            .annotate(rank=Window(RowNumber(), partition_by=[F("webhook_id")], order_by=F("id").desc()))
            .filter(rank__lte=recent)
            .order_by("webhook_id", "-id")
        )
        for row in rows:
            latest[row.webhook_id].append(row)
    return [{"webhook": hook, "deliveries": latest[hook.pk]} for hook in hooks]
