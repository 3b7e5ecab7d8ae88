"""Importing documents (with optional seed labels). All or nothing."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from ..exceptions import ProjectError
from ..importing import ImportRecord, source_problem
from ..models import Activity, Annotation, AnnotationLabel, Document, Job, Label, Project
from ..text import fold
from .annotations import labels_recount
from .budgets import activity_record_by
from .evaluation import evaluation_set_sync
from .jobs import job_request
from .preannotations import DEFAULT_SOURCE, preannotations_store

MAX_ERRORS_SHOWN = 200


@dataclass(frozen=True)
class ImportResult:
    documents: int
    annotations: int
    labels_created: int
    preannotations: int = 0  # pre-annotation rows stored (document, label, source)


def documents_import(
    *,
    project: Project,
    user,
    records: list[ImportRecord],
    parse_errors: list[str] | None = None,
    create_labels: bool = False,
    prediction_source: str = DEFAULT_SOURCE,
) -> ImportResult:
    """Imports documents; labels in a record become an annotation of the importing user (a seed set), and its
    `predictions` pre-annotations (`services.preannotations_store`; those without a source of their own are
    `prediction_source`'s).

    Every problem in the whole input is collected first; if there is any, nothing is imported and the
    ProjectError lists them (up to 200). Unknown labels (answers or predictions) are an error unless
    `create_labels` is set.
    """
    errors = list(parse_errors or [])
    if problem := source_problem(prediction_source):
        raise ProjectError(f"prediction_source: {problem}")
    prediction_source = prediction_source.strip()
    if not records and not errors:
        raise ProjectError("the import is empty: no documents found")
    seen: dict[str, int] = {}
    for record in records:
        if record.external_id in seen:
            errors.append(
                f"line {record.line}: id {record.external_id!r} already appears on line {seen[record.external_id]}"
            )
        else:
            seen[record.external_id] = record.line
    ids = list(seen)
    existing: set[str] = set()
    for start in range(0, len(ids), 2000):
        existing.update(
            Document.objects.filter(project=project, external_id__in=ids[start : start + 2000]).values_list(
                "external_id", flat=True
            )
        )
    for record in records:
        if record.external_id in existing:
            errors.append(f"line {record.line}: id {record.external_id!r} is already in the project")

    def named(record: ImportRecord) -> list[str]:  # the labels a record's answer and predictions name
        predicted = [name for prediction in record.predictions for name in prediction.labels]
        return list(dict.fromkeys([*(record.labels or []), *predicted]))

    wanted = sorted({name for record in records for name in named(record)})
    known: dict[str, int] = {}
    for start in range(0, len(wanted), 2000):
        known.update(
            Label.objects.filter(project=project, name__in=wanted[start : start + 2000]).values_list("name", "id")
        )
    unknown = [name for name in wanted if name not in known]
    if unknown and not create_labels:
        unknown_set = set(unknown)
        for record in records:
            bad = [name for name in named(record) if name in unknown_set]
            if bad:
                errors.append(f"line {record.line}: unknown label(s) {', '.join(repr(n) for n in bad)}")
    for name in unknown:
        if len(name) > 255 or "|" in name:
            errors.append(f"label {name[:50]!r}: names must be at most 255 characters without '|'")
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        raise ProjectError(f"import refused: {len(errors)} problem(s); nothing was imported", errors=shown)

    with transaction.atomic():
        created_labels = Label.objects.bulk_create(
            [Label(project=project, name=name, search_key=fold(name)[:255]) for name in unknown],
            batch_size=2000,
        )
        known.update({label.name: label.pk for label in created_labels})
        documents = Document.objects.bulk_create(
            [
                Document(
                    project=project,
                    external_id=r.external_id,
                    text=r.text,
                    metadata=r.metadata,
                    answers_count=0 if r.labels is None else 1,
                )
                for r in records
            ],
            batch_size=1000,
        )
        if any(doc.pk is None for doc in documents):  # backends without RETURNING
            by_ext = dict(
                Document.objects.filter(project=project, external_id__in=ids).values_list("external_id", "id")
            )
            for doc in documents:
                doc.pk = by_ext[doc.external_id]
        labelled = [(doc, r) for doc, r in zip(documents, records, strict=True) if r.labels is not None]
        annotations = Annotation.objects.bulk_create(
            [
                Annotation(
                    document=doc, project=project, annotator=user, source=Annotation.Source.IMPORT, strategy="import"
                )
                for doc, _ in labelled
            ],
            batch_size=1000,
        )
        AnnotationLabel.objects.bulk_create(
            [
                AnnotationLabel(annotation=annotation, label_id=known[name])
                for annotation, (_, record) in zip(annotations, labelled, strict=True)
                for name in record.labels or []
            ],
            batch_size=2000,
        )
        if annotations:
            labels_recount(label_ids=[known[name] for _, record in labelled for name in record.labels or []])
        preannotations = preannotations_store(
            project=project,
            rows=[
                (doc.pk, known[name], prediction.source or prediction_source, score)
                for doc, record in zip(documents, records, strict=True)
                for prediction in record.predictions
                for name, score in prediction.labels.items()
            ],
        )
        evaluation_set_sync(project=project)  # a uniform sample of the pool, new documents included
        activity_record_by(
            project=project,
            kind=Activity.Kind.DATA,
            user=user,
            message=f"{len(documents)} document(s) imported ({len(annotations)} with answers"
            + (f", {len(created_labels)} new label(s)" if created_labels else "")
            + (f", {preannotations} pre-annotation(s)" if preannotations else "")
            + ")",
            data={"documents": len(documents), "answers": len(annotations), "preannotations": preannotations},
        )
        job_request(project=project, kind=Job.Kind.ENCODE, reason="documents imported", requested_by=user)
        if annotations:
            from .training import training_maybe_request

            training_maybe_request(project=project)
    return ImportResult(
        documents=len(documents),
        annotations=len(annotations),
        labels_created=len(created_labels),
        preannotations=preannotations,
    )
