"""Reads about labels: search, scores per document, counts and coverage, annotators' statistics."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Sum, Value, When

from ..exceptions import NotFound
from ..models import (
    Annotation,
    AnnotationLabel,
    Label,
    Project,
    QueueItem,
    SuggestionDecision,
)
from ..text import fold


@dataclass(frozen=True)
class LabelHit:
    id: int
    name: str
    description: str
    frequency: int
    score: float | None  # the model's probability for the document searched for, when it is in its shortlist


def document_label_scores(*, project: Project, user, document_id: int) -> dict[int, float]:
    """The model's shortlist {label_id: probability} for a document, as served to this user (else as served to
    anyone, else as shown with the user's own answer); empty when there is none."""
    item = (
        QueueItem.objects.filter(project=project, document_id=document_id)
        .order_by(
            Case(When(leased_to=user, then=Value(0)), default=Value(1), output_field=IntegerField()), "-created_at"
        )
        .values_list("suggestions", flat=True)
        .first()
    )
    if item:
        return {int(label_id): float(p) for label_id, p in item}
    shown = (
        Annotation.objects.filter(document_id=document_id, document__project=project, annotator=user)
        .values_list("suggestions", flat=True)
        .first()
    )
    if not shown:
        return {}
    ids = dict(Label.objects.filter(project=project, name__in=[s["label"] for s in shown]).values_list("name", "id"))
    return {ids[s["label"]]: float(s["score"]) for s in shown if s["label"] in ids}


def label_search(
    *, project: Project, query: str, limit: int = 20, scores: dict[int, float] | None = None
) -> list[LabelHit]:
    """Case- and diacritics-insensitive search over label names ("kunstliche int" finds "Künstliche Intelligenz").

    Every word of the query must occur in the name (as a prefix or inside it). Ranking: labels the model scored for
    the document (`scores`), best first; then an exact match; then by label frequency; prefix matches before
    other matches; then by name. Two indexed queries with a LIMIT each; never loads the whole label set.
    """
    limit = max(1, min(int(limit), 100))
    key = fold(query or "")
    scores = scores or {}
    base = Label.objects.filter(project=project)
    for word in key.split():
        base = base.filter(search_key__contains=word)
    fields = ("id", "name", "description", "frequency")
    hits: list[LabelHit] = []
    if scores:
        scored = list(base.filter(pk__in=list(scores)).values_list(*fields))
        scored.sort(key=lambda row: (-scores[row[0]], row[1]))
        hits = [LabelHit(*row, score=scores[row[0]]) for row in scored[:limit]]
    if len(hits) >= limit:
        return hits
    rest = base.exclude(pk__in=[hit.id for hit in hits]) if hits else base
    if key:
        rest = rest.annotate(
            exact=Case(When(search_key=key, then=Value(1)), default=Value(0), output_field=IntegerField()),
            prefix=Case(When(search_key__startswith=key, then=Value(1)), default=Value(0), output_field=IntegerField()),
        ).order_by("-exact", "-frequency", "-prefix", "search_key", "id")
    else:
        rest = rest.order_by("-frequency", "search_key", "id")
    hits += [LabelHit(*row, score=None) for row in rest.values_list(*fields)[: limit - len(hits)]]
    return hits


def annotation_detail(*, project: Project, user, document_id: int) -> dict[str, Any]:
    """The user's own answer for a document, to revise it: the document, the chosen labels and what was done with
    each suggestion shown."""
    annotation = (
        Annotation.objects.filter(document_id=document_id, document__project=project, annotator=user)
        .select_related("document", "model_version")
        .first()
    )
    if annotation is None:
        raise NotFound(f"you have no answer for document {document_id} in this project")
    decisions = dict(SuggestionDecision.objects.filter(annotation=annotation).values_list("label__name", "decision"))
    descriptions = dict(
        Label.objects.filter(project=project, name__in=[s["label"] for s in annotation.suggestions]).values_list(
            "name", "description"
        )
    )
    document = annotation.document
    return {
        "document": {
            "id": document.pk,
            "external_id": document.external_id,
            "text": document.text,
            "metadata": document.metadata,
        },
        "labels": sorted(annotation.labels.values_list("name", flat=True)),
        "suggestions": [
            {
                "label": s["label"],
                "description": descriptions.get(s["label"], ""),
                "score": s["score"],
                "preselected": bool(s.get("preselected", False)),
                "decision": decisions.get(s["label"], SuggestionDecision.Decision.NOT_CHOSEN),
            }
            for s in annotation.suggestions
        ],
        "strategy": annotation.strategy,
        "model_version": annotation.model_version.number if annotation.model_version_id else None,
        "seconds_spent": annotation.seconds_spent,
        "updated_at": annotation.updated_at,
    }


def label_counts(*, project: Project) -> dict[int, int]:
    """Positive count per label id over the project's annotations."""
    return dict(
        AnnotationLabel.objects.filter(label__project=project)
        .values("label_id")
        .annotate(n=Count("id"))
        .values_list("label_id", "n")
    )


FREQUENCY_BUCKETS = [(0, 0), (1, 1), (2, 4), (5, 9), (10, 49), (50, 99), (100, None)]


def _bucket_name(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}-{high}"


def _in_range(queryset: QuerySet, field: str, date_from: date | None, date_to: date | None) -> QuerySet:
    if date_from is not None:
        queryset = queryset.filter(**{f"{field}__date__gte": date_from})
    if date_to is not None:
        queryset = queryset.filter(**{f"{field}__date__lte": date_to})
    return queryset


def label_coverage(
    *,
    project: Project,
    query: str = "",
    max_positives: int | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """Positives per label (answers in the date range, or all of them), how many labels have none or fewer than 5,
    the frequency distribution, and a page of labels matching `query` with at most `max_positives`, rarest first.

    Without a date range the counts are `Label.frequency` (kept current on every answer): one aggregate and one
    sorted page. With one, a single grouped count over the answers in range, and the rest in Python (41,218 labels
    are a few milliseconds of sorting)."""
    limit = max(1, min(int(limit), 500))
    labels = Label.objects.filter(project=project)
    matching = labels
    for word in fold(query or "").split():
        matching = matching.filter(search_key__contains=word)
    if date_from is None and date_to is None:
        buckets = {}
        for index, (low, high) in enumerate(FREQUENCY_BUCKETS):
            condition = Q(frequency__gte=low) if high is None else Q(frequency__gte=low, frequency__lte=high)
            buckets[f"b{index}"] = Count("id", filter=condition)
        counts = labels.aggregate(total=Count("id"), **buckets)
        distribution = [
            {"bucket": _bucket_name(low, high), "labels": counts[f"b{index}"]}
            for index, (low, high) in enumerate(FREQUENCY_BUCKETS)
        ]
        if max_positives is not None:
            matching = matching.filter(frequency__lte=max_positives)
        total = matching.count()
        page = [
            {"id": pk, "name": name, "positives": positives}
            for pk, name, positives in matching.order_by("frequency", "search_key", "id").values_list(
                "id", "name", "frequency"
            )[offset : offset + limit]
        ]
        n_labels = counts["total"]
    else:
        in_range = _in_range(
            AnnotationLabel.objects.filter(annotation__project=project), "annotation__updated_at", date_from, date_to
        )
        positives = dict(in_range.values("label_id").annotate(n=Count("id")).values_list("label_id", "n"))
        n_labels = labels.count()
        distribution = []
        for low, high in FREQUENCY_BUCKETS:
            inside = sum(1 for v in positives.values() if v >= low and (high is None or v <= high))
            distribution.append(
                {"bucket": _bucket_name(low, high), "labels": n_labels - len(positives) if low == 0 else inside}
            )
        ranked = sorted((positives.get(pk, 0), key, pk) for pk, key in matching.values_list("id", "search_key"))
        if max_positives is not None:
            ranked = [row for row in ranked if row[0] <= max_positives]
        total = len(ranked)
        window = ranked[offset : offset + limit]
        names = dict(Label.objects.filter(pk__in=[pk for _, _, pk in window]).values_list("id", "name"))
        page = [{"id": pk, "name": names[pk], "positives": n} for n, _, pk in window]
    return {
        "labels": n_labels,
        "zero": distribution[0]["labels"],
        "under_5": sum(d["labels"] for d in distribution[:3]),
        "distribution": distribution,
        "matching": total,
        "items": page,
    }


def annotator_stats(*, project: Project, date_from: date | None = None, date_to: date | None = None) -> list[dict]:
    """Per annotator over the date range (answers by their last change): documents, documents per hour of labelling
    time, median seconds per document, and the share of the suggestions shown that they accepted. Sums in SQL;
    only the seconds (one number per answer, no join) come back for the medians."""
    answers = _in_range(
        Annotation.objects.filter(project=project).exclude(source=Annotation.Source.IMPORT),
        "updated_at",
        date_from,
        date_to,
    )
    totals = {
        row["annotator_id"]: row
        for row in answers.values("annotator_id").annotate(
            documents=Count("id"),
            shown=Sum("suggestions_shown"),
            accepted=Sum("suggestions_accepted"),
        )
    }
    seconds: dict[int, list[float]] = {}
    for user_id, spent in answers.filter(seconds_spent__isnull=False).values_list("annotator_id", "seconds_spent"):
        seconds.setdefault(user_id, []).append(spent)
    names = dict(get_user_model().objects.filter(pk__in=list(totals)).values_list("id", "username"))
    rows = []
    for user_id in sorted(totals, key=lambda u: names.get(u, "")):
        timed = seconds.get(user_id, [])
        total_seconds = sum(timed)
        shown, accepted = totals[user_id]["shown"] or 0, totals[user_id]["accepted"] or 0
        rows.append(
            {
                "username": names.get(user_id, ""),
                "documents": totals[user_id]["documents"],
                "documents_per_hour": round(len(timed) / (total_seconds / 3600), 1) if total_seconds > 0 else None,
                "median_seconds": round(statistics.median(timed), 1) if timed else None,
                "suggestions_shown": shown,
                "accepted_share": round(accepted / shown, 3) if shown else None,
            }
        )
    return rows
