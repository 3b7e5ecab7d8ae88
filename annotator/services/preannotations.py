"""Pre-annotations: labels with scores that external models gave documents (imported with them), kept per source
and shown as suggestions marked with their source until the project's own model does better on the evaluation set
(`selectors.preannotations`, `ModelVersion.preannotation_comparison`)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from ..exceptions import NotFound, ProjectError
from ..importing import source_problem
from ..models import AuditEntry, ModelVersion, PreAnnotation, Project
from .audit import audit_record

DEFAULT_SOURCE = "import"  # the source of predictions an upload does not name (`prediction_source`)


def _sources_touch(project: Project, sources: Sequence[str]) -> None:
    """Inside a transaction: `Project.preannotation_sources` lists every stored source, the newest imported last
    (the queue's tie-break between sources nobody measured)."""
    locked = Project.objects.select_for_update(no_key=True).get(pk=project.pk)
    touched = list(dict.fromkeys(sources))
    listed = [name for name in locked.preannotation_sources or [] if name not in touched] + touched
    Project.objects.filter(pk=project.pk).update(preannotation_sources=listed)
    project.preannotation_sources = listed


def preannotations_store(*, project: Project, rows: Sequence[tuple[int, int, str, float]]) -> int:
    """Stores pre-annotations `(document_id, label_id, source, score)` of the project's documents; a row for a
    (document, label, source) already stored updates its score. Returns how many rows were written. Called by
    `documents_import` inside its transaction (all or nothing with the documents)."""
    if not rows:
        return 0
    for _, _, source, score in rows:
        if problem := source_problem(source):
            raise ProjectError(problem)
        if not 0 <= score <= 1:
            raise ProjectError(f"pre-annotation scores must be between 0 and 1, got {score}")
    with transaction.atomic():
        unique = {(doc, label, source.strip()): float(score) for doc, label, source, score in rows}
        PreAnnotation.objects.bulk_create(
            [
                PreAnnotation(project=project, document_id=doc, label_id=label, source=source, score=score)
                for (doc, label, source), score in unique.items()
            ],
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["document", "label", "source"],
            update_fields=["score"],
        )
        _sources_touch(project, sorted({source for _, _, source in unique}))
    return len(unique)


@transaction.atomic
def preannotations_delete(*, project: Project, user, source: object) -> int:
    """Removes every pre-annotation of `source` in the project (and the models' comparisons with it); returns how
    many were removed. Audited. An unknown source is an error (404)."""
    if not isinstance(source, str) or source.strip() not in (project.preannotation_sources or []):
        known = ", ".join(project.preannotation_sources or []) or "none"
        raise NotFound(f"no pre-annotation source {str(source)[:100]!r} in this project (sources: {known})")
    source = source.strip()
    locked = Project.objects.select_for_update(no_key=True).get(pk=project.pk)
    removed, _ = PreAnnotation.objects.filter(project=project, source=source).delete()
    listed = [name for name in locked.preannotation_sources or [] if name != source]
    Project.objects.filter(pk=project.pk).update(preannotation_sources=listed)
    project.preannotation_sources = listed
    for version in ModelVersion.objects.filter(project=project).only("id", "preannotation_comparison"):
        if source in (version.preannotation_comparison or {}):
            comparison = {k: v for k, v in version.preannotation_comparison.items() if k != source}
            ModelVersion.objects.filter(pk=version.pk).update(preannotation_comparison=comparison)
    audit_record(
        project=project,
        user=user,
        target=AuditEntry.Target.PROJECT,
        action=AuditEntry.Action.DELETE,
        object_ref=f"pre-annotations of {source}",
        before={"source": source, "preannotations": removed},
    )
    return removed
