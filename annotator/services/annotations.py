"""Submitting and skipping documents."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from ..exceptions import ProjectError
from ..models import Annotation, AnnotationLabel, Document, DocumentSkip, Label, Project, QueueItem
from ..selectors import effective_threshold, suggestions_named

MAX_SECONDS = 24 * 3600


def _document_in_project(project: Project, document_id: object) -> Document:
    if isinstance(document_id, bool) or not isinstance(document_id, int | str) or not str(document_id).isdigit():
        raise ProjectError("document must be the numeric id returned by `next`")
    document = Document.objects.filter(pk=int(document_id)).only("id", "project_id").first()
    if document is None or document.project_id != project.pk:
        raise ProjectError(f"document {document_id} is not in project {project.pk}")
    return document


def _labels_by_name(project: Project, names: Sequence[object]) -> list[Label]:
    if not isinstance(names, list | tuple) or not all(isinstance(name, str) for name in names):
        raise ProjectError("labels must be a list of label names (an empty list means none apply)")
    wanted = list(dict.fromkeys(name.strip() for name in names))
    found = {label.name: label for label in Label.objects.filter(project=project, name__in=wanted)}
    unknown = [name for name in wanted if name not in found]
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:20])
        raise ProjectError(f"unknown label(s) for this project: {shown}")
    return [found[name] for name in wanted]


@transaction.atomic
def annotation_submit(
    *,
    project: Project,
    user,
    document_id: object,
    labels: Sequence[object],
    seconds_spent: object = None,
    source: str = Annotation.Source.API,
) -> Annotation:
    """Saves the user's answer for a document (replacing their earlier one) and may queue a training run.

    An empty label list is a valid answer ("none apply"). Provenance (model version, strategy, suggestions shown)
    comes from the queue item the document was served from. The answer is saved even when the lease expired.
    """
    document = _document_in_project(project, document_id)
    chosen = _labels_by_name(project, labels)
    if seconds_spent is not None:
        if isinstance(seconds_spent, bool) or not isinstance(seconds_spent, int | float):
            raise ProjectError("seconds_spent must be a number of seconds")
        if not 0 <= float(seconds_spent) <= MAX_SECONDS:
            raise ProjectError(f"seconds_spent must be between 0 and {MAX_SECONDS}")
    if source not in Annotation.Source.values or source == Annotation.Source.IMPORT:
        raise ProjectError("source must be 'ui' or 'api'")

    served = (
        QueueItem.objects.filter(project=project, document=document, leased_to=user)
        .select_related("model_version")
        .order_by("-created_at")
        .first()
    ) or (
        QueueItem.objects.filter(project=project, document=document)
        .select_related("model_version")
        .order_by("-created_at")
        .first()
    )
    annotation = Annotation.objects.select_for_update().filter(document=document, annotator=user).first()
    if annotation is None:
        annotation = Annotation(document=document, annotator=user)
    annotation.source = source
    if seconds_spent is not None:  # a revised answer adds the time spent revising it
        annotation.seconds_spent = (annotation.seconds_spent or 0.0) + float(seconds_spent)
    if served is not None:
        annotation.model_version = served.model_version
        annotation.strategy = served.strategy
        annotation.suggestions = [
            {"label": s["label"], "score": s["score"]}
            for s in suggestions_named(
                pairs=served.suggestions,
                threshold=effective_threshold(project=project, version=served.model_version),
            )
        ]
    annotation.save()
    AnnotationLabel.objects.filter(annotation=annotation).delete()
    AnnotationLabel.objects.bulk_create([AnnotationLabel(annotation=annotation, label=label) for label in chosen])
    # The document is answered: it leaves the queue (all versions) and any skip by this user is void.
    QueueItem.objects.filter(project=project, document=document).delete()
    DocumentSkip.objects.filter(document=document, user=user).delete()

    from .training import training_maybe_request

    training_maybe_request(project=project)
    return annotation


@transaction.atomic
def document_skip(*, project: Project, user, document_id: object) -> None:
    """The user passes on a document: their lease ends and it is not served to them again."""
    document = _document_in_project(project, document_id)
    DocumentSkip.objects.get_or_create(document=document, user=user)
    QueueItem.objects.filter(project=project, document=document, leased_to=user).update(
        leased_to=None, lease_expires_at=None
    )
