"""Inter-annotator agreement: an AGREEMENT job (default queue) computes it from the answers of the documents with
two or more answers and the gold answers (learner.agreement through ml.agreement_compute) and stores an
AgreementReport, with label names and usernames, in one transaction with the job's success.

Jobs are queued on demand (managers and reviewers) and after answers (`agreement_maybe_request`, called by the
answer services): when the answers or gold answers changed since the newest report, at most once per
AGREEMENT_EVERY_SECONDS so that a busy project does not fill the job list; in between the report is shown as stale.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .. import ml
from ..exceptions import ProjectError
from ..models import AgreementReport, Job, Project
from ..selectors import AgreementData, agreement_counts, agreement_data, agreement_fingerprint
from .jobs import Heartbeat, job_request, job_run_publishing, job_succeed

AGREEMENT_BOOTSTRAP = 1000
AGREEMENT_EVERY_SECONDS = 300  # automatic requests: at most one per this many seconds
AGREEMENT_KEEP = 20  # reports kept per project (each holds every label row: up to about a megabyte at 40k labels)


def agreement_request(*, project: Project, requested_by=None) -> Job:
    """ "Compute agreement": queues a computation (or returns the one queued or running). Raises ProjectError when
    no document has two answers or a gold answer yet."""
    counts = agreement_counts(project=project)
    if not counts["documents"] and not counts["gold_documents"]:
        raise ProjectError(
            "no document has two or more answers or a gold answer yet: set an overlap share in the project "
            "settings so that some documents are answered by several experts"
        )
    job, _ = job_request(project=project, kind=Job.Kind.AGREEMENT, reason="requested", requested_by=requested_by)
    return job


def agreement_maybe_request(*, project: Project) -> Job | None:
    """After an answer or a gold answer: queues a computation when the answers it reads changed since the newest
    report, unless an automatic or requested one was queued less than AGREEMENT_EVERY_SECONDS ago. Cheap: one
    indexed query on the newest job, then (outside that window) the two aggregates of the fingerprint and the
    newest report. Returns the new job, or None."""
    newest_job = (
        Job.objects.filter(project=project, kind=Job.Kind.AGREEMENT)
        .only("created_at", "status")
        .order_by("-id")
        .first()
    )
    if newest_job is not None and (
        newest_job.status in Job.ACTIVE
        or newest_job.created_at > timezone.now() - timedelta(seconds=AGREEMENT_EVERY_SECONDS)
    ):
        return None
    fingerprint = agreement_fingerprint(project=project)
    if not fingerprint:
        return None
    latest = AgreementReport.objects.filter(project=project).only("fingerprint").order_by("-id").first()
    if latest is not None and latest.fingerprint == fingerprint:
        return None
    job, created = job_request(project=project, kind=Job.Kind.AGREEMENT, reason="the answers changed")
    return job if created else None


def agreement_run(*, job_id: int) -> None:
    """Computes the agreement of the project's answers and stores the report with the job's success. A cancelled
    or failed run stores nothing."""

    def work(job: Job, project: Project, beat: Heartbeat) -> AgreementReport | None:
        beat(0.0, "loading the answers")
        data = agreement_data(project=project)
        beat(0.2, f"computing agreement on {len(data.units)} documents")
        result = ml.agreement_compute(
            units=data.units,
            gold=data.gold,
            label_ids=data.label_ids,
            names=data.names,
            n_boot=AGREEMENT_BOOTSTRAP,
            seed=project.pk,
        )
        beat(0.95, "saving the report")
        return _publish(job_id=job.pk, attempt=job.attempts, project=project, result=result, data=data)

    job_run_publishing(job_id=job_id, what="agreement", work=work)


def _publish(
    *, job_id: int, attempt: int, project: Project, result: dict, data: AgreementData
) -> AgreementReport | None:
    """One transaction: the report is stored (the reports beyond the newest AGREEMENT_KEEP dropped) and the job
    SUCCEEDED, or nothing changes."""
    with transaction.atomic():
        job = Job.objects.select_for_update(no_key=True).get(pk=job_id)
        if job.status != Job.Status.RUNNING or job.attempts != attempt:
            return None
        report = AgreementReport.objects.create(
            project=project,
            job=job,
            documents=int(result["units"]),
            answers=int(result["answers"]),
            fingerprint=data.fingerprint,
            result=result,
        )
        kept = AgreementReport.objects.filter(project=project).order_by("-id").values_list("id", flat=True)
        AgreementReport.objects.filter(pk__in=list(kept[AGREEMENT_KEEP:])).delete()  # the newest ones stay
        alpha = result["overall"]["alpha_masi"]["value"]
        headline = f"alpha (MASI) {alpha:.2f}" if alpha is not None else "alpha (MASI) undefined"
        job_succeed(job=job, message=f"{headline} on {result['units']} documents ({result['seconds']:.1f} s)")
    return report
