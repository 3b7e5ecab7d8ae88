"""Reads for pre-annotations (external models' labels with scores, `models.PreAnnotation`): which source, if any, a
queue item shows instead of the model's suggestions, how they are pre-ticked, and the per-source overview.

The rule (docs/api.md, "Pre-annotations"): a document with pre-annotations shows one source's labels, best score
first, the first `suggestions_k`, each marked `"source": <name>`, while the model version that scored the item has
not beaten that source (its `preannotation_comparison[source]["model_better"]` is not true; no model yet counts as
not beaten). Several such sources: the one with the best measured micro-F1 on the evaluation set, else the newest
imported. An external suggestion is pre-ticked only when its score is at least `PRETICK_SCORE` and the comparison
measured the source's decisions (score >= 0.5) right at least `project.pretick_floor` of the time on at least
`PRETICK_MIN_DOCUMENTS` labelled evaluation documents; otherwise none is."""

from __future__ import annotations

from typing import Any

from django.db.models import Count

from ..models import ModelVersion, PreAnnotation, Project, QueueItem

DECISION_SCORE = 0.5  # an external source "decides" a label when it scores it at least this (the comparison)
PRETICK_SCORE = 0.5  # external suggestions scoring at least this may be pre-ticked ...
PRETICK_MIN_DOCUMENTS = 30  # ... when the source's precision was measured on at least this many documents
MODEL_BETTER_MIN_DOCUMENTS = 20  # the model beats a source only on at least this many covered labelled documents


def _comparison(version: ModelVersion | None) -> dict[str, Any]:
    return (version.preannotation_comparison or {}) if version is not None else {}


def source_beaten(*, version: ModelVersion | None, source: str) -> bool:
    """Whether `version` measured better than `source` on the evaluation set (then the model's suggestions show)."""
    return _comparison(version).get(source, {}).get("model_better") is True


def source_pretick_rule(*, project: Project, version: ModelVersion | None, source: str) -> dict[str, Any]:
    """`selectors.pretick_rule`'s shape for an external source's suggestions (see the module's rule)."""
    floor = float(project.pretick_floor)
    if not project.preticks_enabled:
        return {"threshold": None, "floor": floor, "reason": "a project manager switched pre-ticks off"}
    measured = _comparison(version).get(source)
    documents = measured.get("n_documents", 0) if measured else 0
    precision = (measured.get("source") or {}).get("precision") if measured else None
    if precision is None or documents < PRETICK_MIN_DOCUMENTS:
        return {
            "threshold": None,
            "floor": floor,
            "reason": f"suggestions by {source} are not checked yet (that needs {PRETICK_MIN_DOCUMENTS} labelled "
            f"evaluation documents it covers; {documents} so far)",
        }
    if precision < floor:
        return {
            "threshold": None,
            "floor": floor,
            "reason": f"{source}'s labels scoring at least {DECISION_SCORE} were right {round(precision * 100)} % of "
            f"the time on {documents} evaluation documents, under the floor of {round(floor * 100)} %",
        }
    return {
        "threshold": PRETICK_SCORE,
        "precision": precision,
        "floor": floor,
        "source": f"{source}'s labels checked on {documents} labelled evaluation documents",
    }


def preannotation_suggestions(*, project: Project, item: QueueItem) -> tuple[list[dict[str, Any]], dict] | None:
    """The external suggestions a queue item shows (named like `suggestions_named`, each with `"source"`) and their
    pre-tick rule, or None when the document has no pre-annotations of a source the item's model has not beaten.
    No query when the project has no pre-annotations; else one."""
    if not project.preannotation_sources:
        return None
    version = item.model_version  # fetched with the item (select_related); None before the first model
    rows = list(
        PreAnnotation.objects.filter(document_id=item.document_id, label__deprecated_at__isnull=True)
        .order_by("-score", "label_id")
        .values_list("source", "label_id", "label__name", "label__description", "score")
    )
    by_source: dict[str, list[tuple[int, str, str, float]]] = {}
    for source, label_id, name, description, score in rows:
        if not source_beaten(version=version, source=source):
            by_source.setdefault(source, []).append((label_id, name, description, score))
    if not by_source:
        return None
    comparison = _comparison(version)
    measured = [s for s in by_source if (comparison.get(s) or {}).get("source", {}).get("micro_f1") is not None]
    if measured:
        source = max(measured, key=lambda s: (comparison[s]["source"]["micro_f1"], s))
    else:
        order = {name: position for position, name in enumerate(project.preannotation_sources)}
        source = max(by_source, key=lambda s: (order.get(s, -1), s))
    rule = source_pretick_rule(project=project, version=version, source=source)
    threshold = rule["threshold"]
    return [
        {
            "label_id": label_id,
            "label": name,
            "description": description,
            "score": round(float(score), 4),
            "preselected": threshold is not None and round(float(score), 4) >= threshold,
            "source": source,
        }
        for label_id, name, description, score in by_source[source][: project.suggestions_k]
    ], rule


def preannotations_overview(*, project: Project, version: ModelVersion | None) -> dict[str, Any]:
    """Per source: pre-annotations and documents covered, and `version`'s (the serving model's) comparison with it
    (None when not measured) and whether it is beaten; the documents any source covers."""
    counts = {
        row["source"]: row
        for row in PreAnnotation.objects.filter(project=project)
        .values("source")
        .annotate(preannotations=Count("id"), documents=Count("document", distinct=True))
        .order_by()
    }
    comparison = _comparison(version)
    sources = []
    for name in reversed(project.preannotation_sources or []):  # newest first
        found = counts.get(name, {})
        sources.append(
            {
                "source": name,
                "preannotations": found.get("preannotations", 0),
                "documents": found.get("documents", 0),
                "model_better": source_beaten(version=version, source=name),
                "comparison": comparison.get(name),
            }
        )
    covered = PreAnnotation.objects.filter(project=project).values("document_id").distinct().count()
    return {
        "model_version": version.number if version is not None else None,
        "documents": covered,
        "sources": sources,
    }
