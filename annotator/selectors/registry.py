"""Reads of the model registry: the serving version, encoders, version summaries and comparisons."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from .. import ml
from ..exceptions import NotFound
from ..models import (
    Document,
    EncoderVersion,
    Label,
    ModelVersion,
    Project,
)
from ..validation import whole_number


def serving_version(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, is_serving=True).first()


def newest_encoder_path(*, project: Project) -> str | None:
    """The encoder the next training reads: the newest adapted one (its folder under ARTIFACTS_DIR), else None (the
    base encoder)."""
    newest = EncoderVersion.objects.filter(project=project).order_by("-number").values_list("artifact_path", flat=True)
    return newest.first()


def adaptation_next_at(*, last: dict | None) -> int:
    """The labelled documents at which the next automatic adaptation is due after the last run `last`
    (Project.adapt_last): ALABEL_ADAPT_AUTO_DOCUMENTS at first, then twice the last run's documents."""
    first = max(settings.ALABEL_ADAPT_AUTO_DOCUMENTS, settings.ALABEL_ADAPT_MIN_DOCUMENTS)
    before = int((last or {}).get("documents") or 0)
    return max(first, 2 * before)


def adaptation_summary(*, project: Project) -> str:
    """The last encoder adaptation and the next automatic one, in words (the manager's jobs card)."""
    last = project.adapt_last or {}
    parts = []
    if last.get("documents"):
        text = f"Last encoder adaptation at {last['documents']} labelled documents"
        check = last.get("check")
        if check:
            text += (
                f": micro-F1 on {check['documents']} held-out documents {check['adapted']['micro_f1']:.3f} with the "
                f"adapted encoder against {check['base']['micro_f1']:.3f} with the one in use"
            )
        if last.get("adopted"):
            text += f", adopted as encoder e{last['encoder']}." if last.get("encoder") else ", adopted."
        else:
            text += ", not adopted (the project keeps its encoder)."
        parts.append(text)
    if project.adapt_auto:
        after = adaptation_next_at(last=last)
        cpu_max = settings.ALABEL_ADAPT_AUTO_CPU_MAX_DOCUMENTS
        if ml.device() != "cuda" and after > cpu_max:
            parts.append(f"Without a GPU, automatic adaptation stops at {cpu_max} labelled documents: adapt by hand.")
        else:
            parts.append(f"Next automatic adaptation at {after} labelled documents.")
    else:
        parts.append("Automatic adaptation is off.")
    return " ".join(parts)


def encoder_number(*, project: Project, encoder_path: str | None) -> int | None:
    """The EncoderVersion number of an encoder folder (None: the base encoder)."""
    if not encoder_path:
        return None
    return (
        EncoderVersion.objects.filter(project=project, artifact_path=encoder_path)
        .values_list("number", flat=True)
        .first()
    )


def encoder_versions(*, project: Project) -> QuerySet[EncoderVersion]:
    return EncoderVersion.objects.filter(project=project).order_by("-number")


def model_version_summary(version: ModelVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {
        "id": version.pk,
        "number": version.number,
        "is_serving": version.is_serving,
        "created_at": version.created_at,
        "n_annotations": version.n_annotations,
        "n_labels": version.n_labels,
        "metrics": version.metrics,
        "train_seconds": version.train_seconds,
        "device": version.device,
    }


def version_get(*, project: Project, number: object) -> ModelVersion:
    parsed = whole_number(number)
    if parsed is None:
        raise NotFound(f"no model version {number!r}")
    version = ModelVersion.objects.filter(project=project, number=parsed).first()
    if version is None:
        raise NotFound(f"project {project.pk} has no model version {number}")
    return version


def version_compare(*, project: Project, a: object, b: object, limit: int = 50) -> dict[str, Any]:
    """Version b against version a: deltas of the held-out metrics and of the evaluation-set metrics, per-label F1
    deltas on the evaluation set, and the stop-set documents whose predicted labels changed."""
    first, second = version_get(project=project, number=a), version_get(project=project, number=b)

    def deltas(x: dict, y: dict) -> dict[str, dict[str, float | None]]:
        return {
            name: {"a": x.get(name), "b": y.get(name), "delta": None if name not in x else round(y[name] - x[name], 5)}
            for name in sorted(set(x) | set(y))
            if isinstance(y.get(name, 0), int | float)
        }

    def evaluated(version: ModelVersion) -> dict[str, float]:
        return {name: m["value"] for name, m in (version.evaluation or {}).get("metrics", {}).items()}

    def per_label(version: ModelVersion) -> dict[str, float]:
        return {row["label"]: row["f1"] for row in version.evaluation_per_label or []}

    fa, fb = per_label(first), per_label(second)
    label_deltas = sorted(
        (
            {
                "label": name,
                "a": fa.get(name),
                "b": fb.get(name),
                "delta": round(fb.get(name, 0.0) - fa.get(name, 0.0), 5),
            }
            for name in set(fa) | set(fb)
        ),
        key=lambda row: (-abs(row["delta"]), row["label"]),
    )
    changed_rows = []
    stop_set = list(project.stop_set or [])
    pa, pb = first.stop_predictions or [], second.stop_predictions or []
    comparable = len(pa) == len(pb) == len(stop_set) > 0
    if comparable:
        changed_rows = [
            (doc_id, set(x), set(y)) for doc_id, x, y in zip(stop_set, pa, pb, strict=True) if set(x) != set(y)
        ]
    shown = changed_rows[:limit]
    names = dict(Label.objects.filter(pk__in={i for _, x, y in shown for i in x | y}).values_list("id", "name"))
    docs = dict(Document.objects.filter(pk__in=[d for d, _, _ in shown]).values_list("id", "external_id"))
    return {
        "a": first.number,
        "b": second.number,
        "metrics": deltas(first.metrics or {}, second.metrics or {}),
        "evaluation": deltas(evaluated(first), evaluated(second)),
        "evaluated_on": {"a": first.evaluation.get("n_documents"), "b": second.evaluation.get("n_documents")},
        "per_label": label_deltas[:limit],
        "changed": {
            "comparable": comparable,
            "documents": len(stop_set) if comparable else 0,
            "count": len(changed_rows),
            "examples": [
                {
                    "document": doc_id,
                    "external_id": docs.get(doc_id, ""),
                    "added": sorted(names.get(i, str(i)) for i in y - x),
                    "removed": sorted(names.get(i, str(i)) for i in x - y),
                }
                for doc_id, x, y in shown
            ],
        },
    }
