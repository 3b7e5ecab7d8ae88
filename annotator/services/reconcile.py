"""The reconciler (celery beat, every ALABEL_RECONCILE_SECONDS): stale jobs failed and retried, lost dispatches sent
again, due training requested, orphaned model folders swept."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from ..models import Job, Project
from .jobs import job_dispatch, job_fail, job_mark_cancelled, job_request, job_retry_depth
from .registry import artifacts_sweep
from .training import training_maybe_request
from .webhooks import webhooks_redispatch

logger = logging.getLogger(__name__)


def jobs_reconcile() -> dict[str, int]:
    """Run by celery beat every ALABEL_RECONCILE_SECONDS: the safety net that makes the loop survive lost messages
    and dead workers.

    - RUNNING jobs whose heartbeat stopped (their worker process died: SIGKILL, out of memory, host lost) are
      marked FAILED with the reason and retried as a new job (`retry_of`), at most ALABEL_JOB_MAX_RETRIES times in
      a row; a cancelled one is marked CANCELLED;
    - PENDING jobs never sent (broker was down) or sent long ago without starting are sent again (a duplicate
      delivery is harmless: only one claims the job);
    - projects due for training without a queued run get one;
    - model folders no version refers to (left by a killed run) are removed after an hour;
    - webhook deliveries whose message was never sent (broker down) or lost are sent again.
    """
    now = timezone.now()
    counts = {
        "failed_stale": 0,
        "retried": 0,
        "redispatched": 0,
        "training_requested": 0,
        "orphans_removed": 0,
        "webhooks_redispatched": 0,
    }
    stale = now - timedelta(seconds=settings.ALABEL_JOB_STALE_SECONDS)
    for job in Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=stale).select_related("project"):
        if job.cancel_requested:
            job_mark_cancelled(job_id=job.pk)
            continue
        job_fail(
            job_id=job.pk,
            error=f"worker lost: {job.worker or 'its worker'} stopped reporting for more than "
            f"{settings.ALABEL_JOB_STALE_SECONDS} s (process killed, out of memory or host down)",
        )
        counts["failed_stale"] += 1
        if job_retry_depth(job) < settings.ALABEL_JOB_MAX_RETRIES:
            _, created = job_request(
                project=job.project,
                kind=job.kind,
                reason=f"retry of job {job.pk} (worker lost)",
                model_version=job.model_version,
                mode=job.mode,
                schedule=job.schedule,
                retry_of=job,
            )
            counts["retried"] += int(created)
    resend_before = now - timedelta(seconds=max(settings.ALABEL_JOB_STALE_SECONDS, 60))
    for job in Job.objects.filter(status=Job.Status.PENDING).exclude(dispatched_at__gte=resend_before):
        if job.dispatched_at is None and job.created_at > now - timedelta(seconds=10):
            continue  # just created: its on-commit dispatch is under way
        if job_dispatch(job_id=job.pk):
            counts["redispatched"] += 1
    for project in Project.objects.all():
        if training_maybe_request(project=project) is not None:
            counts["training_requested"] += 1
    counts["orphans_removed"] = artifacts_sweep()
    counts["webhooks_redispatched"] = webhooks_redispatch()
    if connection.vendor == "sqlite":  # SQLite keeps no planner statistics unless asked to
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA optimize")
    if any(counts.values()):
        logger.info("reconcile: %s", counts)
    return counts
