"""Inter-annotator agreement over the API (reviewers and managers): the newest report, and asking for a new one.
Parse, check permission, call one selector or service, render."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services
from . import serializers as s
from .views import _int_param, _text_param


class AgreementValueSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True, help_text="null: undefined (no variance, too few documents)")
    low = serializers.FloatField(allow_null=True, help_text="95 % bootstrap interval over documents")
    high = serializers.FloatField(allow_null=True)


class AgreementOverallSerializer(serializers.Serializer):
    alpha_masi = AgreementValueSerializer(help_text="Krippendorff's alpha with the MASI distance over label sets")
    alpha_macro = AgreementValueSerializer(help_text="mean of the per-label alphas")
    ac1_pooled = AgreementValueSerializer(help_text="Gwet's AC1 pooled over the labels")
    masi_mean = AgreementValueSerializer(help_text="mean pairwise MASI agreement (no chance correction)")


class AgreementLabelSerializer(serializers.Serializer):
    label = serializers.CharField()
    units = serializers.IntegerField(help_text="documents with two or more answers")
    positives = serializers.IntegerField(help_text="answers that tick the label")
    documents = serializers.IntegerField(help_text="documents where at least one answer ticks it")
    alpha = AgreementValueSerializer(help_text="Krippendorff's alpha, nominal (ticked / not ticked)")
    ac1 = AgreementValueSerializer(help_text="Gwet's AC1")
    fleiss = AgreementValueSerializer(help_text="Fleiss' kappa (generalised form, see fleiss_rule)")
    cohen = AgreementValueSerializer(
        allow_null=True, help_text="Cohen's kappa; null unless two annotators answered all"
    )


class AgreementAnnotatorSerializer(serializers.Serializer):
    annotator = serializers.CharField()
    units = serializers.IntegerField(help_text="documents shared with other annotators")
    vs_others = serializers.DictField(allow_null=True, help_text="{units, masi}: mean MASI with the other answers")
    vs_gold = serializers.DictField(
        allow_null=True, help_text="{units, masi, precision, recall, f1} against the gold answers"
    )


class AgreementReportSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    documents = serializers.IntegerField()
    answers = serializers.IntegerField()
    job = serializers.IntegerField(allow_null=True)
    n_annotators = serializers.IntegerField()
    labels_in_play = serializers.IntegerField()
    gold_units = serializers.IntegerField()
    cohen_applies = serializers.BooleanField()
    equal_answers = serializers.BooleanField()
    fleiss_rule = serializers.CharField()
    bootstrap = serializers.DictField()
    seconds = serializers.FloatField(allow_null=True)
    overall = AgreementOverallSerializer()
    labels = AgreementLabelSerializer(many=True, help_text="worst alpha first, filtered by `label`, at most `limit`")
    labels_total = serializers.IntegerField(help_text="label rows in the report")
    annotators = AgreementAnnotatorSerializer(many=True)


class AgreementSerializer(serializers.Serializer):
    report = AgreementReportSerializer(allow_null=True, help_text="the newest report; null before the first")
    stale = serializers.BooleanField(help_text="answers or gold answers changed since it was computed")
    message = serializers.CharField()
    documents = serializers.IntegerField(help_text="documents with two or more answers now")
    gold_documents = serializers.IntegerField(help_text="documents with a gold answer now")
    job = serializers.DictField(allow_null=True, help_text="the newest agreement job (queued, running or finished)")
    active = serializers.BooleanField(help_text="a computation is queued or running")


class AgreementView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("label", str, description="only labels whose name contains this (case ignored)"),
            OpenApiParameter(
                "limit", int, description=f"label rows, worst alpha first, 1-{selectors.AGREEMENT_MAX_LIMIT} (100)"
            ),
        ],
        responses={200: AgreementSerializer},
        summary="Inter-annotator agreement (reviewers and managers): the newest report, per label and annotator",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, reviewer=True)
        overview = selectors.agreement_overview(
            project=project,
            label=_text_param(request, "label")[:255],
            limit=_int_param(request, "limit", 100, maximum=selectors.AGREEMENT_MAX_LIMIT) or 1,
        )
        return Response(AgreementSerializer(overview).data)

    @extend_schema(
        request=None,
        responses={202: s.JobSerializer},
        summary="Compute agreement now (or get the computation queued or running); 400 without overlap answers",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, reviewer=True)
        job = services.agreement_request(project=project, requested_by=request.user)
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
