"""Reads for the export: one row per document with its latest answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Exists, OuterRef

from ..models import (
    Annotation,
    AnnotationLabel,
    Document,
    Project,
)


def export_rows(*, project: Project, include_unlabelled: bool = False, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """One row per document: id, text, labels (of its latest annotation; None when unlabelled), annotator."""
    docs = Document.objects.filter(project=project).order_by("id")
    if not include_unlabelled:
        docs = docs.filter(Exists(Annotation.objects.filter(document=OuterRef("pk"))))
    ids = list(docs.values_list("id", flat=True))
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        rows = Document.objects.filter(pk__in=part).values("id", "external_id", "text").order_by("id")
        latest: dict[int, Annotation] = {}
        for annotation in (
            Annotation.objects.filter(document_id__in=part).select_related("annotator").order_by("updated_at", "id")
        ):
            latest[annotation.document_id] = annotation
        labels: dict[int, list[str]] = {}
        for annotation_id, name in AnnotationLabel.objects.filter(
            annotation_id__in=[a.pk for a in latest.values()]
        ).values_list("annotation_id", "label__name"):
            labels.setdefault(annotation_id, []).append(name)
        for row in rows:
            annotation = latest.get(row["id"])
            yield {
                "id": row["external_id"],
                "text": row["text"],
                "labels": sorted(labels.get(annotation.pk, [])) if annotation else None,
                "annotator": annotation.annotator.username if annotation else None,
                "annotated_at": annotation.updated_at.isoformat() if annotation else None,
            }
