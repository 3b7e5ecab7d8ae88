"""The taxonomy: label files (create and update labels in bulk), and a manager's edits of one label: description,
alternative names, external id, parent, rename, merge, deprecate and restore. Every change is recorded in the
project's activity feed and in its audit log (target "label", before and after; one row per label file)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from ..exceptions import NotFound, ProjectError
from ..importing import MAX_LABELS, LabelFile, LabelRecord, parse_label_items, validate_label_record
from ..models import (
    Activity,
    AdjudicationLabel,
    Annotation,
    AnnotationLabel,
    AuditEntry,
    Job,
    Label,
    LabelAlias,
    PreAnnotation,
    Project,
    QueueItem,
    SuggestionDecision,
)
from ..text import fold
from .audit import audit_changes, audit_record
from .label_vectors import label_vectors_refresh
from .projects import project_create

# The activity feed's kind for taxonomy changes: Activity.Kind.LABELS once the model has it, else the closest one.
ACTIVITY_KIND = Activity.Kind.LABELS
MAX_PROBLEMS_SHOWN = 200
_BATCH = 2000

UNSET: Any = object()


def search_key(name: str) -> str:
    return fold(name)[:255]


def _vectors_refresh(*, project: Project, label_ids: Iterable[int]) -> None:
    """Re-embeds the labels whose name, alternative names or description changed (the semantic search's index)."""
    ids = sorted(set(label_ids))
    if ids:
        label_vectors_refresh(project=project, label_ids=ids)


def _record(*, project: Project, user, message: str, data: dict[str, Any]) -> None:
    from .budgets import activity_record_by

    activity_record_by(project=project, kind=ACTIVITY_KIND, user=user, message=message, data=data)


def _fail(summary: str, problems: list[str]) -> ProjectError:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    if more:
        shown.append(f"... and {more} more")
    return ProjectError(f"{summary}: {len(problems)} problem(s); nothing was changed", errors=shown)


# Label files ------------------------------------------------------------------------------------------------------


TAXONOMY_FIELDS = frozenset({"alt_names", "external_id", "parent"})  # a label object with one: a label file's item


@transaction.atomic
def project_create_with_taxonomy(
    *, user, name: str, labels: Sequence[Any] = (), label_file: LabelFile | None = None, **project_settings: Any
) -> Project:
    """`projects.project_create`, with the labels from a label file or as label-file items.

    `labels`: names or {"name", "description"} objects, or objects with a taxonomy field (alt_names, external_id,
    parent), then read as a label file's items. `label_file`: a parsed label file (`importing.parse_label_file`),
    imported by `labels_import` with the same rules as the manage page's import. All or nothing: a bad label or line
    refuses the whole request and no project is created."""
    if any(isinstance(item, dict) and TAXONOMY_FIELDS & item.keys() for item in labels):
        if label_file is not None:
            raise ProjectError("give the labels either as a list or as a label file, not both")
        label_file, labels = parse_label_items(list(labels)), ()
    if label_file is not None and labels:
        raise ProjectError("give the labels either as a list or as a label file, not both")
    project = project_create(user=user, name=name, labels=labels, **project_settings)
    if label_file is not None:
        labels_import(project=project, user=user, records=label_file.records, parse_errors=label_file.errors)
    return project


@transaction.atomic
def labels_import(
    *, project: Project, user, records: Sequence[LabelRecord], parse_errors: Sequence[str] = ()
) -> dict[str, Any]:
    """Creates and updates labels from a label file, all or nothing.

    A record matches an existing label by external id, else by name; a field it does not carry (None) keeps the
    label's value, one it carries replaces it (alt_names replace the label's alternative names; a changed name
    renames the label and keeps the old name as an alternative name). `parent` names the parent by external id or
    name, in the file or already in the project ("" : a root). Every bad line is named: duplicate names or external
    ids, a name or external id another label has, an unknown parent, a cycle. Returns counts."""
    problems = list(parse_errors)
    if not records and not problems:
        raise ProjectError("the label file has no labels")
    rows = list(Label.objects.filter(project=project).values_list("id", "name", "external_id", "parent_id"))
    id_by_name = {name: pk for pk, name, _, _ in rows}
    id_by_ext = {ext: pk for pk, _, ext, _ in rows if ext}
    name_of = {pk: name for pk, name, _, _ in rows}
    parent_of: dict[int, int | None] = {pk: parent for pk, _, _, parent in rows}

    # Each record's node: an existing label's id, or -(index + 1) for a label the file creates.
    line_of_name: dict[str, int] = {}
    line_of_ext: dict[str, int] = {}
    line_of_label: dict[int, int] = {}
    node_of: list[int] = []
    for index, record in enumerate(records):
        where = f"line {record.line} ({record.name!r})"
        if record.name in line_of_name:
            problems.append(f"{where}: the name is also on line {line_of_name[record.name]}")
        line_of_name.setdefault(record.name, record.line)
        if record.external_id:
            if record.external_id in line_of_ext:
                problems.append(
                    f"{where}: the external id {record.external_id!r} is also on line {line_of_ext[record.external_id]}"
                )
            line_of_ext.setdefault(record.external_id, record.line)
        pk = id_by_ext.get(record.external_id) if record.external_id else None
        if pk is None:
            pk = id_by_name.get(record.name)
        if pk is not None:
            if pk in line_of_label:
                problems.append(f"{where}: matches the same label ({name_of[pk]!r}) as line {line_of_label[pk]}")
            line_of_label.setdefault(pk, record.line)
            holder = id_by_name.get(record.name)
            if holder is not None and holder != pk:
                problems.append(
                    f"{where}: renames the label {name_of[pk]!r} to a name another label of the project has"
                )
            if record.external_id and id_by_ext.get(record.external_id, pk) != pk:
                problems.append(f"{where}: the external id {record.external_id!r} belongs to another label")
        node_of.append(pk if pk is not None else -(index + 1))

    # Parents, by external id or name: the file's own labels first, then the project's.
    file_by_ext = {r.external_id: node_of[i] for i, r in enumerate(records) if r.external_id}
    file_by_name = {r.name: node_of[i] for i, r in enumerate(records)}
    final_parent: dict[int, int | None] = dict(parent_of)
    for index, record in enumerate(records):
        node = node_of[index]
        final_parent.setdefault(node, None)
        if record.parent is None:
            continue
        if record.parent == "":
            final_parent[node] = None
            continue
        parent = file_by_ext.get(record.parent)
        for lookup in (file_by_name, id_by_ext, id_by_name):
            if parent is None:
                parent = lookup.get(record.parent)
        if parent is None:
            problems.append(
                f"line {record.line} ({record.name!r}): unknown parent {record.parent!r} (neither an external id nor "
                "a name in the file or the project)"
            )
        elif parent == node:
            problems.append(f"line {record.line} ({record.name!r}): is its own parent")
        else:
            final_parent[node] = parent
    problems.extend(_cycles(records, node_of, final_parent))
    total = len(rows) + sum(1 for node in node_of if node < 0)
    if total > MAX_LABELS:
        problems.append(f"the project would have {total:,} labels; the limit is {MAX_LABELS:,}")
    if problems:
        raise _fail("invalid label file", problems)

    # Writes: new labels in bulk, then the updates, the parents and the alternative names.
    new_records = [(i, r) for i, r in enumerate(records) if node_of[i] < 0]
    created = Label.objects.bulk_create(
        [
            Label(
                project=project,
                name=r.name,
                search_key=search_key(r.name),
                description=r.description or "",
                external_id=r.external_id or "",
            )
            for _, r in new_records
        ],
        batch_size=_BATCH,
    )
    pk_of_node = {node_of[i]: label.pk for (i, _), label in zip(new_records, created, strict=True)}
    for node in node_of:
        if node > 0:
            pk_of_node[node] = node

    def label_pk(node: int | None) -> int | None:
        return None if node is None else pk_of_node.get(node, node)

    existing_ids = [node for node in node_of if node > 0]
    labels: dict[int, Label] = {}
    for start in range(0, len(existing_ids), _BATCH):
        labels.update(Label.objects.in_bulk(existing_ids[start : start + _BATCH]))
    labels.update({label.pk: label for label in created})
    changed: dict[int, Label] = {}
    content_changed: set[int] = {label.pk for label in created}
    aliases_new: list[LabelAlias] = []
    aliases_replace: list[int] = []
    renamed: list[tuple[Label, str]] = []
    for index, record in enumerate(records):
        node = node_of[index]
        label = labels[pk_of_node[node]]
        updates: dict[str, Any] = {}
        if node > 0:
            if record.name != label.name:
                updates.update(name=record.name, search_key=search_key(record.name))
                aliases_new.append(LabelAlias(project_id=project.pk, label_id=label.pk, name=label.name))
                renamed.append((label, label.name))
            if record.description is not None and record.description != label.description:
                updates["description"] = record.description
            if record.external_id is not None and record.external_id != label.external_id:
                updates["external_id"] = record.external_id
        if record.parent is not None and label_pk(final_parent[node]) != label.parent_id:
            updates["parent_id"] = label_pk(final_parent[node])
        for name, value in updates.items():
            setattr(label, name, value)
        if updates:
            changed[label.pk] = label
        if {"name", "description"} & set(updates):
            content_changed.add(label.pk)
        if record.alt_names is not None:
            if node > 0:
                aliases_replace.append(label.pk)
            content_changed.add(label.pk)
            aliases_new.extend(
                LabelAlias(project_id=project.pk, label_id=label.pk, name=alt) for alt in record.alt_names
            )
    if changed:
        _labels_write(list(changed.values()))
    for start in range(0, len(aliases_replace), _BATCH):
        LabelAlias.objects.filter(label_id__in=aliases_replace[start : start + _BATCH]).delete()
    unique_aliases = {(a.label_id, a.name): a for a in aliases_new if a.name != labels[a.label_id].name}
    for alias in unique_aliases.values():
        alias.search_key = search_key(alias.name)
    LabelAlias.objects.bulk_create(list(unique_aliases.values()), batch_size=_BATCH, ignore_conflicts=True)
    for label, old_name in renamed:  # rare in a label file: one label at a time
        LabelAlias.objects.filter(label=label, name=label.name).delete()
        shown = SuggestionDecision.objects.filter(label=label).values_list("annotation_id", flat=True)
        _suggestion_names_replace(shown, old_name, label.name)

    updated = len({node for node in existing_ids if node in changed or node in content_changed})
    result = {
        "created": len(created),
        "updated": updated,
        "unchanged": len(existing_ids) - updated,
        "alt_names": len(unique_aliases),
        "labels": total,
    }
    _record(
        project=project,
        user=user,
        message=f"Label file imported: {len(created):,} label(s) created, {updated:,} updated",
        data=result,
    )
    audit_record(
        project=project,
        user=user,
        target=AuditEntry.Target.LABEL,
        action=AuditEntry.Action.CREATE if created else AuditEntry.Action.UPDATE,
        object_ref=f"label file ({len(records):,} line(s))",
        before={"labels": len(rows)},
        after={**result, "renamed": [[old, label.name] for label, old in renamed[:100]]},
    )
    if created and project.documents.exists():  # the encode run embeds the new names (their prior), then re-scores
        from .jobs import job_request

        job_request(project=project, kind=Job.Kind.ENCODE, reason=f"{len(created)} label(s) imported")
    _vectors_refresh(project=project, label_ids=content_changed)
    return result


def _labels_write(labels: list[Label]) -> None:
    """Writes the taxonomy columns of many labels: one prepared UPDATE by primary key run for every row
    (`executemany`). Django's bulk_update builds one CASE per column and batch, which took 15-50 s for the 41,218
    labels of tibkat-gnd on SQLite; this takes about a second."""
    columns = ("name", "search_key", "description", "external_id", "parent_id")
    quote = connection.ops.quote_name
    sql = (  # identifiers from the model, quoted; every value a parameter
        f"UPDATE {quote(Label._meta.db_table)} SET "  # noqa: S608
        + ", ".join(f"{quote(column)} = %s" for column in columns)
        + f" WHERE {quote('id')} = %s"
    )
    rows = [(*(getattr(label, column) for column in columns), label.pk) for label in labels]
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _BATCH):
            cursor.executemany(sql, rows[start : start + _BATCH])


def _cycles(records: Sequence[LabelRecord], node_of: list[int], final_parent: dict[int, int | None]) -> list[str]:
    """A message for each record whose label would be its own ancestor."""
    acyclic: set[int] = set()
    in_cycle: set[int] = set()
    for node in final_parent:
        path: list[int] = []
        on_path: set[int] = set()
        current: int | None = node
        while current is not None and current not in acyclic and current not in in_cycle:
            if current in on_path:
                in_cycle.update(path[path.index(current) :])
                break
            path.append(current)
            on_path.add(current)
            current = final_parent.get(current)
        acyclic.update(n for n in path if n not in in_cycle)
    return [
        f"line {r.line} ({r.name!r}): the parents form a cycle (the label would be its own ancestor)"
        for i, r in enumerate(records)
        if node_of[i] in in_cycle
    ]


# One label ----------------------------------------------------------------------------------------------------------


def _locked(project: Project, label_id: int) -> Label:
    label = Label.objects.select_for_update().filter(project=project, pk=label_id).first()
    if label is None:
        raise NotFound(f"label {label_id} not found in this project")
    return label


def _clean(label: Label, values: dict[str, Any]) -> LabelRecord:
    raw = {"name": values.get("name", label.name)}
    raw.update({key: values[key] for key in ("description", "external_id", "alt_names") if key in values})
    record, problems = validate_label_record(raw, label.pk, where="label")
    if record is None:
        raise ProjectError("invalid label: " + "; ".join(problems), errors=problems)
    return record


def _alias_names(label: Label) -> list[str]:
    return list(label.aliases.order_by("id").values_list("name", flat=True))


def _audit_state(label: Label) -> dict[str, Any]:
    """A label's fields as its audit rows show them."""
    parent = (
        Label.objects.filter(pk=label.parent_id).values_list("name", flat=True).first() if label.parent_id else None
    )
    return {
        "name": label.name,
        "description": label.description,
        "external_id": label.external_id,
        "parent": parent,
        "alt_names": sorted(_alias_names(label)),
    }


def _audit_changed(project: Project, user, label: Label, before: dict[str, Any]) -> None:
    """An audit row with the fields of `label` that changed since `before` (both sides)."""
    old, new = audit_changes(before, _audit_state(label))
    audit_record(
        project=project,
        user=user,
        target=AuditEntry.Target.LABEL,
        action=AuditEntry.Action.UPDATE,
        object_ref=f"label {label.pk} ({label.name})",
        before=old,
        after=new,
    )


def _aliases_add(project: Project, label: Label, names: Iterable[str]) -> None:
    have = set(_alias_names(label)) | {label.name}
    fresh = list(dict.fromkeys(name for name in names if name not in have))
    LabelAlias.objects.bulk_create(
        [LabelAlias(project=project, label=label, name=name, search_key=search_key(name)) for name in fresh]
    )


def _suggestion_names_replace(annotation_ids: Iterable[int], old: str, new: str) -> None:
    """The suggestions recorded with answers name labels: rename them (dropping a duplicate after a merge)."""
    ids = sorted(set(annotation_ids))
    for start in range(0, len(ids), _BATCH):
        annotations = list(Annotation.objects.filter(pk__in=ids[start : start + _BATCH]).only("id", "suggestions"))
        for annotation in annotations:
            shown: list[dict[str, Any]] = []
            seen: set[str] = set()
            for suggestion in annotation.suggestions or []:
                name = new if suggestion.get("label") == old else suggestion.get("label")
                if name in seen:
                    continue
                seen.add(name)
                shown.append({**suggestion, "label": name})
            annotation.suggestions = shown
        Annotation.objects.bulk_update(annotations, ["suggestions"], batch_size=500)


def _parent_check(project: Project, label: Label, parent_id: int | None) -> Label | None:
    if parent_id is None:
        return None
    parent = Label.objects.filter(project=project, pk=parent_id).first()
    if parent is None:
        raise ProjectError(f"parent: label {parent_id} not found in this project")
    ancestor: Label | None = parent
    for _ in range(MAX_LABELS):
        if ancestor is None:
            return parent
        if ancestor.pk == label.pk:
            raise ProjectError(
                f"parent: {parent.name!r} is {label.name!r} itself or one of its descendants (that would be a cycle)"
            )
        ancestor = ancestor.parent
    return parent  # pragma: no cover - a longer chain than there are labels cannot exist


@transaction.atomic
def label_update(
    *,
    project: Project,
    user,
    label_id: int,
    name: Any = UNSET,
    description: Any = UNSET,
    alt_names: Any = UNSET,
    external_id: Any = UNSET,
    parent: Any = UNSET,
) -> Label:
    """Edits a label. A new name renames it: answers keep pointing at the label, the old name becomes an alternative
    name (search still finds it) and the suggestions recorded with answers show the new name. `alt_names` replaces
    the alternative names; `parent` is a label id (None: a root)."""
    label = _locked(project, label_id)
    given = {
        key: value
        for key, value in (
            ("name", name),
            ("description", description),
            ("alt_names", alt_names),
            ("external_id", external_id),
        )
        if value is not UNSET
    }
    record = _clean(label, given)
    problems: list[str] = []
    old_name = label.name
    before = _audit_state(label)
    renamed = record.name != old_name
    if renamed and Label.objects.filter(project=project, name=record.name).exclude(pk=label.pk).exists():
        problems.append(f"name: another label of this project is called {record.name!r}")
    if (
        record.external_id
        and record.external_id != label.external_id
        and Label.objects.filter(project=project, external_id=record.external_id).exclude(pk=label.pk).exists()
    ):
        problems.append(f"external_id: another label of this project has the external id {record.external_id!r}")
    new_parent: Label | Any | None = UNSET
    if parent is not UNSET:
        try:
            new_parent = _parent_check(project, label, parent)
        except ProjectError as exc:
            problems.append(exc.message)
    if problems:
        raise ProjectError("invalid label: " + "; ".join(problems), errors=problems)

    changes: list[str] = []
    if renamed:
        label.name, label.search_key = record.name, search_key(record.name)
        changes.append(f"renamed from {old_name!r}")
    if record.description is not None and record.description != label.description:
        label.description = record.description
        changes.append("description")
    if record.external_id is not None and record.external_id != label.external_id:
        label.external_id = record.external_id
        changes.append("external id")
    if new_parent is not UNSET and (new_parent.pk if new_parent else None) != label.parent_id:
        label.parent = new_parent
        changes.append("parent")
    label.save()
    if record.alt_names is not None:
        wanted = [alt for alt in record.alt_names if alt != label.name]
        if wanted != _alias_names(label):
            label.aliases.all().delete()
            _aliases_add(project, label, wanted)
            changes.append("alternative names")
    if renamed:
        LabelAlias.objects.filter(label=label, name=label.name).delete()  # the new name was an alternative name
        _aliases_add(project, label, [old_name])
        shown = SuggestionDecision.objects.filter(label=label).values_list("annotation_id", flat=True)
        _suggestion_names_replace(shown, old_name, label.name)
    if changes:
        _record(
            project=project,
            user=user,
            message=f"Label {label.name!r} edited: {', '.join(changes)}",
            data={"label": label.pk, "changes": changes},
        )
        _audit_changed(project, user, label, before)
    if renamed or "description" in changes or "alternative names" in changes:
        _vectors_refresh(project=project, label_ids=[label.pk])
    return label


@transaction.atomic
def label_merge(*, project: Project, user, label_id: int, into_id: int) -> Label:
    """Merges a label into another: every answer that chose it chooses the target instead (once, where it had
    both), the decisions on its suggestions and the queue's suggestions follow, its name and alternative names
    become alternative names of the target, its children move under the target, and it is deleted."""
    from .annotations import labels_recount

    if label_id == into_id:
        raise ProjectError("a label cannot be merged into itself")
    first, second = sorted((label_id, into_id))
    locked = {first: _locked(project, first), second: _locked(project, second)}
    source, target = locked[label_id], locked[into_id]
    if target.deprecated_at is not None:
        raise ProjectError(f"{target.name!r} is deprecated: restore it before merging into it")

    # Answers: the target once per answer.
    both = AnnotationLabel.objects.filter(label=target).values("annotation_id")
    doubled, _ = AnnotationLabel.objects.filter(label=source, annotation_id__in=both).delete()
    moved = doubled + AnnotationLabel.objects.filter(label=source).update(label=target)
    # Decisions on suggestions: one per answer and label; the target is accepted where the answer now has it.
    affected = list(SuggestionDecision.objects.filter(label=source).values_list("annotation_id", flat=True))
    decided = SuggestionDecision.objects.filter(label=target).values("annotation_id")
    SuggestionDecision.objects.filter(label=source, annotation_id__in=decided).delete()
    SuggestionDecision.objects.filter(label=source).update(label=target)
    chosen = AnnotationLabel.objects.filter(label=target).values("annotation_id")
    SuggestionDecision.objects.filter(label=target, annotation_id__in=affected).filter(
        annotation_id__in=chosen
    ).exclude(decision=SuggestionDecision.Decision.ACCEPTED).update(decision=SuggestionDecision.Decision.ACCEPTED)
    _suggestion_names_replace(affected, source.name, target.name)
    _queue_suggestions_merge(project, source.pk, target.pk)
    # Gold answers: the target once per gold answer, like the answers.
    gold_both = AdjudicationLabel.objects.filter(label=target).values("adjudication_id")
    gold_doubled, _ = AdjudicationLabel.objects.filter(label=source, adjudication_id__in=gold_both).delete()
    gold_moved = gold_doubled + AdjudicationLabel.objects.filter(label=source).update(label=target)
    _preannotations_merge(source, target)

    # The hierarchy: the source's children move under the target (never making the target its own ancestor).
    ancestor = target.parent
    while ancestor is not None and ancestor.pk != source.pk:
        ancestor = ancestor.parent
    if ancestor is not None:  # the target is a descendant of the source: it takes the source's place
        target.parent_id = source.parent_id
    Label.objects.filter(parent=source).exclude(pk=target.pk).update(parent=target)
    if not target.description and source.description:
        target.description = source.description
    target.save()
    _aliases_add(project, target, [source.name, *_alias_names(source)])
    LabelAlias.objects.filter(label=target, name=target.name).delete()
    source_name, source_external = source.name, source.external_id
    merged_state = _audit_state(source)
    source.delete()
    labels_recount(label_ids=[target.pk])
    audit_record(
        project=project,
        user=user,
        target=AuditEntry.Target.LABEL,
        action=AuditEntry.Action.DELETE,
        object_ref=f"label {label_id} ({source_name}) merged into {target.pk} ({target.name})",
        before=merged_state,
        after={"merged_into": target.name, "answers_moved": moved, "gold_moved": gold_moved},
    )
    _record(
        project=project,
        user=user,
        message=f"Label {source_name!r} merged into {target.name!r} ({moved} answer(s) moved)",
        data={
            "label": target.pk,
            "merged": source_name,
            "merged_id": label_id,
            "merged_external_id": source_external,
            "answers": moved,
        },
    )
    _vectors_refresh(project=project, label_ids=[target.pk])
    target.refresh_from_db()
    return target


def _preannotations_merge(source: Label, target: Label) -> None:
    """An external model's scores for the source label become scores for the target; where the source model scored
    both for a document, the higher score is kept."""
    if not PreAnnotation.objects.filter(label=source).exists():
        return
    both = {
        (document_id, origin): score
        for document_id, origin, score in PreAnnotation.objects.filter(label=target).values_list(
            "document_id", "source", "score"
        )
    }
    clash: list[int] = []
    for pk, document_id, origin, score in PreAnnotation.objects.filter(label=source).values_list(
        "pk", "document_id", "source", "score"
    ):
        kept = both.get((document_id, origin))
        if kept is None:
            continue
        clash.append(pk)
        if score > kept:
            PreAnnotation.objects.filter(document_id=document_id, source=origin, label=target).update(score=score)
    PreAnnotation.objects.filter(pk__in=clash).delete()
    PreAnnotation.objects.filter(label=source).update(label=target)


def _queue_suggestions_merge(project: Project, source_id: int, target_id: int) -> None:
    """Queue rows' shortlists ([[label_id, p], ...], best first): the source becomes the target, which keeps its
    best probability once."""
    changed: list[QueueItem] = []
    for item in QueueItem.objects.filter(project=project).only("id", "suggestions").iterator(chunk_size=_BATCH):
        pairs = item.suggestions or []
        if not any(int(label_id) == source_id for label_id, _ in pairs):
            continue
        best: dict[int, float] = {}
        for label_id, p in pairs:
            key = target_id if int(label_id) == source_id else int(label_id)
            best[key] = max(float(p), best.get(key, float("-inf")))
        item.suggestions = [[key, p] for key, p in sorted(best.items(), key=lambda kv: -kv[1])]
        changed.append(item)
    QueueItem.objects.bulk_update(changed, ["suggestions"], batch_size=500)


@transaction.atomic
def label_deprecate(*, project: Project, user, label_id: int, deprecated: bool = True) -> Label:
    """Deprecates a label (no longer offered to experts: hidden from search and the annotate page; answers and
    exports keep it), or restores it."""
    label = _locked(project, label_id)
    if (label.deprecated_at is not None) == deprecated:
        return label
    label.deprecated_at = timezone.now() if deprecated else None
    label.save(update_fields=["deprecated_at"])
    audit_record(
        project=project,
        user=user,
        target=AuditEntry.Target.LABEL,
        action=AuditEntry.Action.UPDATE,
        object_ref=f"label {label.pk} ({label.name})",
        before={"deprecated": not deprecated},
        after={"deprecated": deprecated},
    )
    _vectors_refresh(project=project, label_ids=[label.pk])
    _record(
        project=project,
        user=user,
        message=f"Label {label.name!r} {'deprecated' if deprecated else 'restored'}",
        data={"label": label.pk, "deprecated": deprecated},
    )
    return label
