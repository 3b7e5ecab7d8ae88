"""API views: parse input, check permission, call one service or selector, render."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date

from django.db import transaction
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import formats, selectors, services
from ..exceptions import NotFound, ProjectError
from ..importing import import_notes, parse_label_items, parse_label_upload, parse_records, parse_upload
from ..models import Annotation, Job, Membership, TrainingSchedule
from ..selectors.browse import BROWSE_MAX_LIMIT
from ..selectors.budgets import members_spent
from ..selectors.export import export_label_names
from ..selectors.taxonomy import label_detail, label_tree, labels_taxonomy, taxonomy_labels
from ..services.taxonomy import label_deprecate, label_merge, label_update, labels_import
from ..validation import ID_MAX, INT_MAX, text_problem, whole_number
from . import serializers as s
from .paging import (
    PAGE_PARAMETERS,
    bool_filter,
    bool_parameter,
    choice_filter,
    page_bounds,
    page_headers,
    page_parameters,
    paged,
)

SEARCH_MAX_HITS = 100  # selectors.label_search ranks at most this many


def _valid(serializer_class: type, data: object, **kwargs: object) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    if not serializer.is_valid():
        problems = [f"{field}: {' '.join(str(m) for m in messages)}" for field, messages in serializer.errors.items()]
        raise ProjectError("invalid request: " + "; ".join(problems), errors=problems)
    return dict(serializer.validated_data)


DATE_PARAMETERS = [
    OpenApiParameter("date_from", str, description="YYYY-MM-DD, inclusive"),
    OpenApiParameter("date_to", str, description="YYYY-MM-DD, inclusive"),
]


class ProjectListView(APIView):
    @extend_schema(
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("q", str, description="text the project's name contains (case ignored)"),
            bool_parameter("archived", "archived projects (1) or the others (0)"),
            OpenApiParameter("role", str, enum=Membership.Role.values, description="projects where you have this role"),
        ],
        responses=s.ProjectSerializer(many=True),
        summary="Projects you are a member of, newest first",
    )
    def get(self, request: Request) -> Response:
        query = _text_param(request, "q")
        archived = bool_filter(request, "archived")
        role = choice_filter(request, "role", Membership.Role.values)
        roles = dict(Membership.objects.filter(user=request.user).values_list("project_id", "role"))
        projects = selectors.projects_for_user(user=request.user)
        if query:
            projects = projects.filter(name__icontains=query)
        if archived is not None:
            projects = projects.filter(archived_at__isnull=not archived)
        if role is not None:
            projects = projects.filter(pk__in=[pk for pk, their_role in roles.items() if their_role == role])
        return paged(
            request, projects, lambda page: s.ProjectSerializer(page, many=True, context={"roles": roles}).data
        )

    @extend_schema(request=s.ProjectCreateSerializer, responses={201: s.ProjectSerializer}, summary="Create a project")
    def post(self, request: Request) -> Response:
        data = _valid(s.ProjectCreateSerializer, request.data)
        project = services.project_create_with_taxonomy(user=request.user, **data)
        body = s.ProjectSerializer(project, context={"roles": {project.pk: Membership.Role.MANAGER}}).data
        return Response(body, status=status.HTTP_201_CREATED)


class ProjectDetailView(APIView):
    @extend_schema(responses=s.ProjectSerializer, summary="A project's settings")
    def get(self, request: Request, project_id: int) -> Response:
        project, role = selectors.project_get_for(project_id=project_id, user=request.user)
        return Response(s.ProjectSerializer(project, context={"roles": {project.pk: role}}).data)

    @extend_schema(request=s.ProjectUpdateSerializer, responses=s.ProjectSerializer, summary="Change settings")
    def patch(self, request: Request, project_id: int) -> Response:
        project, role = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        data = _valid(s.ProjectUpdateSerializer, request.data, partial=True)
        with transaction.atomic():
            if "name" in data:
                project = services.project_rename(project=project, name=data.pop("name"), user=request.user)
            project = services.project_update(project=project, user=request.user, **data)
        return Response(s.ProjectSerializer(project, context={"roles": {project.pk: role}}).data)

    @extend_schema(
        request=s.ProjectDeleteSerializer,
        responses={204: None},
        summary="Delete the project with everything in it (managers; confirm with its name)",
    )
    def delete(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        data = _valid(s.ProjectDeleteSerializer, request.data)
        services.project_delete(project=project, user=request.user, confirm=data["confirm"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectArchiveView(APIView):
    """POST .../archive/ archives the project, POST .../restore/ brings it back (managers)."""

    archived = True

    @extend_schema(request=None, responses=s.ProjectSerializer, summary="Archive or restore the project")
    def post(self, request: Request, project_id: int) -> Response:
        project, role = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        project = services.project_archive(project=project, user=request.user, archived=self.archived)
        return Response(s.ProjectSerializer(project, context={"roles": {project.pk: role}}).data)


class MemberView(APIView):
    @extend_schema(request=s.MemberSerializer, responses={201: s.MemberSerializer}, summary="Add or change a member")
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        data = _valid(s.MemberSerializer, request.data)
        membership = services.member_add(project=project, user=request.user, **data)
        return Response(_member_out(project, membership), status=201)

    @extend_schema(
        parameters=[*PAGE_PARAMETERS, OpenApiParameter("role", str, enum=Membership.Role.values)],
        responses=s.MemberOutSerializer(many=True),
        summary="The project's members, quotas and counts, by username",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        role = choice_filter(request, "role", Membership.Role.values)
        members = project.memberships.select_related("user").order_by("user__username")
        if role is not None:
            members = members.filter(role=role)

        def render(page: list[Membership]) -> list[dict]:
            spent = members_spent(project=project, user_ids=[m.user_id for m in page])  # one query for the page
            return [_member_out(project, m, spent=spent.get(m.user_id, 0)) for m in page]

        return paged(request, members, render)


class MemberDetailView(APIView):
    @extend_schema(responses={204: None}, summary="Remove a member (their answers stay, attributed to them)")
    def delete(self, request: Request, project_id: int, username: str) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        services.member_remove(project=project, username=username, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _member_out(project, membership, *, spent: int | None = None) -> dict:
    return {
        "username": membership.user.username,
        "role": membership.role,
        "quota": membership.quota,
        "spent": selectors.member_spent(project=project, user=membership.user) if spent is None else spent,
    }


class DocumentImportView(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        parameters=[
            OpenApiParameter("annotator", str, description="documents with an answer by this username"),
            OpenApiParameter("label", str, description="documents with this label (a name) in an answer"),
            *DATE_PARAMETERS,
            OpenApiParameter("evaluation", bool, description="in the evaluation set or not (managers only)"),
            OpenApiParameter("answered", bool, description="answered or not"),
            OpenApiParameter(
                "agreement_below", float, description="documents whose answers agree less than this (0-1)"
            ),
            OpenApiParameter(
                "model_disagreement", bool, description="with an answer that differs from the model's pre-ticks"
            ),
            OpenApiParameter("gold", bool, description="with a gold answer (adjudicated) or not"),
            OpenApiParameter("after", int, description="the previous page's `next` (a document id)"),
            OpenApiParameter("limit", int, description=f"documents per page, 1-{BROWSE_MAX_LIMIT} (default 50)"),
        ],
        responses={200: s.BrowsePageSerializer},
        summary="Browse documents and their answers (reviewers and managers), paged by id",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, role = selectors.project_get_for(project_id=project_id, user=request.user, reviewer=True)
        manager = role == Membership.Role.MANAGER
        date_from, date_to = _date_range(request)
        flags = {name: bool_filter(request, name) for name in ("evaluation", "answered", "model_disagreement", "gold")}
        if flags["evaluation"] is not None and not manager:
            raise ProjectError("only managers may filter by the evaluation set", status=403)
        agreement_below = None
        if raw_agreement := request.query_params.get("agreement_below", ""):
            try:
                agreement_below = float(raw_agreement)
            except ValueError:
                agreement_below = -1.0
            if not 0 <= agreement_below <= 1:
                raise ProjectError("agreement_below must be a number from 0 to 1")
        filters = selectors.BrowseFilters(
            annotator=_text_param(request, "annotator") or None,
            label=_text_param(request, "label") or None,
            date_from=date_from,
            date_to=date_to,
            evaluation=flags["evaluation"],
            answered=flags["answered"],
            agreement_below=agreement_below,
            model_disagreement=flags["model_disagreement"],
            gold=flags["gold"],
        )
        page = selectors.documents_browse(
            project=project,
            filters=filters,
            after=_int_param(request, "after", None, maximum=ID_MAX),
            limit=_int_param(request, "limit", 50, maximum=BROWSE_MAX_LIMIT) or 1,
        )
        if not manager:  # a reviewer does not learn which documents measure the model
            for document in page["documents"]:
                document["evaluation"] = None
        return Response(page)

    @extend_schema(
        request={
            "application/json": s.DocumentRecordSerializer(many=True),
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            },
        },
        parameters=[
            OpenApiParameter("create_labels", bool, description="Add labels the project does not have yet"),
            OpenApiParameter(
                "prediction_source", str, description='The source of predictions that name none (default "import")'
            ),
        ],
        responses={201: s.ImportResultSerializer},
        summary="Import documents (JSON list, or a JSONL / CSV file); all or nothing",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        upload = request.FILES.get("file")
        if upload is not None:
            records, errors = parse_upload(upload)
        else:
            records, errors = parse_records(request.data)
        create_labels = request.query_params.get("create_labels", "").lower() in {"1", "true", "yes"}
        result = services.documents_import(
            project=project,
            user=request.user,
            records=records,
            parse_errors=errors,
            create_labels=create_labels,
            prediction_source=request.query_params.get("prediction_source")
            or (request.data.get("prediction_source") if upload is not None else None)
            or services.DEFAULT_PREDICTION_SOURCE,
        )
        data = dict(s.ImportResultSerializer(result).data)
        if notes := import_notes(records):  # what the file carried that was not imported, never dropped silently
            data["notes"] = notes
        return Response(data, status=status.HTTP_201_CREATED)


class NextView(APIView):
    @extend_schema(
        responses={
            200: s.NextSerializer,
            204: OpenApiResponse(
                description="Nothing to label (X-Reason: empty), budget or quota spent (budget|quota)"
            ),
        },
        summary="Lease the next document to label",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, role = selectors.project_get_for(project_id=project_id, user=request.user)
        served = services.queue_lease_next(project=project, user=request.user)
        if isinstance(served, services.NothingToServe):
            response = Response(status=status.HTTP_204_NO_CONTENT)
            response["X-Reason"] = served.reason
            return response
        item, document = served.item, served.document
        return Response(
            {
                "document": {
                    "id": document.pk,
                    "external_id": document.external_id,
                    "text": document.text,
                    "metadata": document.metadata,
                },
                # Why the document was picked is for managers: an annotator must not tell evaluation documents
                # from active-learning picks (their answers would differ).
                "strategy": item.strategy if role == Membership.Role.MANAGER else None,
                "model_version": item.model_version.number if item.model_version_id else None,
                "score": item.score if role == Membership.Role.MANAGER else None,
                "suggestions": served.suggestions,
                "threshold": selectors.effective_threshold(project=project, version=item.model_version),
                "pretick": served.pretick or selectors.pretick_rule(project=project, version=item.model_version),
                "lease_expires_at": item.lease_expires_at,
                "lease_seconds": project.lease_seconds,
                "budget": _budget_out(served.budget or selectors.budget_for(project=project)),
            }
        )


def _budget_out(budget: selectors.Budget) -> dict:
    return {"label_budget": budget.budget, "spent": budget.spent, "remaining": budget.remaining}


class LeaseView(APIView):
    @extend_schema(
        request=s.LeaseInputSerializer,
        responses={200: s.LeaseSerializer},
        summary="Renew (the page does, while open) or release the lease on a served document",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user)
        data = _valid(s.LeaseInputSerializer, request.data)
        if data["action"] == "release":
            services.queue_release(project=project, user=request.user, document_id=data["document"])
            return Response({"document": data["document"], "held": False, "lease_expires_at": None})
        item = services.lease_renew(project=project, user=request.user, document_id=data["document"])
        return Response(
            {
                "document": data["document"],
                "held": item is not None,
                "lease_expires_at": item.lease_expires_at if item is not None else None,
            }
        )


class SkipView(APIView):
    @extend_schema(request=s.SkipInputSerializer, responses={204: None}, summary="Skip a leased document")
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user)
        data = _valid(s.SkipInputSerializer, request.data)
        services.document_skip(project=project, user=request.user, document_id=data["document"])
        return Response(status=status.HTTP_204_NO_CONTENT)


def _annotation_out(annotation: Annotation, role: str) -> dict:
    return {
        "id": annotation.pk,
        "document": annotation.document_id,
        "labels": sorted(annotation.labels.values_list("name", flat=True)),
        "rejected": sorted(annotation.decisions.filter(decision="rejected").values_list("label__name", flat=True)),
        # Why the document was picked is for managers (an annotator must not tell evaluation documents apart).
        "strategy": annotation.strategy if role == Membership.Role.MANAGER else None,
        "model_version": annotation.model_version.number if annotation.model_version_id else None,
        "seconds_spent": annotation.seconds_spent,
        "updated_at": annotation.updated_at,
    }


class AnnotationView(APIView):
    @extend_schema(
        request=s.AnnotationInputSerializer,
        responses={201: s.AnnotationSerializer},
        summary="Submit labels for a document (replaces your earlier answer)",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, role = selectors.project_get_for(project_id=project_id, user=request.user)
        data = _valid(s.AnnotationInputSerializer, request.data)
        annotation = services.annotation_submit(
            project=project,
            user=request.user,
            document_id=data["document"],
            labels=data["labels"],
            rejected=data.get("rejected", []),
            seconds_spent=data.get("seconds_spent"),
            source=data.get("source", "api"),
        )
        return Response(_annotation_out(annotation, role), status=status.HTTP_201_CREATED)


class AnnotationDetailView(APIView):
    @extend_schema(
        responses={200: s.AnnotationDetailSerializer},
        summary="Your answer for a document, with what you did with each suggestion (to revise it: undo)",
    )
    def get(self, request: Request, project_id: int, document_id: int) -> Response:
        project, role = selectors.project_get_for(project_id=project_id, user=request.user)
        detail = selectors.annotation_detail(project=project, user=request.user, document_id=document_id)
        if role != Membership.Role.MANAGER:  # an annotator must not tell evaluation documents from picks
            detail["strategy"] = None
        return Response(detail)


class LabelView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, description="words to find in label names (case and accents ignored)"),
            *page_parameters(default=20, maximum=SEARCH_MAX_HITS),
            OpenApiParameter(
                "document", int, description="break ties within a tier by the model's scores for this document"
            ),
            OpenApiParameter(
                "semantic",
                bool,
                description="fill the rest with labels close in meaning (names, alternative names and descriptions "
                "embedded with the project's encoder; slower: loads the encoder once per web process)",
            ),
        ],
        responses=s.LabelHitSerializer(many=True),
        summary="Search labels: exact, then prefix, word-prefix and other matches (alternative names and ue/oe/ae "
        "spellings included); the document's scores and frequency break ties; then, with semantic, by meaning",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, role = selectors.project_get_for(project_id=project_id, user=request.user)
        limit, offset = page_bounds(request, default=20, maximum=SEARCH_MAX_HITS)
        document = _int_param(request, "document", None, maximum=ID_MAX)
        scores = (
            selectors.document_label_scores(project=project, user=request.user, document_id=document)
            if document is not None
            else None
        )
        semantic = request.query_params.get("semantic", "").lower() in {"1", "true", "yes"}
        # The search ranks as far as this page (at most SEARCH_MAX_HITS labels), so a keystroke's first page costs
        # what it did before paging; the total is known once fewer hits than asked for were found.
        wanted = min(SEARCH_MAX_HITS, offset + limit)
        ranked = selectors.label_search(
            project=project, query=_text_param(request, "q"), limit=wanted, scores=scores, semantic=semantic
        )
        exact = len(ranked) < wanted or wanted == SEARCH_MAX_HITS
        hits = ranked[offset : offset + limit]
        out = [
            {
                "id": h.id,
                "name": h.name,
                "description": h.description,
                "frequency": h.frequency,
                "score": h.score,
                "match": h.match,
                "alias": h.alias,
            }
            for h in hits
        ]
        if role == Membership.Role.MANAGER:  # managers also see the taxonomy fields
            extra = labels_taxonomy(label_ids=[h.id for h in hits])
            for row in out:
                taxonomy = extra.get(row["id"], {})
                row.update({key: taxonomy.get(key) for key in ("external_id", "parent", "alt_names", "deprecated")})
        headers = page_headers(
            request, total=len(ranked) if exact else None, limit=limit, offset=offset, more=len(ranked) == wanted
        )
        return Response(out, headers=headers)

    @extend_schema(
        request={"application/json": {"type": "array", "items": {"type": "string"}}},
        responses={201: s.LabelSerializer(many=True)},
        summary="Add labels (names or {name, description} objects)",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        items = request.data.get("labels") if isinstance(request.data, dict) else request.data
        if not isinstance(items, list):
            raise ProjectError('expected a JSON list of label names or {"labels": [...]}')
        labels = services.labels_add(project=project, labels=items, user=request.user)
        return Response([{"id": x.pk, "name": x.name, "description": x.description} for x in labels], status=201)


class StatsView(APIView):
    @extend_schema(responses={200: dict}, summary="Budget, counts, serving model and job status")
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        return Response(selectors.project_stats(project=project))


class TrainView(APIView):
    @extend_schema(
        request=s.TrainRequestSerializer,
        responses={202: s.JobSerializer},
        summary="Queue a training run now (full, incremental or auto); returns the queued or running run",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        data = _valid(s.TrainRequestSerializer, request.data or {})
        job = services.training_request(project=project, user=request.user, mode=data.get("mode", ""))
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class AdaptView(APIView):
    @extend_schema(
        request=None,
        responses={202: s.JobSerializer},
        summary="Queue an encoder adaptation (SetFit-style, on every labelled document) followed by a full retrain",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        job = services.adaptation_request(project=project, user=request.user)
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class SavingsView(APIView):
    @extend_schema(
        responses={200: s.SavingsSerializer},
        summary="Does active learning pay here? The newest estimate of the labels the picks saved against random",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user)
        return Response(selectors.savings_overview(project=project))

    @extend_schema(
        request=None,
        responses={202: s.JobSerializer},
        summary="Queue a new estimate (or get the one queued or running); 400 with what is missing without data",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        job = services.savings_request(project=project, user=request.user)
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class SavingsAdoptView(APIView):
    @extend_schema(
        request=None,
        responses={200: s.ProjectSerializer},
        summary="Set the project's strategy to the one the newest estimate favours; 400 when it favours none",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, role = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        project = services.savings_adopt(project=project, user=request.user)
        return Response(s.ProjectSerializer(project, context={"roles": {project.pk: role}}).data)


class ModelListView(APIView):
    @extend_schema(
        parameters=[*PAGE_PARAMETERS, bool_parameter("serving", "the serving version (1) or the others (0)")],
        responses=s.ModelVersionSerializer(many=True),
        summary="Model versions, newest first",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        serving = bool_filter(request, "serving")
        versions = project.model_versions.order_by("-number").defer("stop_predictions", "evaluation_per_label")
        if serving is not None:
            versions = versions.filter(is_serving=serving)
        return paged(request, versions, lambda page: s.ModelVersionSerializer(page, many=True).data)


class ModelPromoteView(APIView):
    @extend_schema(request=None, responses={200: s.ModelVersionSerializer}, summary="Serve this version (rollback)")
    def post(self, request: Request, project_id: int, number: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        version = services.version_promote(project=project, number=number, user=request.user)
        return Response(s.ModelVersionSerializer(version).data)


class ModelCompareView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("a", int, required=True), OpenApiParameter("b", int, required=True)],
        responses={200: s.ModelCompareSerializer},
        summary="Compare two versions: metric deltas, per-label deltas, documents whose predictions changed",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        if not (a.isdigit() and b.isdigit()):
            raise ProjectError("give the two version numbers to compare as ?a=&b=")
        return Response(selectors.version_compare(project=project, a=a, b=b))


def _job(project, job_id: int) -> Job:
    job = Job.objects.filter(project=project, pk=job_id).select_related("model_version").first()
    if job is None:
        raise NotFound(f"job {job_id} not found in this project")
    return job


def _schedule(project, schedule_id: int) -> TrainingSchedule:
    schedule = selectors.training_schedules(project=project).filter(pk=schedule_id).first()
    if schedule is None:
        raise NotFound(f"schedule {schedule_id} not found in this project")
    return schedule


class JobDetailView(APIView):
    @extend_schema(responses=s.JobSerializer, summary="One job: status, progress, times, worker, device, error")
    def get(self, request: Request, project_id: int, job_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        return Response(s.JobSerializer(_job(project, job_id)).data)


class JobCancelView(APIView):
    @extend_schema(
        request=None,
        responses={200: s.JobSerializer},
        summary="Cancel a job: a queued one at once, a running one at its next progress report",
    )
    def post(self, request: Request, project_id: int, job_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        job = services.job_cancel(job=_job(project, job_id), user=request.user)
        return Response(s.JobSerializer(job).data)


class ScheduleListView(APIView):
    @extend_schema(
        parameters=[*PAGE_PARAMETERS, bool_parameter("enabled", "enabled schedules (1) or disabled ones (0)")],
        responses=s.ScheduleSerializer(many=True),
        summary="Training schedules, oldest first",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        enabled = bool_filter(request, "enabled")
        schedules = selectors.training_schedules(project=project).order_by("id")
        if enabled is not None:
            schedules = schedules.filter(enabled=enabled)
        return paged(request, schedules, lambda page: s.ScheduleSerializer(page, many=True).data)

    @extend_schema(request=s.ScheduleSerializer, responses={201: s.ScheduleSerializer}, summary="Add a schedule")
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        data = _valid(s.ScheduleSerializer, request.data)
        schedule = services.schedule_save(project=project, data=data, user=request.user)
        return Response(s.ScheduleSerializer(schedule).data, status=status.HTTP_201_CREATED)


class ScheduleDetailView(APIView):
    @extend_schema(responses=s.ScheduleSerializer, summary="A training schedule")
    def get(self, request: Request, project_id: int, schedule_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        return Response(s.ScheduleSerializer(_schedule(project, schedule_id)).data)

    @extend_schema(request=s.ScheduleSerializer, responses=s.ScheduleSerializer, summary="Change a schedule")
    def patch(self, request: Request, project_id: int, schedule_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        schedule = _schedule(project, schedule_id)
        current = s.ScheduleSerializer(schedule).data
        data = {**current, **_valid(s.ScheduleSerializer, request.data, partial=True)}
        schedule = services.schedule_save(project=project, data=data, user=request.user, schedule=schedule)
        return Response(s.ScheduleSerializer(schedule).data)

    @extend_schema(request=None, responses={204: None}, summary="Delete a schedule")
    def delete(self, request: Request, project_id: int, schedule_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        services.schedule_delete(schedule=_schedule(project, schedule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobListView(APIView):
    @extend_schema(
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("kind", str, enum=Job.Kind.values),
            OpenApiParameter("status", str, enum=Job.Status.values),
        ],
        responses=s.JobSerializer(many=True),
        summary="Jobs, newest first",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        kind = choice_filter(request, "kind", Job.Kind.values)
        status_ = choice_filter(request, "status", Job.Status.values)
        jobs = Job.objects.filter(project=project).select_related("model_version").order_by("-id")
        if kind is not None:
            jobs = jobs.filter(kind=kind)
        if status_ is not None:
            jobs = jobs.filter(status=status_)
        return paged(request, jobs, lambda page: s.JobSerializer(page, many=True).data)


def _jsonl(rows: Iterator[dict]) -> Iterator[str]:
    return formats.jsonl_export(rows)


def _csv(rows: Iterator[dict]) -> Iterator[str]:
    return formats.csv_export(rows)


EXPORT_FORMATS = ["jsonl", "csv", "labelstudio", "parquet"]


class ExportView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=EXPORT_FORMATS),
            OpenApiParameter("include_unlabelled", bool),
            OpenApiParameter("multi_hot", bool, description="format=csv: one 0/1 column per label instead of labels"),
        ],
        responses={
            (200, "application/x-ndjson"): str,
            (200, "text/csv"): str,
            (200, "application/json"): s.LabelStudioTaskSerializer(many=True),
            (200, "application/vnd.apache.parquet"): bytes,
        },
        summary="Export documents with their labels: JSONL, CSV (labels or multi-hot), Label Studio JSON or Parquet",
    )
    def get(self, request: Request, project_id: int) -> StreamingHttpResponse | HttpResponse:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in EXPORT_FORMATS:
            raise ProjectError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
        include = request.query_params.get("include_unlabelled", "").lower() in {"1", "true", "yes"}
        multi_hot = request.query_params.get("multi_hot", "").lower() in {"1", "true", "yes"}
        if multi_hot and fmt != "csv":
            raise ProjectError("multi_hot applies to format=csv only")
        services.webhook_emit_export(project=project, user=request.user, fmt=fmt, include_unlabelled=include)
        rows = selectors.export_rows(project=project, include_unlabelled=include)
        name = f"project-{project.pk}"
        if fmt == "parquet":  # built in memory: Parquet is written whole, not streamed
            response: HttpResponse | StreamingHttpResponse = HttpResponse(
                formats.parquet_bytes(rows), content_type="application/vnd.apache.parquet"
            )
            name += ".parquet"
        elif fmt == "labelstudio":
            response = StreamingHttpResponse(
                formats.label_studio_export(rows), content_type="application/json; charset=utf-8"
            )
            name += "-labelstudio.json"
        elif fmt == "csv" and multi_hot:
            names = export_label_names(project=project)
            response = StreamingHttpResponse(
                formats.csv_multi_hot_export(rows, names), content_type="text/csv; charset=utf-8"
            )
            name += "-multi-hot.csv"
        elif fmt == "csv":
            response = StreamingHttpResponse(_csv(rows), content_type="text/csv; charset=utf-8")
            name += ".csv"
        else:
            response = StreamingHttpResponse(_jsonl(rows), content_type="application/x-ndjson; charset=utf-8")
            name += ".jsonl"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class LearningCurveView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["json", "csv"])],
        responses={200: s.LearningCurveSerializer, (200, "text/csv"): str},
        summary="Micro-F1 on the evaluation set against training labels, the fitted curve, forecasts and advice",
    )
    def get(self, request: Request, project_id: int) -> Response | HttpResponse:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        fmt = request.query_params.get("format", "json")
        if fmt not in {"json", "csv"}:
            raise ProjectError("format must be json or csv")
        curve = selectors.learning_curve(project=project)
        if fmt == "json":
            return Response(curve)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["version", "training_labels", "metric", "value", "low", "high", "evaluated_on", "agreement"])
        for p in curve["points"]:
            writer.writerow(
                [
                    p["version"],
                    p["labels"],
                    curve["metric"],
                    p["value"],
                    p["low"],
                    p["high"],
                    p["evaluated_on"],
                    "" if p["agreement"] is None else p["agreement"],
                ]
            )
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="project-{project.pk}-learning-curve.csv"'
        return response


def _date_range(request: Request) -> tuple[date | None, date | None]:
    values = []
    for name in ("date_from", "date_to"):
        raw = request.query_params.get(name, "")
        try:
            values.append(date.fromisoformat(raw) if raw else None)
        except ValueError as exc:
            raise ProjectError(f"{name} must be a date as YYYY-MM-DD") from exc
    if values[0] and values[1] and values[0] > values[1]:
        raise ProjectError("date_from must not be after date_to")
    return values[0], values[1]


def _int_param(request: Request, name: str, default: int | None, maximum: int = INT_MAX) -> int | None:
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    value = whole_number(raw, maximum=maximum)
    if value is None:
        raise ProjectError(f"{name} must be an integer from 0 to {maximum}")
    return value


def _text_param(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    problem = text_problem(value)
    if problem:
        raise ProjectError(f"{name} {problem}")
    return value


class LabelCoverageView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, description="words of the label name (case and accents ignored)"),
            OpenApiParameter("max_positives", int, description="only labels with at most this many positives"),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
            *DATE_PARAMETERS,
        ],
        responses={200: s.LabelCoverageSerializer},
        summary="Positives per label: how many have none or fewer than 5, the distribution, rarest labels first",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        date_from, date_to = _date_range(request)
        return Response(
            selectors.label_coverage(
                project=project,
                query=_text_param(request, "q"),
                max_positives=_int_param(request, "max_positives", None),
                date_from=date_from,
                date_to=date_to,
                limit=_int_param(request, "limit", 50) or 50,
                offset=_int_param(request, "offset", 0) or 0,
            )
        )


class AnnotatorStatsView(APIView):
    @extend_schema(
        parameters=[*PAGE_PARAMETERS, *DATE_PARAMETERS],
        responses={200: s.AnnotatorStatsSerializer(many=True)},
        summary="Per annotator: documents, documents per hour, median seconds, share of suggestions accepted",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        date_from, date_to = _date_range(request)
        return paged(request, selectors.annotator_stats(project=project, date_from=date_from, date_to=date_to))


# The taxonomy -------------------------------------------------------------------------------------------------------


class LabelImportView(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        request={
            "application/json": {"type": "array", "items": {"type": "object"}},
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            },
        },
        responses={200: s.LabelImportResultSerializer},
        summary="Import a label file (CSV / TSV with a header, or JSON): name, description, alt_names, external_id, "
        "parent; creates new labels and updates existing ones (by external id, else name); all or nothing",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        upload = request.FILES.get("file")
        parsed = parse_label_upload(upload) if upload is not None else parse_label_items(request.data)
        result = labels_import(project=project, user=request.user, records=parsed.records, parse_errors=parsed.errors)
        return Response({**result, "ignored_columns": parsed.ignored_columns})


class LabelTreeView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("parent", int, description="a label id; none: the roots"),
            OpenApiParameter("limit", int, description="default 200, at most 1000"),
            OpenApiParameter("offset", int),
        ],
        responses={200: s.LabelTreeSerializer},
        summary="The hierarchy, one level at a time: the labels under `parent` by name (deprecated ones left out)",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user)
        parent = _int_param(request, "parent", None, maximum=ID_MAX)
        limit = _int_param(request, "limit", 200) or 1
        offset = _int_param(request, "offset", 0) or 0
        return Response(label_tree(project=project, parent_id=parent, limit=limit, offset=offset))


class LabelTaxonomyView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, description="words of the name or an alternative name, or the external id"),
            OpenApiParameter("status", str, enum=["all", "active", "deprecated"]),
            OpenApiParameter("limit", int, description="default 50, at most 200"),
            OpenApiParameter("offset", int),
        ],
        responses={200: s.LabelTaxonomyListSerializer},
        summary="Labels with their taxonomy fields (deprecated ones too), by name: the manage page's list",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        status_ = request.query_params.get("status", "all")
        if status_ not in {"all", "active", "deprecated"}:
            raise ProjectError("status must be all, active or deprecated")
        return Response(
            taxonomy_labels(
                project=project,
                query=_text_param(request, "q"),
                status=status_,
                limit=_int_param(request, "limit", 50) or 1,
                offset=_int_param(request, "offset", 0) or 0,
            )
        )


class LabelDetailView(APIView):
    @extend_schema(responses={200: s.LabelTaxonomySerializer}, summary="A label with its taxonomy fields")
    def get(self, request: Request, project_id: int, label_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user)
        return Response(label_detail(project=project, label_id=label_id))

    @extend_schema(
        request=s.LabelUpdateSerializer,
        responses={200: s.LabelTaxonomySerializer},
        summary="Edit a label: name (a rename keeps the old name as an alternative name), description, alternative "
        "names, external id, parent",
    )
    def patch(self, request: Request, project_id: int, label_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        data = _valid(s.LabelUpdateSerializer, request.data, partial=True)
        label_update(project=project, user=request.user, label_id=label_id, **data)
        return Response(label_detail(project=project, label_id=label_id))


class LabelMergeView(APIView):
    @extend_schema(
        request=s.LabelMergeSerializer,
        responses={200: s.LabelTaxonomySerializer},
        summary="Merge this label into another: answers follow, its names become alternative names, it is deleted",
    )
    def post(self, request: Request, project_id: int, label_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        data = _valid(s.LabelMergeSerializer, request.data)
        target = label_merge(project=project, user=request.user, label_id=label_id, into_id=data["into"])
        return Response(label_detail(project=project, label_id=target.pk))


class LabelDeprecateView(APIView):
    deprecated = True

    @extend_schema(
        request=None,
        responses={200: s.LabelTaxonomySerializer},
        summary="Deprecate a label (no longer offered to experts; answers and exports keep it)",
    )
    def post(self, request: Request, project_id: int, label_id: int) -> Response:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
        label_deprecate(project=project, user=request.user, label_id=label_id, deprecated=self.deprecated)
        return Response(label_detail(project=project, label_id=label_id))


class LabelRestoreView(LabelDeprecateView):
    deprecated = False

    @extend_schema(request=None, responses={200: s.LabelTaxonomySerializer}, summary="Restore a deprecated label")
    def post(self, request: Request, project_id: int, label_id: int) -> Response:
        return super().post(request, project_id, label_id)
