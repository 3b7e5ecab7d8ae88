"""Browsing a project's documents and answers (reviewers and managers): filters, and keyset paging by document id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone

from ..exceptions import ProjectError
from ..models import Adjudication, AdjudicationLabel, Annotation, AnnotationLabel, Document, Label, Project

BROWSE_MAX_LIMIT = 200
TEXT_PREVIEW = 300  # characters of each document's text in a page
# A label filter on a label with at most this many positives restricts the walk to its documents first: walking
# every document to find a page of a rare label's costs more than collecting its few documents (docs/benchmarks.md).
RARE_LABEL_POSITIVES = 2000


@dataclass(frozen=True)
class BrowseFilters:
    """What to list: documents with an answer by `annotator` (a username), with `label` (a label name) in an answer,
    answered from `date_from` to `date_to` (days in the server's time zone, both included), with an answer that
    differs from what the model pre-ticked (`model_disagreement`: Annotation.model_agreement below 1; False: no
    such answer), in the evaluation set or not (`evaluation`, managers only), answered or not (`answered`), whose
    answers agree less than `agreement_below` (Document.agreement, the mean pairwise Jaccard of two or more
    answers; from 0 to 1), with a gold answer (an Adjudication) or not (`gold`)."""

    annotator: str | None = None
    label: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    evaluation: bool | None = None
    answered: bool | None = None
    agreement_below: float | None = None
    model_disagreement: bool | None = None
    gold: bool | None = None


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def documents_browse(
    *, project: Project, filters: BrowseFilters, after: int | None = None, limit: int = 50
) -> dict[str, Any]:
    """One page of the project's documents matching `filters`, by id, after the document id `after` (the previous
    page's `next`): {"documents": [...], "next": id or None}. Each document: id, external id, the first
    TEXT_PREVIEW characters of its text, whether it is in the evaluation set, its agreement, its gold answer
    (labels, reviewer, note, when; None without one) and every answer (annotator, labels, source, seconds spent,
    agreement with the model's pre-ticks, updated at), oldest first. An answer filter (annotator, label, dates,
    model disagreement) keeps documents with at least one answer matching all of them together.

    A page walks the documents in id order from `after` and stops after `limit` matches (keyset paging: no OFFSET
    rows to skip). The answer filter is a correlated scalar subquery, "the id of the document's first matching
    answer", probed per document through the (document, annotator) index and stopping at the first match. As an
    EXISTS, PostgreSQL's planner costed it for every document of the project instead of the page and hashed every
    matching answer first (a semi-join, or a hashed subplan), 35-100 ms on deep pages at 100,000 documents; a
    scalar subquery is never hashed. The walk's cost grows with how rare the matches are, so a label with at most
    RARE_LABEL_POSITIVES positives (Label.frequency) restricts it to that label's documents first. Measured in
    docs/benchmarks.md ("Browsing documents and answers")."""
    limit = max(1, min(int(limit), BROWSE_MAX_LIMIT))
    if filters.agreement_below is not None and not 0 <= filters.agreement_below <= 1:
        raise ProjectError("agreement_below must be a number from 0 to 1")
    docs = Document.objects.filter(project=project)
    if after is not None:
        docs = docs.filter(pk__gt=after)
    if filters.evaluation is not None:
        docs = docs.filter(is_evaluation=filters.evaluation)
    if filters.agreement_below is not None:
        docs = docs.filter(agreement__lt=filters.agreement_below)
    if filters.gold is not None:
        has_gold = Exists(Adjudication.objects.filter(document=OuterRef("pk")))
        docs = docs.filter(has_gold if filters.gold else ~has_gold)
    answers = Annotation.objects.filter(document=OuterRef("pk"))
    answer_filtered = False
    if filters.annotator:
        user_id = get_user_model().objects.filter(username=filters.annotator).values_list("pk", flat=True).first()
        if user_id is None:
            return {"documents": [], "next": None}
        answers = answers.filter(annotator_id=user_id)
        answer_filtered = True
    if filters.label:
        found = Label.objects.filter(project=project, name=filters.label).values_list("id", "frequency").first()
        if found is None:
            raise ProjectError(f"the project has no label {filters.label!r}")
        label, positives = found
        answers = answers.filter(Exists(AnnotationLabel.objects.filter(annotation=OuterRef("pk"), label_id=label)))
        answer_filtered = True
        if positives <= RARE_LABEL_POSITIVES:  # few documents carry it: start from them instead of walking all
            docs = docs.filter(
                pk__in=Annotation.objects.filter(
                    pk__in=AnnotationLabel.objects.filter(label_id=label).values("annotation_id")
                ).values("document_id")
            )
    if filters.date_from or filters.date_to:
        if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
            raise ProjectError("date_from is after date_to")
        window = Q()
        if filters.date_from:
            window &= Q(updated_at__gte=_day_start(filters.date_from))
        if filters.date_to:
            window &= Q(updated_at__lt=_day_start(filters.date_to + timedelta(days=1)))
        answers = answers.filter(window)
        answer_filtered = True
    if filters.model_disagreement:
        answers = answers.filter(model_agreement__lt=1)
        answer_filtered = True
    elif filters.model_disagreement is False:
        docs = docs.filter(~Exists(Annotation.objects.filter(document=OuterRef("pk"), model_agreement__lt=1)))
    if answer_filtered:
        if filters.answered is False:
            return {"documents": [], "next": None}
        # A scalar subquery, never hashed: probed per document, it stops at the first matching answer.
        docs = docs.annotate(first_match=Subquery(answers.order_by().values("pk")[:1])).filter(
            first_match__isnull=False
        )
    elif filters.answered is not None:
        any_answer = Exists(Annotation.objects.filter(document=OuterRef("pk")))
        docs = docs.filter(any_answer if filters.answered else ~any_answer)
    rows = list(docs.order_by("id").values("id", "external_id", "text", "is_evaluation", "agreement")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [row["id"] for row in rows]
    answers_of = document_answers(ids)
    golds = document_golds(ids)
    return {
        "documents": [
            {
                "id": row["id"],
                "external_id": row["external_id"],
                "text": row["text"][:TEXT_PREVIEW],
                "evaluation": row["is_evaluation"],
                "agreement": row["agreement"],
                "gold": golds.get(row["id"]),
                "answers": answers_of.get(row["id"], []),
            }
            for row in rows
        ],
        "next": rows[-1]["id"] if more and rows else None,
    }


def document_answers(document_ids: list[int], *, with_suggestions: bool = False) -> dict[int, list[dict[str, Any]]]:
    """Every answer of the given documents, oldest first, in two queries: {document id: [answer, ...]} with the
    annotator, labels (sorted), source, seconds spent, agreement with the model's pre-ticks (None: nothing was
    pre-ticked) and when it was last changed; with `with_suggestions`, the suggestions it was shown too."""
    fields = ["id", "document_id", "annotator__username", "source", "seconds_spent", "model_agreement", "updated_at"]
    annotations = list(
        Annotation.objects.filter(document_id__in=document_ids)
        .order_by("updated_at", "id")
        .values(*fields, *(["suggestions"] if with_suggestions else []))
    )
    labels: dict[int, list[str]] = {}
    for annotation_id, name in AnnotationLabel.objects.filter(
        annotation_id__in=[row["id"] for row in annotations]
    ).values_list("annotation_id", "label__name"):
        labels.setdefault(annotation_id, []).append(name)
    by_document: dict[int, list[dict[str, Any]]] = {}
    for row in annotations:
        answer = {
            "annotator": row["annotator__username"],
            "labels": sorted(labels.get(row["id"], [])),
            "source": row["source"],
            "seconds_spent": row["seconds_spent"],
            "model_agreement": row["model_agreement"],
            "updated_at": row["updated_at"].isoformat(),
        }
        if with_suggestions:
            answer["suggestions"] = row["suggestions"] or []
        by_document.setdefault(row["document_id"], []).append(answer)
    return by_document


def document_golds(document_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The gold answers of the given documents: {document id: {labels, reviewer, note, created_at, updated_at}}."""
    golds = list(
        Adjudication.objects.filter(document_id__in=document_ids).values_list(
            "id", "document_id", "reviewer__username", "note", "created_at", "updated_at"
        )
    )
    labels: dict[int, list[str]] = {}
    for adjudication_id, name in AdjudicationLabel.objects.filter(
        adjudication_id__in=[row[0] for row in golds]
    ).values_list("adjudication_id", "label__name"):
        labels.setdefault(adjudication_id, []).append(name)
    return {
        document_id: {
            "labels": sorted(labels.get(adjudication_id, [])),
            "reviewer": reviewer,
            "note": note,
            "created_at": created_at.isoformat(),
            "updated_at": updated_at.isoformat(),
        }
        for adjudication_id, document_id, reviewer, note, created_at, updated_at in golds
    }
