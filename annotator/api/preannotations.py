"""Pre-annotations over the API (managers): the sources imported, how much they cover and how the serving model
compares with each on the evaluation set; removing a source. Parse, check permission, call one selector or
service, render."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services


class ScoresSerializer(serializers.Serializer):
    micro_f1 = serializers.FloatField()
    macro_f1 = serializers.FloatField()
    precision = serializers.FloatField(help_text="share of the labels decided that were right")
    p_at_1 = serializers.FloatField(help_text="share of documents whose best label was right")


class ComparisonSerializer(serializers.Serializer):
    n_documents = serializers.IntegerField(help_text="labelled evaluation documents the source covers")
    model = ScoresSerializer(required=False, help_text="the model on those documents")
    source = ScoresSerializer(required=False, help_text="the source on them (it decides a label at score >= 0.5)")
    model_better = serializers.BooleanField()
    reason = serializers.CharField(required=False, help_text="why the model does not count as better")


class SourceSerializer(serializers.Serializer):
    source = serializers.CharField()
    preannotations = serializers.IntegerField(help_text="(document, label) scores stored")
    documents = serializers.IntegerField(help_text="documents with at least one")
    model_better = serializers.BooleanField(
        help_text="the serving model beat the source on the evaluation set: its own suggestions show"
    )
    comparison = ComparisonSerializer(allow_null=True, help_text="null: the serving model was not compared yet")


class PreAnnotationsSerializer(serializers.Serializer):
    model_version = serializers.IntegerField(allow_null=True, help_text="the serving version compared")
    documents = serializers.IntegerField(help_text="documents with pre-annotations of any source")
    sources = SourceSerializer(many=True, help_text="newest imported first")


class PreAnnotationsDeletedSerializer(serializers.Serializer):
    source = serializers.CharField()
    deleted = serializers.IntegerField()


class PreAnnotationsView(APIView):
    @extend_schema(
        responses={200: PreAnnotationsSerializer},
        summary="Pre-annotation sources (managers): counts, coverage and the serving model's comparison with each",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        version = selectors.serving_version(project=project)
        overview = selectors.preannotations_overview(project=project, version=version)
        return Response(PreAnnotationsSerializer(overview).data)

    @extend_schema(
        parameters=[OpenApiParameter("source", str, required=True, description="the source to remove")],
        responses={200: PreAnnotationsDeletedSerializer},
        summary="Remove a source's pre-annotations (managers; audited)",
    )
    def delete(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        source = request.query_params.get("source", "")
        deleted = services.preannotations_delete(project=project, user=request.user, source=source)
        return Response({"source": source.strip(), "deleted": deleted})
