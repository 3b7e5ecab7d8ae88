"""Label budgets and quotas: the rule that holds them on every write (`budget_check`), thresholds that fire
once, the activity feed, emails to the managers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction

from ..models import Activity, BudgetAlert, Membership, Project
from ..selectors import Budget, budget_for, member_spent, member_taken

logger = logging.getLogger(__name__)


# The budget lock's first key (pg_advisory_xact_lock(space, project id)): "alb" in ASCII, away from other users' keys.
BUDGET_LOCK_SPACE = 0x616C62


def budget_lock(*, project: Project) -> tuple[int | None, str]:
    """Takes the project's budget lock until the transaction ends and returns (label_budget, budget_mode) as read
    under it. PostgreSQL: a transaction-level advisory lock, which only budget checks take: it never waits behind
    the project row (publishing, queue swaps) nor makes them wait. SQLite runs one writer at a time, and a budget
    check always follows its transaction's write, so the count is the writer's alone."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [BUDGET_LOCK_SPACE, project.pk])
    else:
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).exists()
    return Project.objects.filter(pk=project.pk).values_list("label_budget", "budget_mode").get()


def budget_applies(*, project: Project, user) -> bool:
    """Whether a hard label budget or, under a hard budget mode, the user's quota limits what they may take: then
    their writes need `budget_check` (a soft budget and quota only warn)."""
    if project.budget_mode != Project.BudgetMode.HARD:
        return False
    if project.label_budget is not None:
        return True
    return Membership.objects.filter(project=project, user=user, quota__isnull=False).exists()


def budget_check(
    *, project: Project, user, leased: bool, new_document: bool = True, wrote: bool = True
) -> tuple[tuple[str, str] | None, Budget | None]:
    """Whether the write this transaction just made (a lease or a first answer) keeps the hard label budget and the
    user's quota: (refusal, budget), the refusal None or the (reason, message) to answer ("budget" or "quota"), the
    budget as counted (None when no hard budget was counted). The caller must roll its write back on a refusal.

    Called last, just before the commit: it takes the project's budget lock (`budget_lock`), so that concurrent
    writers count one after the other, each seeing the committed writes of those before it, and never both take
    the last unit; the lock is held only while counting and committing, never while a writer chooses or writes.

    `leased`: leased documents count as taken (serving or leasing a new document: every lease can end in an
    answer); otherwise (a first answer) only answered documents count. `new_document`: False when the document was
    answered already (by someone else): the project's budget did not grow with this answer; the user's quota did.
    `wrote`: False when the transaction found nothing to write: then the check says whether one more would fit."""
    if project.budget_mode != Project.BudgetMode.HARD:
        return None, None  # a soft budget (and quota) only warns: budget_alerts_check, quota_check
    quota = Membership.objects.filter(project=project, user=user).values_list("quota", flat=True).first()
    if project.label_budget is None and quota is None:
        return None, None
    label_budget, mode = budget_lock(project=project)
    if mode != Project.BudgetMode.HARD:
        return None, None
    one_more = 0 if wrote else 1
    budget = None
    if label_budget is not None and new_document:
        budget = replace(budget_for(project=project), budget=label_budget)
        if budget.spent + (budget.in_progress if leased else 0) + one_more > label_budget:
            return ("budget", f"the label budget of {label_budget} documents is spent"), budget
    if quota is not None:
        taken = member_taken(project=project, user=user) if leased else member_spent(project=project, user=user)
        if taken + one_more > quota:
            return ("quota", f"you have labelled your quota of {quota} documents here"), budget
    return None, budget


@dataclass
class BudgetVerdict:
    """What `lease_within_budget` decided, read after its block: `refusal` (None, or the (reason, message) of
    `budget_check`) and the budget as counted (None when none was). The block sets `wrote` to False when it found
    nothing to lease (the check then says whether one more would fit)."""

    wrote: bool = True
    refusal: tuple[str, str] | None = None
    budget: Budget | None = None


class _Refused(Exception):
    """Rolls a lease back to its savepoint when the budget check after it refuses."""


@contextmanager
def lease_within_budget(*, project: Project, user) -> Iterator[BudgetVerdict]:
    """Keeps the lease the block writes only if a hard budget (spent plus leased) and the user's quota still hold
    with it: the block runs in a savepoint, then `budget_check` (the budget lock, held until the commit); on a
    refusal the savepoint is rolled back and the verdict says why. Without a hard budget or quota: neither."""
    verdict = BudgetVerdict()
    if not budget_applies(project=project, user=user):
        yield verdict
        return
    try:
        with transaction.atomic():
            yield verdict
            verdict.refusal, verdict.budget = budget_check(project=project, user=user, leased=True, wrote=verdict.wrote)
            if verdict.refusal is not None:
                raise _Refused
    except _Refused:
        pass


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


def activity_record_by(*, project: Project, kind: str, user, message: str, data: dict | None = None) -> Activity:
    """A line in the activity feed naming who did it ("... by <username>", and `by` in its data)."""
    by = getattr(user, "username", "") or ""
    return activity_record(
        project=project, kind=kind, message=message + (f" by {by}" if by else ""), data={**(data or {}), "by": by}
    )


def budget_alerts_check(*, project: Project, spent: int | None = None) -> list[BudgetAlert]:
    """Fires every threshold of `project.budget_alerts` the spent share has reached and that has not fired yet: a
    notice on the dashboard, a record in the activity feed and an email to the managers, each exactly once (a
    unique constraint settles concurrent answers). `spent`: the count, when the caller has just made it."""
    budget = project.label_budget
    if budget is None:
        return []
    if spent is None:
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
        from .webhooks import webhook_emit

        webhook_emit(
            project=project, event="budget.threshold", payload={"percent": percent, "spent": spent, "budget": budget}
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
