"""Review and adjudication over the API (reviewers and managers) and the audit log (managers): parse, check
permission, call one selector or service, render."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors
from ..models import AuditEntry
from ..selectors.audit import AUDIT_MAX_LIMIT, audit_entries
from ..selectors.review import REVIEW_MAX_LIMIT, review_item, review_queue
from ..services.adjudication import NOTE_MAX, adjudication_delete, adjudication_save
from ..validation import ID_MAX
from .views import _int_param, _text_param, _valid


class GoldInSerializer(serializers.Serializer):
    labels = serializers.ListField(
        child=serializers.CharField(trim_whitespace=True, max_length=255),
        allow_empty=True,
        help_text="Label names; an empty list: none of the labels apply.",
    )
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=NOTE_MAX)


class GoldSerializer(serializers.Serializer):
    labels = serializers.ListField(child=serializers.CharField())
    reviewer = serializers.CharField()
    note = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ReviewQueueDocumentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    text = serializers.CharField(help_text="The first 300 characters.")
    agreement = serializers.FloatField(help_text="Mean pairwise Jaccard agreement of its answers (below 1).")
    answers_count = serializers.IntegerField()


class ReviewQueueSerializer(serializers.Serializer):
    documents = ReviewQueueDocumentSerializer(many=True)
    next = serializers.IntegerField(allow_null=True, help_text="Pass as `after` for the next page; null: the last.")
    remaining = serializers.IntegerField(help_text="Documents in the whole queue.")


class ReviewSuggestionSerializer(serializers.Serializer):
    label = serializers.CharField()
    score = serializers.FloatField()
    preselected = serializers.BooleanField()


class ReviewAnswerSerializer(serializers.Serializer):
    annotator = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField())
    source = serializers.CharField()
    seconds_spent = serializers.FloatField(allow_null=True)
    model_agreement = serializers.FloatField(allow_null=True)
    suggestions = ReviewSuggestionSerializer(many=True, help_text="What the model suggested to this annotator.")
    updated_at = serializers.DateTimeField()


class ReviewVoteSerializer(serializers.Serializer):
    label = serializers.CharField()
    votes = serializers.IntegerField()
    majority = serializers.BooleanField(help_text="A strict majority of the answers chose it.")
    gold = serializers.BooleanField()
    checked = serializers.BooleanField(help_text="Pre-ticked on the review page: the gold's, else the majority's.")


class ReviewItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    text = serializers.CharField()
    agreement = serializers.FloatField(allow_null=True)
    answers = ReviewAnswerSerializer(many=True)
    gold = GoldSerializer(allow_null=True)
    votes = ReviewVoteSerializer(many=True)


class AuditEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    username = serializers.CharField(allow_blank=True)
    target = serializers.ChoiceField(choices=AuditEntry.Target.choices)
    action = serializers.ChoiceField(choices=AuditEntry.Action.choices)
    object_ref = serializers.CharField(allow_blank=True)
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)


class AuditPageSerializer(serializers.Serializer):
    entries = AuditEntrySerializer(many=True)
    next = serializers.IntegerField(allow_null=True, help_text="Pass as `after` for older entries; null: the last.")


class ReviewQueueView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="the previous page's `next` (a document id)"),
            OpenApiParameter("limit", int, description=f"documents per page, 1-{REVIEW_MAX_LIMIT} (default 50)"),
        ],
        responses={200: ReviewQueueSerializer},
        operation_id="review_queue",
        summary="The review queue: documents whose answers disagree and that have no gold answer, worst first",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, reviewer=True)
        page = review_queue(
            project=project,
            after=_int_param(request, "after", None, maximum=ID_MAX),
            limit=_int_param(request, "limit", 50, maximum=REVIEW_MAX_LIMIT) or 1,
        )
        return Response(ReviewQueueSerializer(page).data)


class ReviewItemView(APIView):
    @extend_schema(
        responses={200: ReviewItemSerializer},
        operation_id="review_item",
        summary="A document to review: its answers side by side, the votes per label, its gold answer",
    )
    def get(self, request: Request, project_id: int, document_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, reviewer=True)
        return Response(ReviewItemSerializer(review_item(project=project, document_id=document_id)).data)


class GoldView(APIView):
    @extend_schema(
        request=GoldInSerializer,
        operation_id="gold_save",
        responses={200: ReviewItemSerializer},
        summary="Decide the document's gold answer (reviewers and managers); replaces an earlier one",
    )
    def put(self, request: Request, project_id: int, document_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, reviewer=True)
        data = _valid(GoldInSerializer, request.data)
        adjudication_save(
            project=project, reviewer=request.user, document_id=document_id, labels=data["labels"], note=data["note"]
        )
        return Response(ReviewItemSerializer(review_item(project=project, document_id=document_id)).data)

    @extend_schema(
        request=None, responses={204: None}, operation_id="gold_delete", summary="Remove the document's gold answer"
    )
    def delete(self, request: Request, project_id: int, document_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, reviewer=True)
        adjudication_delete(project=project, reviewer=request.user, document_id=document_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("target", str, enum=AuditEntry.Target.values, description="one kind of change"),
            OpenApiParameter("after", int, description="the previous page's `next` (an entry id)"),
            OpenApiParameter("limit", int, description=f"entries per page, 1-{AUDIT_MAX_LIMIT} (default 50)"),
        ],
        responses={200: AuditPageSerializer},
        operation_id="audit_log",
        summary="The audit log, newest first (managers): who changed what, when, before and after",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        page = audit_entries(
            project=project,
            target=_text_param(request, "target") or None,
            after=_int_param(request, "after", None, maximum=ID_MAX),
            limit=_int_param(request, "limit", 50, maximum=AUDIT_MAX_LIMIT) or 1,
        )
        return Response(AuditPageSerializer(page).data)
