"""Reads about label budgets and quotas: what is spent, what is left, the burn rate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Exists, OuterRef
from django.db.models.functions import TruncDate
from django.utils import timezone

from ..models import (
    Annotation,
    BudgetAlert,
    Membership,
    Project,
    QueueItem,
)
from .queue import live_lease_filter


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
        QueueItem.objects.filter(live_lease_filter(), project=project)
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("document"))))
        .values("document")
        .distinct()
        .count()
    )
    return Budget(budget=project.label_budget, spent=spent, in_progress=in_progress)


def member_spent(*, project: Project, user) -> int:
    """Documents the user labelled in the project (their seed imports excluded): what their quota counts."""
    return Annotation.objects.filter(project=project, annotator=user).exclude(source=Annotation.Source.IMPORT).count()


def member_taken(*, project: Project, user) -> int:
    """Documents the user labelled in the project plus those they hold a live lease on (unlabelled): what their
    quota counts when serving."""
    held = (
        QueueItem.objects.filter(live_lease_filter(), project=project, leased_to=user)
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("document"))))
        .count()
    )
    return member_spent(project=project, user=user) + held


def member_quota_left(*, project: Project, user) -> int | None:
    """Documents the user may still label under their quota (leases they hold included); None without a quota."""
    quota = Membership.objects.filter(project=project, user=user).values_list("quota", flat=True).first()
    if quota is None:
        return None
    return max(quota - member_taken(project=project, user=user), 0)


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
