"""Adjudication: a reviewer's (or a manager's) decision on a document's labels, stored as its gold answer with who
and when. Training and evaluation read gold before the majority of the answers (selectors.training). Gold is not an
answer: it never counts against budgets, quotas or the agreement of the answers. Every change writes an audit row
(target "gold", before and after) in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction

from ..exceptions import NotFound, PermissionDenied, ProjectError
from ..models import Adjudication, AdjudicationLabel, AuditEntry, Document, Label, Membership, Project
from ..validation import ID_MAX, text_problem
from .agreement import agreement_maybe_request
from .audit import audit_record

NOTE_MAX = 2000
REVIEW_ROLES = (Membership.Role.MANAGER, Membership.Role.REVIEWER)


def _reviewer_check(project: Project, user) -> None:
    role = (
        Membership.objects.filter(project=project, user_id=user.pk).values_list("role", flat=True).first()
        if getattr(user, "pk", None)
        else None
    )
    if role is None:
        raise NotFound(f"project {project.pk} does not exist or you are not a member of it")
    if role not in REVIEW_ROLES:
        raise PermissionDenied("only reviewers and managers of this project may decide gold answers")


def _document_locked(project: Project, document_id: object) -> Document:
    """The project's document, its row locked so that two reviewers deciding it at once take turns."""
    if isinstance(document_id, bool) or not isinstance(document_id, int | str):
        raise ProjectError("document_id must be an integer")
    try:
        pk = int(document_id)
    except ValueError as exc:
        raise ProjectError("document_id must be an integer") from exc
    if not 1 <= pk <= ID_MAX:
        raise NotFound(f"document {pk} not found in this project")
    document = Document.objects.select_for_update().filter(project=project, pk=pk).only("id", "external_id").first()
    if document is None:
        raise NotFound(f"document {pk} not found in this project")
    return document


def _labels_named(project: Project, names: object) -> list[Label]:
    if not isinstance(names, list | tuple) or not all(isinstance(name, str) for name in names):
        raise ProjectError("labels must be a list of label names (an empty list means none apply)")
    wanted = list(dict.fromkeys(name.strip() for name in names))
    found = {label.name: label for label in Label.objects.filter(project=project, name__in=wanted)}
    unknown = [name for name in wanted if name not in found]
    if unknown:
        raise ProjectError(
            f"unknown label(s) for this project: {', '.join(repr(name) for name in unknown[:20])}",
            errors=[f"unknown label {name!r}" for name in unknown[:200]],
        )
    return [found[name] for name in wanted]


def _state(adjudication: Adjudication) -> dict[str, Any]:
    names = sorted(adjudication.label_links.values_list("label__name", flat=True))
    return {"labels": names, "note": adjudication.note}


def _ref(document: Document) -> str:
    return f"document {document.pk} ({document.external_id})"


@transaction.atomic
def adjudication_save(
    *, project: Project, reviewer, document_id: object, labels: Sequence[object], note: object = ""
) -> Adjudication:
    """Stores `labels` (names; an empty list: none apply) and `note` as the document's gold answer, decided by
    `reviewer` (a reviewer or manager of the project) now. Replaces an earlier gold answer (its reviewer becomes
    this one). Unknown label names, a document of another project or a bad note change nothing. Saving the same
    labels and note again changes nothing either (no audit row)."""
    _reviewer_check(project, reviewer)
    if not isinstance(note, str):
        raise ProjectError("note must be text")
    if problem := text_problem(note):
        raise ProjectError(f"note {problem}")
    note = note.strip()
    if len(note) > NOTE_MAX:
        raise ProjectError(f"note must be at most {NOTE_MAX} characters")
    chosen = _labels_named(project, labels)
    document = _document_locked(project, document_id)
    after = {"labels": sorted(label.name for label in chosen), "note": note}
    adjudication = Adjudication.objects.filter(document=document).first()
    if adjudication is None:
        adjudication = Adjudication.objects.create(project=project, document=document, reviewer=reviewer, note=note)
        before = None
        action = AuditEntry.Action.CREATE
    else:
        before = _state(adjudication)
        if before == after:
            return adjudication
        adjudication.reviewer = reviewer
        adjudication.note = note
        adjudication.save(update_fields=["reviewer", "note", "updated_at"])
        AdjudicationLabel.objects.filter(adjudication=adjudication).delete()
        action = AuditEntry.Action.UPDATE
    AdjudicationLabel.objects.bulk_create(
        [AdjudicationLabel(adjudication=adjudication, label=label) for label in chosen]
    )
    audit_record(
        project=project,
        user=reviewer,
        target=AuditEntry.Target.GOLD,
        action=action,
        object_ref=_ref(document),
        before=before,
        after=after,
    )
    agreement_maybe_request(project=project)  # agreement against gold changed
    return adjudication


@transaction.atomic
def adjudication_delete(*, project: Project, reviewer, document_id: object) -> None:
    """Removes the document's gold answer (training falls back to the majority of its answers); audited."""
    _reviewer_check(project, reviewer)
    document = _document_locked(project, document_id)
    adjudication = Adjudication.objects.filter(document=document).first()
    if adjudication is None:
        raise NotFound(f"document {document.pk} has no gold answer")
    before = _state(adjudication)
    adjudication.delete()
    audit_record(
        project=project,
        user=reviewer,
        target=AuditEntry.Target.GOLD,
        action=AuditEntry.Action.DELETE,
        object_ref=_ref(document),
        before=before,
        after=None,
    )
    agreement_maybe_request(project=project)
