"""Reads for inter-annotator agreement: what the AGREEMENT job computes on, the cheap fingerprint that says whether
it changed, and the newest report with whether it is stale."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Max, Q

from ..models import (
    Adjudication,
    AdjudicationLabel,
    AgreementReport,
    Annotation,
    AnnotationLabel,
    Document,
    Job,
    Label,
    Project,
)
from .jobs import job_summary

AGREEMENT_JOB_FIELDS = ("id", "status", "progress", "message", "error", "reason", "created_at", "finished_at")
AGREEMENT_MAX_LIMIT = 50_000  # label rows per API answer


@dataclass
class AgreementData:
    """The answers the job computes on: per document (two or more answers, or a gold answer) a mapping username ->
    label ids, its gold label ids (or None), the project's label ids and names, and the fingerprint read first."""

    units: list[dict[str, set[int]]] = field(default_factory=list)
    gold: list[set[int] | None] = field(default_factory=list)
    label_ids: list[int] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    fingerprint: str = ""


def agreement_fingerprint(*, project: Project) -> str:
    """A digest of the answers agreement is computed on: count and newest change of the answers to documents with
    two or more answers, and of the gold answers. Two aggregate queries on the project's indexed rows (the answers
    of its overlap documents, its adjudications); the empty string when there is neither."""
    answers = Annotation.objects.filter(project=project, document__answers_count__gte=2).aggregate(
        n=Count("id"), last=Max("updated_at")
    )
    gold = Adjudication.objects.filter(project=project).aggregate(n=Count("id"), last=Max("updated_at"))
    if not answers["n"] and not gold["n"]:
        return ""
    text = "|".join(
        str(part) for part in (answers["n"], answers["last"] and answers["last"].isoformat(), gold["n"], gold["last"])
    )
    return hashlib.sha256(text.encode()).hexdigest()


def agreement_data(*, project: Project) -> AgreementData:
    """Everything the AGREEMENT job reads, in four queries: the fingerprint (read first, so answers arriving while
    loading make the report stale, never silently fresh), the answers with their labels and annotators' usernames,
    the gold answers, the label names."""
    fingerprint = agreement_fingerprint(project=project)
    documents = Document.objects.filter(project=project).filter(Q(answers_count__gte=2) | Q(adjudication__isnull=False))
    answers = Annotation.objects.filter(project=project, document__in=documents.values("id"))
    index: dict[int, int] = {}
    units: list[dict[str, set[int]]] = []
    owner: dict[int, tuple[int, str]] = {}
    for annotation_id, document_id, username in answers.order_by("document_id", "id").values_list(
        "id", "document_id", "annotator__username"
    ):
        if document_id not in index:
            index[document_id] = len(units)
            units.append({})
        units[index[document_id]][username] = set()
        owner[annotation_id] = (index[document_id], username)
    for annotation_id, label_id in AnnotationLabel.objects.filter(annotation__in=answers.values("id")).values_list(
        "annotation_id", "label_id"
    ):
        unit, username = owner[annotation_id]
        units[unit][username].add(label_id)
    gold: list[set[int] | None] = [None] * len(units)
    gold_documents = Adjudication.objects.filter(project=project, document__in=documents.values("id"))
    for document_id in gold_documents.values_list("document_id", flat=True):
        if document_id in index:  # a gold answer to a document nobody answered compares with no one
            gold[index[document_id]] = set()
    for document_id, label_id in AdjudicationLabel.objects.filter(adjudication__in=gold_documents).values_list(
        "adjudication__document_id", "label_id"
    ):
        if document_id in index and (gold_set := gold[index[document_id]]) is not None:
            gold_set.add(label_id)
    names = dict(Label.objects.filter(project=project).values_list("id", "name"))
    return AgreementData(units=units, gold=gold, label_ids=list(names), names=names, fingerprint=fingerprint)


def agreement_latest(*, project: Project) -> AgreementReport | None:
    return AgreementReport.objects.filter(project=project).order_by("-id").first()


def agreement_counts(*, project: Project) -> dict[str, int]:
    """Documents with two or more answers and documents with a gold answer."""
    return {
        "documents": Document.objects.filter(project=project, answers_count__gte=2).count(),
        "gold_documents": Adjudication.objects.filter(project=project).count(),
    }


def _label_rows(rows: list[dict[str, Any]], *, label: str, limit: int | None) -> list[dict[str, Any]]:
    if label:
        needle = label.casefold()
        rows = [row for row in rows if needle in str(row.get("label", "")).casefold()]
    return rows if limit is None else rows[:limit]


def agreement_overview(
    *, project: Project, label: str = "", limit: int | None = 10, annotators: bool = True
) -> dict[str, Any]:
    """The newest agreement report and its state, for the dashboard and the API.

    ``report``: None before the first, else its counts, the overall coefficients, the label rows (worst alpha
    first, those whose name contains ``label``, at most ``limit``; ``labels_total`` counts them all) and the
    annotator rows. ``stale``: the answers or gold answers changed since it was computed. ``documents`` /
    ``gold_documents``: what a computation would use now. ``job``: the newest AGREEMENT job; ``active`` while one
    is queued or running."""
    latest = agreement_latest(project=project)
    counts = agreement_counts(project=project)
    job = Job.objects.filter(project=project, kind=Job.Kind.AGREEMENT).order_by("-id").first()
    summary = job_summary(job)
    report = None
    stale = False
    if latest is not None:
        result = latest.result or {}
        rows = _label_rows(list(result.get("labels", [])), label=label, limit=limit)
        report = {
            "id": latest.pk,
            "created_at": latest.created_at,
            "documents": latest.documents,
            "answers": latest.answers,
            "job": latest.job_id,
            "n_annotators": result.get("n_annotators", 0),
            "labels_in_play": result.get("labels_in_play", 0),
            "gold_units": result.get("gold_units", 0),
            "cohen_applies": bool(result.get("cohen_applies")),
            "equal_answers": bool(result.get("equal_answers")),
            "fleiss_rule": result.get("fleiss_rule", ""),
            "bootstrap": result.get("bootstrap", {}),
            "seconds": result.get("seconds"),
            "overall": result.get("overall", {}),
            "labels": rows,
            "labels_total": len(result.get("labels", [])),
            "annotators": list(result.get("annotators", [])) if annotators else [],
        }
        stale = agreement_fingerprint(project=project) != latest.fingerprint
    if report is None:
        message = (
            f"No agreement computed yet: {counts['documents']} documents have two or more answers and "
            f"{counts['gold_documents']} have a gold answer."
        )
        if not counts["documents"]:
            message += " Set an overlap share in the project settings so that some documents get several answers."
    elif stale:
        message = "The answers changed since this report was computed; a new one is queued or can be requested."
    else:
        message = "Up to date."
    return {
        "report": report,
        "stale": stale,
        "message": message,
        **counts,
        "job": {key: summary[key] for key in AGREEMENT_JOB_FIELDS} if summary is not None else None,
        "active": job is not None and job.status in Job.ACTIVE,
    }
