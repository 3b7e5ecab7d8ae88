"""Reads about label budgets and quotas: what is spent, what is left, the burn rate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Exists, Min, OuterRef
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


def members_spent(*, project: Project, user_ids: list[int]) -> dict[int, int]:
    """`member_spent` of each of these users in one aggregate query: {user id: documents}; absent means 0."""
    rows = (
        Annotation.objects.filter(project=project, annotator_id__in=user_ids)
        .exclude(source=Annotation.Source.IMPORT)
        .values("annotator_id")
        .annotate(spent=Count("id"))
        .values_list("annotator_id", "spent")
    )
    return dict(rows)


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


BURN_WINDOW = timedelta(days=7)  # the burn rate looks at most this far back ...
BURN_MIN_PERIOD = timedelta(hours=1)  # ... and divides by at least this much


def _burn_period(first_answer, now) -> tuple[Any, timedelta, str]:
    """(counted since, divided by, in words): the last BURN_WINDOW, or for a younger project its active period
    (from its first expert answer to now), but never less than BURN_MIN_PERIOD: a young project averaged over a
    week would look seven times slower than it is, and a rate over its first minutes says nothing a day long."""
    if first_answer is None or now - first_answer >= BURN_WINDOW:
        return now - BURN_WINDOW, BURN_WINDOW, "the last 7 days"
    active = now - first_answer
    if active < BURN_MIN_PERIOD:
        minutes = max(1, round(active.total_seconds() / 60))
        words = f"{minutes} minute{'s' if minutes != 1 else ''}"
        return first_answer, BURN_MIN_PERIOD, f"the {words} since the first answer, counted as an hour"
    hours = active.total_seconds() / 3600
    words = f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.1f} days"
    return first_answer, active, f"the {words} since the first answer"


def budget_overview(*, project: Project, days: int = 30) -> dict[str, Any]:
    """Spent, remaining, burn rate (documents per day over the last 7 days, or over the project's active period when
    it is younger: `_burn_period`), projected exhaustion date, cost, documents per day for the last `days` days, the
    thresholds that fired and the quotas."""
    budget = budget_for(project=project)
    now = timezone.now()
    today = timezone.localdate(now)
    per_day = _labelled_per_day(project, now - timedelta(days=max(days, 7)))
    experts = Annotation.objects.filter(project=project).exclude(source=Annotation.Source.IMPORT)
    first_answer = experts.aggregate(first=Min("created_at"))["first"]
    since, period, period_text = _burn_period(first_answer, now)
    in_period = experts.filter(created_at__gte=since).values("document_id").distinct().count()
    burn = in_period / (period / timedelta(days=1))
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
    answers = experts.count()
    return {
        "label_budget": budget.budget,
        "mode": project.budget_mode,
        "spent": budget.spent,
        # Answers, apart from documents: with overlap a document gets several answers, each an expert's time; the
        # budget counts documents, a quota counts its member's answers.
        "answers": answers,
        "further_answers": max(answers - budget.spent, 0),
        "remaining": budget.remaining,
        "in_progress": budget.in_progress,
        "exhausted": budget.exhausted,
        "percent_spent": round(100.0 * budget.spent / budget.budget, 1) if budget.budget else None,
        "burn_rate_per_day": round(burn, 2),
        "burn_period": period_text,
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


def evaluation_budget_check(*, project: Project, evaluation: dict[str, int]) -> dict[str, Any] | None:
    """Whether the label budget can finish the evaluation set at the current `eval_share` (`evaluation`: its
    `size` and `labelled`, selectors.evaluation_progress). services.evaluation.evaluation_turn serves an evaluation
    document whenever fewer than `eval_share` of the labelled documents are evaluation documents, so by the time
    the budget is spent about floor(eval_share * budget) of them are labelled (or the ones already labelled, when
    more). None when there is no budget, no evaluation set, or it can be finished; else the numbers and a warning
    naming what would fix it."""
    budget, share = project.label_budget, project.eval_share
    size, labelled = evaluation["size"], evaluation["labelled"]
    if budget is None or size == 0 or labelled >= size:
        return None
    reachable = max(labelled, math.floor(share * budget + 1e-9))
    if reachable >= size:
        return None
    share_needed = math.ceil(100 * size / budget) / 100 if size <= budget else None
    budget_needed = math.ceil(size / share - 1e-9) if share > 0 else None
    fixes = []
    if share_needed is not None:
        fixes.append(f"raise the evaluation share to {share_needed:.0%}")
    if budget_needed is not None:
        fixes.append(f"raise the budget to {budget_needed:,} documents")
    fixes.append(f"make the evaluation set {reachable} documents")
    text = (
        f"The budget of {budget:,} documents cannot finish the evaluation set: with {share:.0%} of the documents "
        f"served coming from it, about {reachable} of its {size} documents get labelled before the budget is spent. "
        f"To finish it, {', or '.join(fixes)}."
    )
    return {
        "budget": budget,
        "share": share,
        "size": size,
        "labelled": labelled,
        "reachable": reachable,
        "share_needed": share_needed,
        "budget_needed": budget_needed,
        "text": text,
    }
