"""Reads for the export: one row per document with the labels training reads, its gold, and every answer given
to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Exists, OuterRef

from ..models import (
    Adjudication,
    AdjudicationLabel,
    Annotation,
    AnnotationLabel,
    Document,
    PreAnnotation,
    Project,
    SuggestionDecision,
)
from .training import resolve_labels


def export_rows(*, project: Project, include_unlabelled: bool = False, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """One row per document, streamed in chunks of `chunk` documents (a few queries each):

    - `id`, `text`, `evaluation` (whether the document is in the blind evaluation set);
    - `labels`: what training reads (`selectors.training.resolved_answers`: gold > strict majority > latest
      answer; None when unlabelled) and `labels_from` ("gold", "majority", "single" or None);
    - `annotator`, `annotated_at`: who gave the latest answer and when;
    - `gold`: the reviewer's adjudication (`labels`, `reviewer`, `note`, `updated_at`) or None;
    - `answers`: every answer, oldest first, each with `annotator`, `labels`, `source` (ui, api, import),
      `seconds_spent`, `created_at`, `updated_at`, what picked the document (`model_version` number and `strategy`),
      and the `suggestions` shown, best first, each with its `score`, whether it was `preselected` and the expert's
      `decision` (accepted, rejected, not_chosen), and its `source` when it was not our model's (an external
      source's pre-annotation, `selectors.preannotations`);
    - `predictions`, only when the document has pre-annotations: `[{"source", "labels": {name: score}}]`, one per
      source (by name), each the way an import reads it back."""
    docs = Document.objects.filter(project=project).order_by("id")
    if not include_unlabelled:
        docs = docs.filter(
            Exists(Annotation.objects.filter(document=OuterRef("pk")))
            | Exists(Adjudication.objects.filter(document=OuterRef("pk")))
        )
    ids = list(docs.values_list("id", flat=True))
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        rows = Document.objects.filter(pk__in=part).values("id", "external_id", "text", "is_evaluation").order_by("id")
        answers: dict[int, list[Annotation]] = {}
        for annotation in (
            Annotation.objects.filter(document_id__in=part)
            .select_related("annotator", "model_version")
            .order_by("updated_at", "id")
        ):
            answers.setdefault(annotation.document_id, []).append(annotation)
        annotation_ids = [a.pk for found in answers.values() for a in found]
        labels: dict[int, list[str]] = {}
        for annotation_id, name in AnnotationLabel.objects.filter(annotation_id__in=annotation_ids).values_list(
            "annotation_id", "label__name"
        ):
            labels.setdefault(annotation_id, []).append(name)
        decisions: dict[int, dict[str, str]] = {}
        for annotation_id, name, decision in SuggestionDecision.objects.filter(
            annotation_id__in=annotation_ids
        ).values_list("annotation_id", "label__name", "decision"):
            decisions.setdefault(annotation_id, {})[name] = decision
        golds = {
            gold.document_id: gold
            for gold in Adjudication.objects.filter(document_id__in=part).select_related("reviewer")
        }
        gold_labels: dict[int, list[str]] = {}
        for document_id, name in AdjudicationLabel.objects.filter(adjudication__document_id__in=part).values_list(
            "adjudication__document_id", "label__name"
        ):
            gold_labels.setdefault(document_id, []).append(name)
        predictions: dict[int, dict[str, dict[str, float]]] = {}
        if project.preannotation_sources:  # a project without pre-annotations pays no query for them
            for document_id, source, name, score in (
                PreAnnotation.objects.filter(document_id__in=part)
                .order_by("document_id", "source", "-score", "label__name")
                .values_list("document_id", "source", "label__name", "score")
            ):
                predictions.setdefault(document_id, {}).setdefault(source, {})[name] = score
        for row in rows:
            given = answers.get(row["id"], [])
            latest = given[-1] if given else None
            gold = golds.get(row["id"])
            resolved, source = (
                resolve_labels(gold_labels.get(row["id"], []) if gold else None, [labels.get(a.pk, []) for a in given])
                if given or gold
                else (None, None)
            )
            yield {
                "id": row["external_id"],
                "text": row["text"],
                "labels": resolved,
                "labels_from": source,
                "gold": None
                if gold is None
                else {
                    "labels": sorted(gold_labels.get(row["id"], [])),
                    "reviewer": gold.reviewer.username,
                    "note": gold.note,
                    "updated_at": gold.updated_at.isoformat(),
                },
                "annotator": latest.annotator.username if latest else None,
                "annotated_at": latest.updated_at.isoformat() if latest else None,
                "evaluation": row["is_evaluation"],
                "answers": [_answer(a, labels.get(a.pk, []), decisions.get(a.pk, {})) for a in given],
            } | (
                {"predictions": [{"source": name, "labels": scored} for name, scored in predictions[row["id"]].items()]}
                if row["id"] in predictions
                else {}
            )


def _answer(annotation: Annotation, labels: list[str], decisions: dict[str, str]) -> dict[str, Any]:
    return {
        "annotator": annotation.annotator.username,
        "labels": sorted(labels),
        "source": annotation.source,
        "seconds_spent": annotation.seconds_spent,
        "created_at": annotation.created_at.isoformat(),
        "updated_at": annotation.updated_at.isoformat(),
        "model_version": annotation.model_version.number if annotation.model_version else None,
        "strategy": annotation.strategy,
        "suggestions": [
            {
                "label": shown.get("label"),
                "score": shown.get("score"),
                "preselected": bool(shown.get("preselected")),
                "decision": decisions.get(shown.get("label", "")),
            }
            | ({"source": shown["source"]} if shown.get("source") not in (None, "model") else {})
            for shown in annotation.suggestions or []
            if isinstance(shown, dict)
        ],
    }


def export_label_names(*, project: Project) -> list[str]:
    """The names of the labels used in the project's answers or gold answers, sorted: the columns of a multi-hot
    export (a label nobody chose would be a column of zeros)."""
    answered = AnnotationLabel.objects.filter(annotation__project=project).values_list("label__name", flat=True)
    gold = AdjudicationLabel.objects.filter(adjudication__document__project=project).values_list(
        "label__name", flat=True
    )
    return sorted(set(answered.distinct()) | set(gold.distinct()))
