"""Webhooks over the API (managers only): register, change, delete, send a test, read the delivery log.
Parse, check permission, call one selector or service, render."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import services
from ..exceptions import ProjectError
from ..models import Webhook, WebhookDelivery
from ..selectors import project_get_for
from ..selectors.webhooks import DELIVERIES_MAX_LIMIT, webhook_deliveries, webhook_get, webhooks_for
from ..validation import ID_MAX
from .paging import PAGE_PARAMETERS, choice_filter, paged
from .strict import StrictPatchMixin
from .views import _int_param

EVENTS_HELP = "event names: " + ", ".join(Webhook.Event.values)


class WebhookSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField(), help_text=EVENTS_HELP)
    active = serializers.BooleanField()
    secret = serializers.CharField(help_text="the HMAC-SHA256 key of X-Alabel-Signature (managers only)")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class WebhookInputSerializer(StrictPatchMixin, serializers.Serializer):
    url = serializers.CharField(max_length=500, help_text="http:// or https://, a host, no user name or password")
    events = serializers.ListField(child=serializers.CharField(max_length=40), max_length=20, help_text=EVENTS_HELP)
    active = serializers.BooleanField(required=False, default=True)


class WebhookDeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.CharField()
    status = serializers.CharField(help_text="pending, delivered or failed (gave up)")
    attempts = serializers.IntegerField()
    response_code = serializers.IntegerField(allow_null=True, help_text="the last attempt's HTTP status")
    error = serializers.CharField(help_text="the last failed attempt's error; empty once delivered")
    payload = serializers.JSONField(help_text="the body's `data`")
    created_at = serializers.DateTimeField()
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)


class WebhookDeliveryPageSerializer(serializers.Serializer):
    results = WebhookDeliverySerializer(many=True)
    next = serializers.IntegerField(allow_null=True, help_text="Pass as `after` for older deliveries; null: the last.")


def _input(data: object, *, partial: bool = False) -> dict:
    serializer = WebhookInputSerializer(data=data, partial=partial)
    if not serializer.is_valid():
        problems = [f"{field}: {' '.join(str(m) for m in messages)}" for field, messages in serializer.errors.items()]
        raise ProjectError("invalid request: " + "; ".join(problems), errors=problems)
    return dict(serializer.validated_data)


class WebhookListView(APIView):
    @extend_schema(
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("event", str, enum=Webhook.Event.values, description="hooks that hear this event"),
        ],
        responses={200: WebhookSerializer(many=True)},
        summary="The project's webhooks, oldest first (managers)",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = project_get_for(project_id=project_id, user=request.user, manager=True)
        event = choice_filter(request, "event", Webhook.Event.values)
        hooks = list(webhooks_for(project=project))  # at most 20 per project; `events` is a JSON list
        if event is not None:
            hooks = [hook for hook in hooks if event in hook.events]
        return paged(request, hooks, lambda page: WebhookSerializer(page, many=True).data)

    @extend_schema(
        request=WebhookInputSerializer,
        responses={201: WebhookSerializer},
        summary="Register a webhook (managers); the answer holds its secret",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = project_get_for(project_id=project_id, user=request.user, manager=True)
        data = _input(request.data)
        webhook = services.webhook_create(project=project, user=request.user, **data)
        return Response(WebhookSerializer(webhook).data, status=status.HTTP_201_CREATED)


class WebhookDetailView(APIView):
    @extend_schema(responses={200: WebhookSerializer}, summary="One webhook (managers)")
    def get(self, request: Request, project_id: int, webhook_id: int) -> Response:
        project, _ = project_get_for(project_id=project_id, user=request.user, manager=True)
        return Response(WebhookSerializer(webhook_get(project=project, webhook_id=webhook_id)).data)

    @extend_schema(
        request=WebhookInputSerializer,
        responses={200: WebhookSerializer},
        summary="Change a webhook's url, events or active flag (managers)",
    )
    def patch(self, request: Request, project_id: int, webhook_id: int) -> Response:
        project, _ = project_get_for(project_id=project_id, user=request.user, manager=True)
        webhook = webhook_get(project=project, webhook_id=webhook_id)
        data = _input(request.data, partial=True)
        webhook = services.webhook_update(webhook=webhook, user=request.user, **data)
        return Response(WebhookSerializer(webhook).data)

    @extend_schema(request=None, responses={204: None}, summary="Delete a webhook: nothing more is sent to it")
    def delete(self, request: Request, project_id: int, webhook_id: int) -> Response:
        project, _ = project_get_for(project_id=project_id, user=request.user, manager=True)
        services.webhook_delete(webhook=webhook_get(project=project, webhook_id=webhook_id), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookTestView(APIView):
    @extend_schema(
        request=None,
        responses={202: WebhookDeliverySerializer},
        summary='Send a test delivery (event "ping") to the webhook now',
    )
    def post(self, request: Request, project_id: int, webhook_id: int) -> Response:
        project, _ = project_get_for(project_id=project_id, user=request.user, manager=True)
        webhook = webhook_get(project=project, webhook_id=webhook_id)
        delivery = services.webhook_send_test(webhook=webhook, user=request.user)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookDeliveriesView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("limit", int, description=f"deliveries per page, 1-{DELIVERIES_MAX_LIMIT} (20)"),
            OpenApiParameter("after", int, description="the previous page's `next` (a delivery id)"),
            OpenApiParameter("status", str, enum=WebhookDelivery.Status.values),
        ],
        responses={200: WebhookDeliveryPageSerializer},
        summary="The webhook's delivery log, newest first (managers)",
    )
    def get(self, request: Request, project_id: int, webhook_id: int) -> Response:
        project, _ = project_get_for(project_id=project_id, user=request.user, manager=True)
        webhook = webhook_get(project=project, webhook_id=webhook_id)
        page = webhook_deliveries(
            webhook=webhook,
            status=choice_filter(request, "status", WebhookDelivery.Status.values),
            limit=_int_param(request, "limit", 20, maximum=DELIVERIES_MAX_LIMIT) or 1,
            after=_int_param(request, "after", None, maximum=ID_MAX),
        )
        return Response(WebhookDeliveryPageSerializer(page).data)
