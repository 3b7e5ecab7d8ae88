"""Label budgets and quotas: the rule that holds them on every write (`room_for_one_more`), thresholds that fire
once, the activity feed, emails to the managers."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction

from ..models import Activity, BudgetAlert, Membership, Project
from ..selectors import Budget, budget_for, member_quota_left, member_spent

logger = logging.getLogger(__name__)


def room_for_one_more(*, project: Project, user, leased: bool, new_document: bool = True) -> tuple[str, str] | None:
    """See `room_and_budget`: the refusal only."""
    return room_and_budget(project=project, user=user, leased=leased, new_document=new_document)[0]


def room_and_budget(
    *, project: Project, user, leased: bool, new_document: bool = True
) -> tuple[tuple[str, str] | None, Budget | None]:
    """(refusal, budget): whether a hard label budget and, under it, the user's quota leave room for one more
    document (None, or the (reason, message) of the refusal, "budget" or "quota"), and the budget as counted under
    the lock (None when no hard budget was counted). With a hard budget or a quota the project row is locked first
    (until the transaction ends), so concurrent requests of the project take turns and never both take the last unit.

    `leased`: documents leased right now count as taken (serving or leasing a new document: every lease can end in
    an answer); otherwise (a first answer to a document) only answered documents count, since the answer's own
    lease is among the leased ones. `new_document`: False when the document is answered already (by someone else),
    so the project's budget does not grow with this answer; the user's quota still does."""
    if project.budget_mode != Project.BudgetMode.HARD:
        return None, None  # a soft budget (and quota) only warns: budget_alerts_check, quota_check
    quota = Membership.objects.filter(project=project, user=user).values_list("quota", flat=True).first()
    if project.label_budget is None and quota is None:
        return None, None
    Project.objects.select_for_update(no_key=True).get(pk=project.pk)  # FOR NO KEY UPDATE: see docs/architecture.md
    budget = None
    if project.label_budget is not None and new_document:
        budget = budget_for(project=project)
        if budget.spent + (budget.in_progress if leased else 0) >= project.label_budget:
            return ("budget", f"the label budget of {project.label_budget} documents is spent"), budget
    if quota is not None:
        if leased:
            left = member_quota_left(project=project, user=user) or 0
        else:
            left = quota - member_spent(project=project, user=user)
        if left <= 0:
            return ("quota", f"you have labelled your quota of {quota} documents here"), budget
    return None, budget


def _mail_managers(project_id: int, subject: str, body: str) -> None:
    """Emails the project's managers that have an address; a mail server that is down is logged, never raised."""
    recipients = list(
        Membership.objects.filter(project_id=project_id, role=Membership.Role.MANAGER)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    if not recipients:
        return
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:  # a notice must never break the request that triggered it
        logger.exception("could not email the managers of project %s", project_id)


def activity_record(
    *, project: Project, kind: str, message: str, data: dict | None = None, mail: bool = False
) -> Activity:
    activity = Activity.objects.create(project=project, kind=kind, message=message[:300], data=data or {})
    if mail:
        subject = f"[alabel] {project.name}: {message}"[:200]
        transaction.on_commit(lambda: _mail_managers(project.pk, subject, message))
    return activity


def budget_alerts_check(*, project: Project) -> list[BudgetAlert]:
    """Fires every threshold of `project.budget_alerts` the spent share has reached and that has not fired yet: a
    notice on the dashboard, a record in the activity feed and an email to the managers, each exactly once (a
    unique constraint settles concurrent answers)."""
    budget = project.label_budget
    if budget is None:
        return []
    spent = budget_for(project=project).spent
    done = set(BudgetAlert.objects.filter(project=project).values_list("percent", flat=True))
    fired = []
    for percent in sorted({int(p) for p in project.budget_alerts or []}):
        if percent in done or spent * 100 < percent * budget:
            continue
        try:
            with transaction.atomic():
                alert = BudgetAlert.objects.create(project=project, percent=percent, spent=spent, budget=budget)
        except IntegrityError:  # another answer fired it first
            continue
        stop = " New documents are no longer served." if percent >= 100 and project.budget_mode == "hard" else ""
        activity_record(
            project=project,
            kind=Activity.Kind.BUDGET,
            message=f"{percent}% of the label budget spent: {spent} of {budget} documents.{stop}",
            data={"percent": percent, "spent": spent, "budget": budget},
            mail=True,
        )
        fired.append(alert)
    return fired


def budget_alerts_reset(*, project: Project) -> int:
    """After the budget changed: thresholds the spent share no longer reaches may fire again."""
    if project.label_budget is None:
        return BudgetAlert.objects.filter(project=project).delete()[0]
    spent = budget_for(project=project).spent
    stale = [
        alert.pk
        for alert in BudgetAlert.objects.filter(project=project)
        if spent * 100 < alert.percent * project.label_budget
    ]
    return BudgetAlert.objects.filter(pk__in=stale).delete()[0]


def quota_check(*, project: Project, user) -> bool:
    """Records (once, when it happens) that the user just reached their quota in the project."""
    quota = Membership.objects.filter(project=project, user=user).values_list("quota", flat=True).first()
    if quota is None or member_spent(project=project, user=user) != quota:
        return False
    activity_record(
        project=project,
        kind=Activity.Kind.QUOTA,
        message=f"{user.get_username()} reached their quota of {quota} documents.",
        data={"username": user.get_username(), "quota": quota},
    )
    return True
