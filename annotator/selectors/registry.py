"""Reads of the model registry: the serving version, encoders, version summaries and comparisons."""

from __future__ import annotations

import math
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


# Human names and one-line meanings of the metrics a version is measured with (the model card and the comparison).
METRICS: dict[str, tuple[str, str]] = {
    "micro_f1": (
        "micro-F1",
        "F1 over every document-label decision pooled: both the share of labels given that are right and the share "
        "of right labels that are given count",
    ),
    "macro_f1": ("macro-F1", "F1 of each label, averaged so that a rare label counts as much as a frequent one"),
    "P@1": ("precision at 1", "share of documents whose first suggestion is right"),
    "P@3": ("precision at 3", "share of the first 3 suggestions that are right"),
    "P@5": ("precision at 5", "share of the first 5 suggestions that are right"),
    "nDCG@5": ("nDCG at 5", "how well the first 5 suggestions are ordered: right labels nearer the top count more"),
    "PSP@5": (
        "propensity-scored precision at 5",
        "precision at 5 with rare labels weighted up (Jain et al. 2016): credit for finding the rare ones",
    ),
}


def metric_name(key: str) -> str:
    return METRICS.get(key, (key, ""))[0]


def _ordered(keys) -> list[str]:
    order = list(METRICS)
    return sorted(keys, key=lambda k: (order.index(k) if k in order else len(order), k))


def model_tier_text(tier: str, config: dict[str, Any], device: str) -> str:
    """Which model a version is, in words, from its tier, tier config and device (`ml.tier_config`,
    ModelVersion.device): "full tier, tree head, fine-tuned on cuda" or "fast tier, flat head on both features,
    trained on cpu" (a head not recorded is left out)."""
    head = config.get("head")
    parts = [f"{tier} tier"]
    if head and head != "auto":
        features = config.get("features")
        parts.append(f"{head} head" + (f" on {features} features" if tier == "fast" and features else ""))
    if device:
        parts.append(("fine-tuned on " if tier == "full" else "trained on ") + device)
    return ", ".join(parts)


def model_card(*, project: Project) -> dict[str, Any] | None:
    """The serving version in words: the metrics on the evaluation set (with intervals) and on validation, each
    under a human name, where each of the two measurements comes from, and each metric explained once. None without
    a serving version."""
    version = serving_version(project=project)
    if version is None:
        return None
    evaluation = version.evaluation or {}
    measured = evaluation.get("metrics") or {}
    validation = {k: v for k, v in (version.metrics or {}).items() if k != "n_val" and isinstance(v, int | float)}
    n_val = (version.metrics or {}).get("n_val")
    shown = set(measured) | set(validation)
    tier, tier_settings = ml.tier_config(version.config or {})
    return {
        "number": version.number,
        "n_annotations": version.n_annotations,
        "train_seconds": version.train_seconds,
        "device": version.device,
        "tier": tier,
        "tier_text": model_tier_text(tier, tier_settings, version.device),
        "evaluation": {
            "documents": int(evaluation.get("n_documents") or 0),
            "rows": [{"key": k, "name": metric_name(k), **measured[k]} for k in _ordered(measured)],
        }
        if measured
        else None,
        "validation": {
            "documents": int(n_val) if isinstance(n_val, int | float) else None,
            "rows": [{"key": k, "name": metric_name(k), "value": validation[k]} for k in _ordered(validation)],
        }
        if validation
        else None,
        "glossary": [{"name": METRICS[k][0], "meaning": METRICS[k][1]} for k in _ordered(shown) if k in METRICS],
    }


def _change_row(x: dict | None, y: dict | None, key: str, delta: float | None) -> dict[str, Any]:
    """One row of a comparison: both versions' values (`key`) with their intervals, the change and its interval."""
    low, high = _change_interval(x, y, delta)
    return {
        "a": x[key] if x else None,
        "b": y[key] if y else None,
        "delta": delta,
        "a_low": x.get("low") if x else None,
        "a_high": x.get("high") if x else None,
        "b_low": y.get("low") if y else None,
        "b_high": y.get("high") if y else None,
        "delta_low": low,
        "delta_high": high,
    }


def _change_interval(x: dict | None, y: dict | None, delta: float | None) -> tuple[float | None, float | None]:
    """An approximate 95 % interval for y - x from each value's own 95 % interval (`low`, `high`): the delta plus
    or minus the root of the summed squared half-widths (normal approximation, as if the two were independent).
    The two versions are measured on the same evaluation documents, so their errors correlate positively and the
    true variance of the difference, var(x) + var(y) - 2 cov(x, y), is smaller: this interval is conservative. A
    paired bootstrap would be tighter but needs per-document outcomes, which are not stored."""
    if delta is None or not x or not y or "low" not in x or "low" not in y:
        return None, None
    half = math.hypot((x["high"] - x["low"]) / 2, (y["high"] - y["low"]) / 2)
    return round(max(-1.0, delta - half), 5), round(min(1.0, delta + half), 5)


def version_compare(*, project: Project, a: object, b: object, limit: int = 50) -> dict[str, Any]:
    """Version b against version a: deltas of the held-out metrics and of the evaluation-set metrics (each value with
    its 95 % interval and the change with a conservative one, `_change_interval`), per-label F1 changes on the
    evaluation set (labels whose F1 did not change at the page's three decimals are left out and counted), and the
    stop-set documents whose predicted labels changed."""
    first, second = version_get(project=project, number=a), version_get(project=project, number=b)

    def deltas(x: dict, y: dict) -> dict[str, dict[str, float | None]]:
        return {
            name: {"a": x.get(name), "b": y.get(name), "delta": None if name not in x else round(y[name] - x[name], 5)}
            for name in sorted(set(x) | set(y))
            if isinstance(y.get(name, 0), int | float)
        }

    def measured(version: ModelVersion) -> dict[str, dict[str, float]]:
        return dict((version.evaluation or {}).get("metrics", {}))

    ma, mb = measured(first), measured(second)
    evaluation = {}
    for name in _ordered(set(ma) | set(mb)):
        x, y = ma.get(name), mb.get(name)
        delta = round(y["value"] - x["value"], 5) if x and y else None
        evaluation[name] = {"name": metric_name(name), **_change_row(x, y, "value", delta)}

    def per_label(version: ModelVersion) -> dict[str, dict]:
        return {row["label"]: row for row in version.evaluation_per_label or []}

    fa, fb = per_label(first), per_label(second)
    rows = []
    for name in set(fa) | set(fb):
        x, y = fa.get(name), fb.get(name)
        delta = round((y["f1"] if y else 0.0) - (x["f1"] if x else 0.0), 5)
        rows.append({"label": name, **_change_row(x, y, "f1", delta)})
    changed_labels = sorted(
        (row for row in rows if round(row["delta"], 3) != 0), key=lambda row: (-abs(row["delta"]), row["label"])
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
        "evaluation": evaluation,
        "evaluated_on": {"a": first.evaluation.get("n_documents"), "b": second.evaluation.get("n_documents")},
        "per_label": changed_labels[:limit],
        "unchanged_labels": len(rows) - len(changed_labels),
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


def strategy_in_use(*, project: Project) -> dict[str, Any]:
    """The query strategy the queue actually uses, in words: "default" resolved for the label count (the serving
    version's, else the project's labels, which the next training learns), `auto` with the arm of its last run, and
    the cold start before the first model."""
    version = serving_version(project=project)
    n_labels = version.n_labels if version else Label.objects.filter(project=project).count()
    name = ml.resolve_strategy(project.strategy, n_labels)[0]
    text = name
    if project.strategy == "default":
        text += f" (the default for {n_labels:,} label{'s' if n_labels != 1 else ''})"
    if ml.is_auto(name) and (project.chooser_state or {}).get("arm"):
        text += f"; its last run picked with {project.chooser_state['arm']}"
    if version is None:
        text = f"cold start (documents picked for diversity) until the first model, then {text}"
    return {"name": name, "configured": project.strategy, "text": text}
