"""Reads of the taxonomy: the hierarchy for the annotate page's picker, and labels with their taxonomy fields for
the manage page."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When

from ..exceptions import NotFound
from ..models import Label, LabelAlias, Project
from ..text import fold

TREE_LIMIT = 200
LIST_LIMIT = 50


def _active_children() -> Count:
    return Count("children", filter=Q(children__deprecated_at__isnull=True))


def label_tree(*, project: Project, parent_id: int | None, limit: int = TREE_LIMIT, offset: int = 0) -> dict[str, Any]:
    """The labels directly under `parent_id` (None: the roots), by name, deprecated ones left out, each with its
    number of non-deprecated children: {"parent", "count", "labels": [{"id", "name", "description", "external_id",
    "children"}]}. NotFound when the parent is not a label of the project."""
    if parent_id is not None and not Label.objects.filter(project=project, pk=parent_id).exists():
        raise NotFound(f"label {parent_id} not found in this project")
    rows = Label.objects.filter(project=project, parent_id=parent_id, deprecated_at__isnull=True)
    count = rows.count()
    page = rows.order_by("name", "id").values("id", "name", "description", "external_id")[
        offset : offset + max(1, min(limit, 1000))
    ]
    ids = [row["id"] for row in page]
    children = dict(
        Label.objects.filter(parent_id__in=ids, deprecated_at__isnull=True)
        .order_by()
        .values("parent_id")
        .annotate(n=Count("id"))
        .values_list("parent_id", "n")
    )
    return {
        "parent": parent_id,
        "count": count,
        "labels": [{**row, "children": children.get(row["id"], 0)} for row in page],
    }


def labels_taxonomy(*, label_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """{label_id: {"external_id", "parent", "parent_name", "alt_names", "deprecated", "deprecated_at"}} for the given
    labels, in two queries: what a manager sees next to a label."""
    ids = sorted(set(label_ids))
    aliases: dict[int, list[str]] = defaultdict(list)
    for label_id, name in LabelAlias.objects.filter(label_id__in=ids).order_by("id").values_list("label_id", "name"):
        aliases[label_id].append(name)
    out: dict[int, dict[str, Any]] = {}
    for pk, external_id, parent_id, parent_name, deprecated_at in Label.objects.filter(pk__in=ids).values_list(
        "id", "external_id", "parent_id", "parent__name", "deprecated_at"
    ):
        out[pk] = {
            "external_id": external_id,
            "parent": parent_id,
            "parent_name": parent_name,
            "alt_names": aliases.get(pk, []),
            "deprecated": deprecated_at is not None,
            "deprecated_at": deprecated_at,
        }
    return out


def _label_rows(labels: QuerySet[Label]) -> list[dict[str, Any]]:
    rows = list(
        labels.annotate(n_children=_active_children()).values("id", "name", "description", "frequency", "n_children")
    )
    extra = labels_taxonomy(label_ids=[row["id"] for row in rows])
    return [
        {**{k: v for k, v in row.items() if k != "n_children"}, "children": row["n_children"], **extra[row["id"]]}
        for row in rows
    ]


def label_detail(*, project: Project, label_id: int) -> dict[str, Any]:
    """One label with its taxonomy fields; NotFound outside the project."""
    rows = _label_rows(Label.objects.filter(project=project, pk=label_id))
    if not rows:
        raise NotFound(f"label {label_id} not found in this project")
    return rows[0]


def taxonomy_labels(
    *, project: Project, query: str = "", status: str = "all", limit: int = LIST_LIMIT, offset: int = 0
) -> dict[str, Any]:
    """The manage page's label list: every word of `query` in the name or an alternative name (case and accents
    ignored), or the exact external id; `status`: "active", "deprecated" or "all". By name; {"count", "labels"}."""
    labels = Label.objects.filter(project=project)
    if status == "active":
        labels = labels.filter(deprecated_at__isnull=True)
    elif status == "deprecated":
        labels = labels.filter(deprecated_at__isnull=False)
    words = fold(query or "").split()
    if words:
        by_name = Q()
        by_alias = LabelAlias.objects.filter(project=project)
        for word in words:
            by_name &= Q(search_key__contains=word)
            by_alias = by_alias.filter(search_key__contains=word)
        labels = labels.filter(by_name | Q(pk__in=by_alias.values("label_id")) | Q(external_id=query.strip()))
    count = labels.count()
    order: list[Any] = ["name", "id"]
    if words:  # the label named (or identified) exactly by the query first
        exact = Q(search_key=fold(query)[:255]) | Q(external_id=query.strip())
        order.insert(0, Case(When(exact, then=Value(0)), default=Value(1), output_field=IntegerField()))
    page = labels.order_by(*order)[offset : offset + max(1, min(limit, 200))]
    ids = list(page.values_list("id", flat=True))
    rows = {row["id"]: row for row in _label_rows(Label.objects.filter(pk__in=ids))}
    return {"count": count, "labels": [rows[pk] for pk in ids]}
