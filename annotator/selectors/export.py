"""Reads for the export: one row per document with its latest answer and every answer given to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Exists, OuterRef

from ..models import (
    Annotation,
    AnnotationLabel,
    Document,
    Project,
    SuggestionDecision,
)


def export_rows(*, project: Project, include_unlabelled: bool = False, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """One row per document, streamed in chunks of `chunk` documents (a few queries each):

    - `id`, `text`, `evaluation` (whether the document is in the blind evaluation set);
    - `labels`, `annotator`, `annotated_at`: its latest answer (what training reads; None when unlabelled);
    - `answers`: every answer, oldest first, each with `annotator`, `labels`, `source` (ui, api, import),
      `seconds_spent`, `created_at`, `updated_at`, what picked the document (`model_version` number and `strategy`),
      and the `suggestions` shown, best first, each with its `score`, whether it was `preselected` and the expert's
      `decision` (accepted, rejected, not_chosen)."""
    docs = Document.objects.filter(project=project).order_by("id")
    if not include_unlabelled:
        docs = docs.filter(Exists(Annotation.objects.filter(document=OuterRef("pk"))))
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
        for row in rows:
            given = answers.get(row["id"], [])
            latest = given[-1] if given else None
            yield {
                "id": row["external_id"],
                "text": row["text"],
                "labels": sorted(labels.get(latest.pk, [])) if latest else None,
                "annotator": latest.annotator.username if latest else None,
                "annotated_at": latest.updated_at.isoformat() if latest else None,
                "evaluation": row["is_evaluation"],
                "answers": [_answer(a, labels.get(a.pk, []), decisions.get(a.pk, {})) for a in given],
            }


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
            for shown in annotation.suggestions or []
            if isinstance(shown, dict)
        ],
    }
