"""Reading the audit log (services.audit writes it): newest first, keyset paging by id."""

from __future__ import annotations

from typing import Any

from ..exceptions import ProjectError
from ..models import AuditEntry, Project

AUDIT_MAX_LIMIT = 200


def audit_entries(
    *, project: Project, target: str | None = None, after: int | None = None, limit: int = 50
) -> dict[str, Any]:
    """One page of the project's audit log, newest first: {"entries": [{id, created_at, username, target, action,
    object_ref, before, after}], "next": the last entry's id or None}. `target` keeps one kind of change (answer,
    gold, label, member, settings, project); `after` is the previous page's `next` (entries older than it). An
    index range scan of `audit_project_idx` / `audit_project_target_idx`."""
    limit = max(1, min(int(limit), AUDIT_MAX_LIMIT))
    entries = AuditEntry.objects.filter(project=project)
    if target:
        if target not in AuditEntry.Target.values:
            raise ProjectError(f"target must be one of: {', '.join(AuditEntry.Target.values)}")
        entries = entries.filter(target=target)
    if after is not None:
        entries = entries.filter(pk__lt=after)
    rows = list(
        entries.order_by("-id").values(
            "id", "created_at", "username", "target", "action", "object_ref", "before", "after"
        )[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {"entries": rows, "next": rows[-1]["id"] if more and rows else None}
