"""The audit log: one row per change to answers, gold answers, labels, members and settings (who, when, before and
after). The services that make a change write its row in the same transaction, so the log never misses a committed
change nor holds one that rolled back."""

from __future__ import annotations

from typing import Any

from ..models import AuditEntry, Project


def _jsonable(value: Any) -> Any:
    """Values as the log stores them: sets and tuples as sorted lists, everything else as JSON can hold it."""
    if isinstance(value, set | frozenset):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def audit_record(
    *,
    project: Project | int,
    user,
    target: str,
    action: str,
    object_ref: object = "",
    before: Any = None,
    after: Any = None,
) -> AuditEntry | None:
    """Writes one audit row. An update whose before equals its after changed nothing and writes none (None)."""
    before, after = _jsonable(before), _jsonable(after)
    if action == AuditEntry.Action.UPDATE and before == after:
        return None
    return AuditEntry.objects.create(
        project_id=project if isinstance(project, int) else project.pk,
        user=user if getattr(user, "pk", None) else None,
        username=getattr(user, "username", "") or "",
        target=target,
        action=action,
        object_ref=str(object_ref)[:300],
        before=before,
        after=after,
    )


def audit_changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the keys whose value changed, from both sides: what a settings row shows."""
    keys = [key for key in after if _jsonable(before.get(key)) != _jsonable(after.get(key))]
    return {key: before.get(key) for key in keys}, {key: after.get(key) for key in keys}
