"""Reads: permission look-ups, search, statistics, export. No writes here."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Case, Count, Exists, IntegerField, OuterRef, Q, QuerySet, Sum, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from . import ml
from .exceptions import NotFound, PermissionDenied
from .models import (
    Activity,
    Annotation,
    AnnotationLabel,
    BudgetAlert,
    Document,
    EncoderVersion,
    Job,
    Label,
    Membership,
    ModelVersion,
    Project,
    QueueItem,
    SavingsEstimate,
    SuggestionDecision,
    TrainingSchedule,
    WorkerHeartbeat,
)
from .text import fold


# --- permissions -------------------------------------------------------------------------------------------------
def projects_for_user(*, user) -> QuerySet[Project]:
    return Project.objects.filter(memberships__user=user).distinct().order_by("-id")


def project_role(*, project: Project, user) -> str | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def project_get_for(*, project_id: int, user, manager: bool = False) -> tuple[Project, str]:
    """The project if the user is a member (and a manager when asked); NotFound / PermissionDenied otherwise.

    Non-members get the same 404 as for a missing project, so project ids leak nothing.
    """
    membership = (
        Membership.objects.select_related("project").filter(project_id=project_id, user_id=user.pk).first()
        if user.is_authenticated
        else None
    )
    if membership is None:
        raise NotFound(f"project {project_id} does not exist or you are not a member of it")
    if manager and membership.role != Membership.Role.MANAGER:
        raise PermissionDenied("only managers of this project may do this")
    return membership.project, membership.role


# --- model versions and queue ------------------------------------------------------------------------------------
def serving_version(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, is_serving=True).first()


def unlabelled_document_ids(*, project: Project) -> list[int]:
    """The active-learning pool: unlabelled documents outside the evaluation set."""
    return list(
        Document.objects.filter(project=project, is_evaluation=False)
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("pk"))))
        .order_by("id")
        .values_list("id", flat=True)
    )


def annotations_new_since(*, project: Project, cutoff) -> int:
    """Answers a new model would learn from (the evaluation set's are never trained on)."""
    qs = Annotation.objects.filter(project=project, document__is_evaluation=False)
    if cutoff is not None:
        qs = qs.filter(updated_at__gt=cutoff)
    return qs.count()


@dataclass(frozen=True)
class Budget:
    budget: int | None
    spent: int  # documents labelled by experts (seed labels from imports are free)
    in_progress: int  # documents leased right now and not yet labelled

    @property
    def remaining(self) -> int | None:
        if self.budget is None:
            return None
        return max(self.budget - self.spent, 0)

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and self.spent >= self.budget


def budget_for(*, project: Project) -> Budget:
    spent = (
        Annotation.objects.filter(project=project)
        .exclude(source=Annotation.Source.IMPORT)
        .values("document_id")
        .distinct()
        .count()
    )
    in_progress = (
        QueueItem.objects.filter(project=project, lease_expires_at__gt=timezone.now())
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("document"))))
        .values("document")
        .distinct()
        .count()
    )
    return Budget(budget=project.label_budget, spent=spent, in_progress=in_progress)


def member_spent(*, project: Project, user) -> int:
    """Documents the user labelled in the project (their seed imports excluded): what their quota counts."""
    return Annotation.objects.filter(project=project, annotator=user).exclude(source=Annotation.Source.IMPORT).count()


def member_quota_left(*, project: Project, user) -> int | None:
    """Documents the user may still label under their quota (leases they hold included); None without a quota."""
    quota = Membership.objects.filter(project=project, user=user).values_list("quota", flat=True).first()
    if quota is None:
        return None
    held = (
        QueueItem.objects.filter(project=project, leased_to=user, lease_expires_at__gt=timezone.now())
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("document"))))
        .count()
    )
    return max(quota - member_spent(project=project, user=user) - held, 0)


def _labelled_per_day(project: Project, since) -> dict[date, int]:
    """Documents answered by experts per day (in the current time zone) since `since`, by when each answer was
    first given."""
    return dict(
        Annotation.objects.filter(project=project, created_at__gte=since)
        .exclude(source=Annotation.Source.IMPORT)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("document_id", distinct=True))
        .values_list("day", "n")
    )


def budget_overview(*, project: Project, days: int = 30) -> dict[str, Any]:
    """Spent, remaining, burn rate (documents per day over the last 7 days), projected exhaustion date, cost,
    documents per day for the last `days` days, the thresholds that fired and the quotas."""
    budget = budget_for(project=project)
    now = timezone.now()
    today = timezone.localdate(now)
    per_day = _labelled_per_day(project, now - timedelta(days=max(days, 7)))
    last_week = (
        Annotation.objects.filter(project=project, created_at__gte=now - timedelta(days=7))
        .exclude(source=Annotation.Source.IMPORT)
        .values("document_id")
        .distinct()
        .count()
    )
    burn = last_week / 7.0
    exhaustion = None
    if budget.budget is not None and budget.remaining and burn > 0:
        exhaustion = today + timedelta(days=math.ceil(budget.remaining / burn))
    elif budget.exhausted:
        exhaustion = today
    cost = None
    if project.cost_per_document is not None:
        unit = Decimal(project.cost_per_document)
        cost = {
            "per_document": str(unit),
            "currency": project.currency,
            "spent": str((unit * budget.spent).quantize(Decimal("0.01"))),
            "remaining": str((unit * budget.remaining).quantize(Decimal("0.01")))
            if budget.remaining is not None
            else None,
            "total": str((unit * budget.budget).quantize(Decimal("0.01"))) if budget.budget is not None else None,
        }
    members = list(
        Membership.objects.filter(project=project, quota__isnull=False)
        .order_by("user__username")
        .values_list("user_id", "user__username", "quota")
    )
    done = (
        dict(
            Annotation.objects.filter(project=project, annotator_id__in=[m[0] for m in members])
            .exclude(source=Annotation.Source.IMPORT)
            .values("annotator_id")
            .annotate(n=Count("id"))
            .values_list("annotator_id", "n")
        )
        if members
        else {}
    )
    quotas = [{"username": name, "quota": quota, "spent": done.get(user_id, 0)} for user_id, name, quota in members]
    return {
        "label_budget": budget.budget,
        "mode": project.budget_mode,
        "spent": budget.spent,
        "remaining": budget.remaining,
        "in_progress": budget.in_progress,
        "exhausted": budget.exhausted,
        "percent_spent": round(100.0 * budget.spent / budget.budget, 1) if budget.budget else None,
        "burn_rate_per_day": round(burn, 2),
        "projected_exhaustion": exhaustion,
        "cost": cost,
        "per_day": [
            {"date": today - timedelta(days=offset), "documents": per_day.get(today - timedelta(days=offset), 0)}
            for offset in range(days - 1, -1, -1)
        ],
        "alerts": [
            {"percent": a.percent, "spent": a.spent, "budget": a.budget, "fired_at": a.fired_at}
            for a in BudgetAlert.objects.filter(project=project).order_by("percent")
        ],
        "quotas": quotas,
    }


def activities(*, project: Project, limit: int = 20) -> QuerySet[Activity]:
    return Activity.objects.filter(project=project).order_by("-id")[:limit]


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


def effective_threshold(*, project: Project, version: ModelVersion | None) -> float:
    """The probability at which the model decides a label applies (margin strategies, stop-set decisions): the
    manager's setting, else the serving model's threshold tuned for micro-F1 on held-out labels, else 0.5.
    Pre-ticks follow `pretick_rule` instead."""
    if project.decision_threshold is not None:
        return float(project.decision_threshold)
    if version is not None and isinstance(version.config.get("threshold"), int | float):
        return float(version.config["threshold"])
    return 0.5


def _evidence(result: dict[str, Any]) -> str:
    source = f"checked on {result['documents']} labelled documents the model did not train on"
    if result["decisions"]:
        n = result["decisions"]
        source += f" and {n} expert decision{'s' if n != 1 else ''} on its suggestions"
    return source


def pretick_rule(*, project: Project, version: ModelVersion | None) -> dict[str, Any]:
    """When the suggestions of `version` are pre-ticked, and why: {"threshold", "precision", "floor", "source"}, or
    {"threshold": None, "floor", "reason"} when nothing is.

    A manager's `decision_threshold` wins; else nothing when pre-ticks are switched off; else the lowest score at
    which pre-ticks were right at least `pretick_floor` of the time with 95 % confidence (the lower bound of their
    precision, learner.decision.pretick_threshold), on the version's tick curve (its calibrated
    scores checked by cross-validation, or on held-out documents, at training) plus the experts' decisions on its
    suggestions (`ModelVersion.decision_counts`). No version, or one without a curve (trained on too few
    documents): nothing. No queries: `version` comes with its queue item."""
    floor = float(project.pretick_floor)
    curve = version.config.get("tick_curve") if version is not None else None
    bins = (version.decision_counts or {}).get("bins", []) if version is not None else []
    if project.decision_threshold is not None:
        threshold = float(project.decision_threshold)
        checked = ml.pretick(curve, bins, floor=floor, threshold=threshold) if curve else None
        return {
            "threshold": threshold,
            "precision": checked["precision"] if checked else None,
            "floor": floor,
            "source": "set by a project manager",
        }
    if not project.preticks_enabled:
        return {"threshold": None, "floor": floor, "reason": "a project manager switched pre-ticks off"}
    if version is None:
        return {
            "threshold": None,
            "floor": floor,
            "reason": "no model is trained yet (suggestions come from the label names alone)",
        }
    result = ml.pretick(curve, bins, floor=floor) if curve else None
    if result is None:
        return {
            "threshold": None,
            "floor": floor,
            "reason": "this model's scores are not checked yet (that needs 20 labelled documents)",
        }
    if result["threshold"] is None:
        return {
            "threshold": None,
            "floor": floor,
            "reason": f"no score is shown, with {round(ml.PRETICK_CONFIDENCE * 100)} % confidence, to be right at "
            f"least {round(floor * 100)} % of the time yet ({_evidence(result)})",
        }
    return {
        "threshold": result["threshold"],
        "precision": result["precision"],
        "floor": floor,
        "source": _evidence(result),
    }


def suggestions_named(*, pairs: list[list[float]], threshold: float | None) -> list[dict[str, Any]]:
    """[[label_id, p], ...] -> [{"label_id", "label", "description", "score", "preselected"}], best first; pre-ticked
    at `threshold` (None: none)."""
    ids = [int(label_id) for label_id, _ in pairs]
    named = {
        pk: (name, description)
        for pk, name, description in Label.objects.filter(pk__in=ids).values_list("id", "name", "description")
    }
    return [
        {
            "label_id": int(label_id),
            "label": named[int(label_id)][0],
            "description": named[int(label_id)][1],
            "score": round(float(score), 4),
            "preselected": threshold is not None and round(float(score), 4) >= threshold,
        }
        for label_id, score in pairs
        if int(label_id) in named
    ]


def item_suggestions(*, project: Project, item: QueueItem) -> list[dict[str, Any]]:
    """What a queue item shows as suggestions: the first `suggestions_k` of its shortlist, named, pre-ticked by the
    pre-tick rule of the version that scored it (`pretick_rule`)."""
    return suggestions_named(
        pairs=item.suggestions[: project.suggestions_k],
        threshold=pretick_rule(project=project, version=item.model_version)["threshold"],
    )


# --- labels --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelHit:
    id: int
    name: str
    description: str
    frequency: int
    score: float | None  # the model's probability for the document searched for, when it is in its shortlist


def document_label_scores(*, project: Project, user, document_id: int) -> dict[int, float]:
    """The model's shortlist {label_id: probability} for a document, as served to this user (else as served to
    anyone, else as shown with the user's own answer); empty when there is none."""
    item = (
        QueueItem.objects.filter(project=project, document_id=document_id)
        .order_by(
            Case(When(leased_to=user, then=Value(0)), default=Value(1), output_field=IntegerField()), "-created_at"
        )
        .values_list("suggestions", flat=True)
        .first()
    )
    if item:
        return {int(label_id): float(p) for label_id, p in item}
    shown = (
        Annotation.objects.filter(document_id=document_id, document__project=project, annotator=user)
        .values_list("suggestions", flat=True)
        .first()
    )
    if not shown:
        return {}
    ids = dict(Label.objects.filter(project=project, name__in=[s["label"] for s in shown]).values_list("name", "id"))
    return {ids[s["label"]]: float(s["score"]) for s in shown if s["label"] in ids}


def label_search(
    *, project: Project, query: str, limit: int = 20, scores: dict[int, float] | None = None
) -> list[LabelHit]:
    """Case- and diacritics-insensitive search over label names ("kunstliche int" finds "Künstliche Intelligenz").

    Every word of the query must occur in the name (as a prefix or inside it). Ranking: labels the model scored for
    the document (`scores`), best first; then an exact match; then by label frequency; prefix matches before
    other matches; then by name. Two indexed queries with a LIMIT each; never loads the whole label set.
    """
    limit = max(1, min(int(limit), 100))
    key = fold(query or "")
    scores = scores or {}
    base = Label.objects.filter(project=project)
    for word in key.split():
        base = base.filter(search_key__contains=word)
    fields = ("id", "name", "description", "frequency")
    hits: list[LabelHit] = []
    if scores:
        scored = list(base.filter(pk__in=list(scores)).values_list(*fields))
        scored.sort(key=lambda row: (-scores[row[0]], row[1]))
        hits = [LabelHit(*row, score=scores[row[0]]) for row in scored[:limit]]
    if len(hits) >= limit:
        return hits
    rest = base.exclude(pk__in=[hit.id for hit in hits]) if hits else base
    if key:
        rest = rest.annotate(
            exact=Case(When(search_key=key, then=Value(1)), default=Value(0), output_field=IntegerField()),
            prefix=Case(When(search_key__startswith=key, then=Value(1)), default=Value(0), output_field=IntegerField()),
        ).order_by("-exact", "-frequency", "-prefix", "search_key", "id")
    else:
        rest = rest.order_by("-frequency", "search_key", "id")
    hits += [LabelHit(*row, score=None) for row in rest.values_list(*fields)[: limit - len(hits)]]
    return hits


def annotation_detail(*, project: Project, user, document_id: int) -> dict[str, Any]:
    """The user's own answer for a document, to revise it: the document, the chosen labels and what was done with
    each suggestion shown."""
    annotation = (
        Annotation.objects.filter(document_id=document_id, document__project=project, annotator=user)
        .select_related("document", "model_version")
        .first()
    )
    if annotation is None:
        raise NotFound(f"you have no answer for document {document_id} in this project")
    decisions = dict(SuggestionDecision.objects.filter(annotation=annotation).values_list("label__name", "decision"))
    descriptions = dict(
        Label.objects.filter(project=project, name__in=[s["label"] for s in annotation.suggestions]).values_list(
            "name", "description"
        )
    )
    document = annotation.document
    return {
        "document": {
            "id": document.pk,
            "external_id": document.external_id,
            "text": document.text,
            "metadata": document.metadata,
        },
        "labels": sorted(annotation.labels.values_list("name", flat=True)),
        "suggestions": [
            {
                "label": s["label"],
                "description": descriptions.get(s["label"], ""),
                "score": s["score"],
                "preselected": bool(s.get("preselected", False)),
                "decision": decisions.get(s["label"], SuggestionDecision.Decision.NOT_CHOSEN),
            }
            for s in annotation.suggestions
        ],
        "strategy": annotation.strategy,
        "model_version": annotation.model_version.number if annotation.model_version_id else None,
        "seconds_spent": annotation.seconds_spent,
        "updated_at": annotation.updated_at,
    }


# --- statistics ----------------------------------------------------------------------------------------------------
def job_summary(job: Job | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "mode": job.mode,
        "progress": round(job.progress, 3),
        "message": job.message,
        "error": job.error,
        "reason": job.reason,
        "worker": job.worker,
        "device": job.device,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "heartbeat_at": job.heartbeat_at,
        "finished_at": job.finished_at,
    }


def worker_health(*, details: bool = False) -> dict[str, Any]:
    """Workers seen alive (a heartbeat within 3 periods, not stopped) per queue: {"queues": {"default": {"alive":
    n}, "gpu": {...}}, "workers": [...] (with details)}."""
    from django.conf import settings

    alive_after = timezone.now() - timedelta(seconds=3 * settings.ALABEL_WORKER_HEARTBEAT_SECONDS)
    queues: dict[str, dict[str, int]] = {"default": {"alive": 0}, "gpu": {"alive": 0}}
    workers = []
    for worker in WorkerHeartbeat.objects.filter(stopped_at__isnull=True, seen_at__gte=alive_after):
        for queue in filter(None, worker.queues.split(",")):
            queues.setdefault(queue, {"alive": 0})["alive"] += 1
        workers.append(
            {"hostname": worker.hostname, "queues": worker.queues, "device": worker.device, "seen_at": worker.seen_at}
        )
    result: dict[str, Any] = {"queues": queues}
    if details:
        result["workers"] = workers
    return result


def training_schedules(*, project: Project) -> QuerySet[TrainingSchedule]:
    return TrainingSchedule.objects.filter(project=project).select_related("project", "periodic_task")


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


def project_stats(*, project: Project) -> dict[str, Any]:
    documents = Document.objects.filter(project=project).count()
    answers = Annotation.objects.filter(project=project)
    annotated = answers.values("document_id").distinct().count()
    annotations = answers.count()
    version = serving_version(project=project)
    cutoff = version.data_cutoff if version else None
    latest_jobs = {}
    for kind in Job.Kind.values:
        latest_jobs[kind] = job_summary(Job.objects.filter(project=project, kind=kind).order_by("-id").first())
    queue = QueueItem.objects.filter(project=project, model_version=version)
    return {
        "project": project.pk,
        "name": project.name,
        "budget": budget_overview(project=project),
        "documents": documents,
        "annotated_documents": annotated,
        "annotations": annotations,
        "labels": Label.objects.filter(project=project).count(),
        "new_annotations_since_model": annotations_new_since(project=project, cutoff=cutoff),
        "retrain_every": project.retrain_every,
        "model_version": model_version_summary(version),
        "queue": {"items": queue.count(), "strategy": project.strategy},
        "jobs": latest_jobs,
    }


def recent_jobs(*, project: Project, limit: int = 10) -> QuerySet[Job]:
    return Job.objects.filter(project=project).order_by("-id")[:limit]


# --- export ----------------------------------------------------------------------------------------------------------
def export_rows(*, project: Project, include_unlabelled: bool = False, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """One row per document: id, text, labels (of its latest annotation; None when unlabelled), annotator."""
    docs = Document.objects.filter(project=project).order_by("id")
    if not include_unlabelled:
        docs = docs.filter(Exists(Annotation.objects.filter(document=OuterRef("pk"))))
    ids = list(docs.values_list("id", flat=True))
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        rows = Document.objects.filter(pk__in=part).values("id", "external_id", "text").order_by("id")
        latest: dict[int, Annotation] = {}
        for annotation in (
            Annotation.objects.filter(document_id__in=part).select_related("annotator").order_by("updated_at", "id")
        ):
            latest[annotation.document_id] = annotation
        labels: dict[int, list[str]] = {}
        for annotation_id, name in AnnotationLabel.objects.filter(
            annotation_id__in=[a.pk for a in latest.values()]
        ).values_list("annotation_id", "label__name"):
            labels.setdefault(annotation_id, []).append(name)
        for row in rows:
            annotation = latest.get(row["id"])
            yield {
                "id": row["external_id"],
                "text": row["text"],
                "labels": sorted(labels.get(annotation.pk, [])) if annotation else None,
                "annotator": annotation.annotator.username if annotation else None,
                "annotated_at": annotation.updated_at.isoformat() if annotation else None,
            }


def label_counts(*, project: Project) -> dict[int, int]:
    """Positive count per label id over the project's annotations."""
    return dict(
        AnnotationLabel.objects.filter(label__project=project)
        .values("label_id")
        .annotate(n=Count("id"))
        .values_list("label_id", "n")
    )


def live_lease_filter(now=None) -> Q:
    now = now or timezone.now()
    return Q(leased_to__isnull=False, lease_expires_at__gt=now)


# --- learning curve ------------------------------------------------------------------------------------------------
STOP_AGREEMENT = 0.99  # Bloodgood & Vijay-Shanker (2009): kappa of successive models above this ...
STOP_WINDOW = 3  # ... for this many successive versions


def learning_curve(*, project: Project) -> dict[str, Any]:
    """The measured points (micro-F1 on the evaluation set per model version, with intervals), the stored fit when
    it matches them, and a plain-words stopping advice."""
    from .services.curves import CURVE_METRIC, curve_points, points_fingerprint

    points = curve_points(project=project)
    stored = project.curve_fit or {}
    fit = stored.get("fit") if stored.get("fingerprint") == points_fingerprint(points) else None
    pending = bool(points) and stored.get("fingerprint") != points_fingerprint(points)
    kappas = [
        k
        for k in ModelVersion.objects.filter(project=project).order_by("number").values_list("agreement", flat=True)
        if k is not None
    ]
    return {
        "metric": CURVE_METRIC,
        "points": points,
        "fit": fit,
        "fit_pending": pending,
        "agreements": kappas,
        "advice": _stopping_advice(project, points, fit, kappas),
    }


def _stopping_advice(project: Project, points: list[dict], fit: dict | None, kappas: list[float]) -> dict[str, Any]:
    from .services.curves import CURVE_METRIC

    metric = CURVE_METRIC.replace("_f1", "-F1")
    reasons = []
    recent = kappas[-STOP_WINDOW:]
    stabilised = len(recent) == STOP_WINDOW and all(k > STOP_AGREEMENT for k in recent)
    if stabilised:
        reasons.append(
            f"the last {STOP_WINDOW} models agree on the stop set (Cohen's kappa "
            f"{', '.join(f'{k:.3f}' for k in recent)}, all above {STOP_AGREEMENT}): predictions have stabilised"
        )
    low_gain = fit is not None and fit["per_100"]["value"] < project.stop_min_gain
    if low_gain:
        reasons.append(
            f"the curve forecasts {fit['per_100']['value']:+.4f} {metric} per 100 more labels, below the "
            f"{project.stop_min_gain:.4f} set for this project"
        )
    if reasons:
        text = "Consider stopping: " + "; and ".join(reasons) + "."
    elif not points:
        text = "No model has been measured on the evaluation set yet: label evaluation documents to see the curve."
    elif fit is None:
        text = (
            f"Keep labelling: {len(points)} measured model version(s); a forecast needs three at different label "
            "counts."
        )
    else:
        gain = fit["next_500"]
        text = (
            f"Keep labelling: the next 500 labels are expected to add {gain['value']:+.3f} {metric} "
            f"(95% interval {gain['low']:+.3f} to {gain['high']:+.3f})."
        )
    return {"stop": bool(reasons), "stabilised": stabilised, "low_gain": low_gain, "text": text}


def evaluation_progress(*, project: Project) -> dict[str, int]:
    """Size of the evaluation set and how many of its documents are labelled."""
    members = Document.objects.filter(project=project, is_evaluation=True)
    return {
        "size": members.count(),
        "labelled": members.filter(Exists(Annotation.objects.filter(document=OuterRef("pk")))).count(),
    }


# --- does active learning pay here? --------------------------------------------------------------------------------
NOT_PICKED = ("import", "evaluation", "")  # Annotation.strategy of answers no strategy picked (seeds, blind, unserved)
SAVINGS_JOB_FIELDS = ("id", "status", "progress", "message", "error", "reason", "created_at", "finished_at")


def savings_pick_ids(*, project: Project) -> list[int]:
    """The documents the project's picks labelled, in the order they were first answered: documents outside the
    evaluation set whose first annotation came from the queue (cold-start, a strategy's picks or the random
    fallback), not from an import or an answer to a document never served."""
    first: dict[int, str] = {}
    for document_id, strategy in (
        Annotation.objects.filter(project=project, document__is_evaluation=False)
        .order_by("created_at", "id")
        .values_list("document_id", "strategy")
    ):
        first.setdefault(document_id, strategy)
    return [document_id for document_id, strategy in first.items() if strategy not in NOT_PICKED]


def savings_latest(*, project: Project) -> SavingsEstimate | None:
    """The project's newest savings estimate."""
    return SavingsEstimate.objects.filter(project=project).select_related("model_version").order_by("-id").first()


def savings_overview(*, project: Project) -> dict[str, Any]:
    """The newest estimate (None before the first), the newest estimate job (queued, running or finished) and
    whether the estimate favours a strategy the project does not use yet (`adoptable`)."""
    latest = savings_latest(project=project)
    job = Job.objects.filter(project=project, kind=Job.Kind.ESTIMATE).order_by("-id").first()
    estimate = None
    favoured = None
    if latest is not None:
        favoured = latest.result.get("favoured")
        estimate = {
            "id": latest.pk,
            "created_at": latest.created_at,
            "picks": latest.picks,
            "evaluation_documents": latest.evaluation_documents,
            "model_version": latest.model_version.number if latest.model_version_id else None,
            "job": latest.job_id,
            "result": latest.result,
        }
    summary = job_summary(job)
    return {
        "estimate": estimate,
        # what any member may see of it (no worker host names)
        "job": {key: summary[key] for key in SAVINGS_JOB_FIELDS} if summary is not None else None,
        "active": job is not None and job.status in Job.ACTIVE,
        "strategy": project.strategy,
        "favoured": favoured,
        "adoptable": bool(favoured) and favoured != project.strategy,
    }


# --- model registry ------------------------------------------------------------------------------------------------
def version_get(*, project: Project, number: object) -> ModelVersion:
    if isinstance(number, bool) or not str(number).isdigit():
        raise NotFound(f"no model version {number!r}")
    version = ModelVersion.objects.filter(project=project, number=int(number)).first()
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


# --- label coverage and annotators ----------------------------------------------------------------------------------
FREQUENCY_BUCKETS = [(0, 0), (1, 1), (2, 4), (5, 9), (10, 49), (50, 99), (100, None)]


def _bucket_name(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}-{high}"


def _in_range(queryset: QuerySet, field: str, date_from: date | None, date_to: date | None) -> QuerySet:
    if date_from is not None:
        queryset = queryset.filter(**{f"{field}__date__gte": date_from})
    if date_to is not None:
        queryset = queryset.filter(**{f"{field}__date__lte": date_to})
    return queryset


def label_coverage(
    *,
    project: Project,
    query: str = "",
    max_positives: int | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """Positives per label (answers in the date range, or all of them), how many labels have none or fewer than 5,
    the frequency distribution, and a page of labels matching `query` with at most `max_positives`, rarest first.

    Without a date range the counts are `Label.frequency` (kept current on every answer): one aggregate and one
    sorted page. With one, a single grouped count over the answers in range, and the rest in Python (41,218 labels
    are a few milliseconds of sorting)."""
    limit = max(1, min(int(limit), 500))
    labels = Label.objects.filter(project=project)
    matching = labels
    for word in fold(query or "").split():
        matching = matching.filter(search_key__contains=word)
    if date_from is None and date_to is None:
        buckets = {}
        for index, (low, high) in enumerate(FREQUENCY_BUCKETS):
            condition = Q(frequency__gte=low) if high is None else Q(frequency__gte=low, frequency__lte=high)
            buckets[f"b{index}"] = Count("id", filter=condition)
        counts = labels.aggregate(total=Count("id"), **buckets)
        distribution = [
            {"bucket": _bucket_name(low, high), "labels": counts[f"b{index}"]}
            for index, (low, high) in enumerate(FREQUENCY_BUCKETS)
        ]
        if max_positives is not None:
            matching = matching.filter(frequency__lte=max_positives)
        total = matching.count()
        page = [
            {"id": pk, "name": name, "positives": positives}
            for pk, name, positives in matching.order_by("frequency", "search_key", "id").values_list(
                "id", "name", "frequency"
            )[offset : offset + limit]
        ]
        n_labels = counts["total"]
    else:
        in_range = _in_range(
            AnnotationLabel.objects.filter(annotation__project=project), "annotation__updated_at", date_from, date_to
        )
        positives = dict(in_range.values("label_id").annotate(n=Count("id")).values_list("label_id", "n"))
        n_labels = labels.count()
        distribution = []
        for low, high in FREQUENCY_BUCKETS:
            inside = sum(1 for v in positives.values() if v >= low and (high is None or v <= high))
            distribution.append(
                {"bucket": _bucket_name(low, high), "labels": n_labels - len(positives) if low == 0 else inside}
            )
        ranked = sorted((positives.get(pk, 0), key, pk) for pk, key in matching.values_list("id", "search_key"))
        if max_positives is not None:
            ranked = [row for row in ranked if row[0] <= max_positives]
        total = len(ranked)
        window = ranked[offset : offset + limit]
        names = dict(Label.objects.filter(pk__in=[pk for _, _, pk in window]).values_list("id", "name"))
        page = [{"id": pk, "name": names[pk], "positives": n} for n, _, pk in window]
    return {
        "labels": n_labels,
        "zero": distribution[0]["labels"],
        "under_5": sum(d["labels"] for d in distribution[:3]),
        "distribution": distribution,
        "matching": total,
        "items": page,
    }


def annotator_stats(*, project: Project, date_from: date | None = None, date_to: date | None = None) -> list[dict]:
    """Per annotator over the date range (answers by their last change): documents, documents per hour of labelling
    time, median seconds per document, and the share of the suggestions shown that they accepted. Sums in SQL;
    only the seconds (one number per answer, no join) come back for the medians."""
    answers = _in_range(
        Annotation.objects.filter(project=project).exclude(source=Annotation.Source.IMPORT),
        "updated_at",
        date_from,
        date_to,
    )
    totals = {
        row["annotator_id"]: row
        for row in answers.values("annotator_id").annotate(
            documents=Count("id"),
            shown=Sum("suggestions_shown"),
            accepted=Sum("suggestions_accepted"),
        )
    }
    seconds: dict[int, list[float]] = {}
    for user_id, spent in answers.filter(seconds_spent__isnull=False).values_list("annotator_id", "seconds_spent"):
        seconds.setdefault(user_id, []).append(spent)
    names = dict(get_user_model().objects.filter(pk__in=list(totals)).values_list("id", "username"))
    rows = []
    for user_id in sorted(totals, key=lambda u: names.get(u, "")):
        timed = seconds.get(user_id, [])
        total_seconds = sum(timed)
        shown, accepted = totals[user_id]["shown"] or 0, totals[user_id]["accepted"] or 0
        rows.append(
            {
                "username": names.get(user_id, ""),
                "documents": totals[user_id]["documents"],
                "documents_per_hour": round(len(timed) / (total_seconds / 3600), 1) if total_seconds > 0 else None,
                "median_seconds": round(statistics.median(timed), 1) if timed else None,
                "suggestions_shown": shown,
                "accepted_share": round(accepted / shown, 3) if shown else None,
            }
        )
    return rows
