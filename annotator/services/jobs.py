"""Job rows: request (coalesced), dispatch after commit, claim, progress, finish. The database is the truth."""

from __future__ import annotations

import logging
import socket
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import Job, Project

logger = logging.getLogger(__name__)


def _task_for(kind: str):
    from .. import tasks

    return {
        Job.Kind.ENCODE: tasks.encode_documents,
        Job.Kind.TRAIN: tasks.train_model,
        Job.Kind.SCORE: tasks.score_pool,
    }[kind]


def job_dispatch(*, job_id: int) -> bool:
    """Sends the job's task to the broker. A broker that is down is logged, not raised: the job stays PENDING
    and the reconciler (celery beat) sends it again, so a web request never fails for it."""
    from kombu.exceptions import OperationalError

    job = Job.objects.only("kind").get(pk=job_id)
    try:
        _task_for(job.kind).delay(job_id)
    except (OperationalError, ConnectionError, OSError) as exc:
        logger.warning("could not dispatch %s job %s now (%s); the reconciler will retry", job.kind, job_id, exc)
        return False
    Job.objects.filter(pk=job_id).update(dispatched_at=timezone.now())
    return True


def job_request(
    *, project: Project, kind: str, reason: str = "", requested_by=None, model_version=None
) -> tuple[Job, bool]:
    """Queues a job unless one of the same kind is already queued or running for the project.

    Returns (job, created). Coalescing is enforced by a partial unique constraint, so two concurrent requests
    still yield one job. The task is sent only after the surrounding transaction commits.
    """
    active = Job.objects.filter(project=project, kind=kind, status__in=Job.ACTIVE).first()
    if active is not None:
        return active, False
    try:
        with transaction.atomic():
            job = Job.objects.create(
                project=project,
                kind=kind,
                reason=reason[:100],
                requested_by=requested_by,
                model_version=model_version,
            )
    except IntegrityError:
        return Job.objects.get(project=project, kind=kind, status__in=Job.ACTIVE), False
    transaction.on_commit(lambda: job_dispatch(job_id=job.pk))
    return job, True


def job_claim(*, job_id: int) -> Job | None:
    """PENDING -> RUNNING, or takes over a RUNNING job whose heartbeat is stale (its worker died).

    Returns None when the job is finished or is being run by a live worker: a duplicate delivery does nothing.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.ALABEL_JOB_STALE_SECONDS)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            logger.warning("job %s does not exist", job_id)
            return None
        if job.status == Job.Status.RUNNING and job.heartbeat_at and job.heartbeat_at >= stale_before:
            return None
        if job.status not in Job.ACTIVE:
            return None
        job.status = Job.Status.RUNNING
        job.started_at = now
        job.heartbeat_at = now
        job.attempts += 1
        job.worker = socket.gethostname()[:200]
        job.error = ""
        job.save(update_fields=["status", "started_at", "heartbeat_at", "attempts", "worker", "error"])
    return job


def job_progress(*, job_id: int, fraction: float, message: str = "") -> None:
    """Records progress and the heartbeat. Cheap: one UPDATE, no lock."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
        progress=fraction, message=message[:300], heartbeat_at=timezone.now()
    )


def job_succeed(*, job: Job, message: str = "", model_version=None) -> None:
    job.status = Job.Status.SUCCEEDED
    job.progress = 1.0
    job.message = message[:300]
    job.finished_at = timezone.now()
    fields = ["status", "progress", "message", "finished_at"]
    if model_version is not None:
        job.model_version = model_version
        fields.append("model_version")
    job.save(update_fields=fields)


def job_fail(*, job_id: int, error: str) -> None:
    logger.error("job %s failed: %s", job_id, error)
    Job.objects.filter(pk=job_id, status__in=Job.ACTIVE).update(
        status=Job.Status.FAILED, error=error[:5000], finished_at=timezone.now()
    )


class Heartbeat:
    """Throttled progress reporter for long loops: writes at most once per `every` seconds."""

    def __init__(self, job_id: int, *, start: float = 0.0, span: float = 1.0, every: float = 1.0) -> None:
        self.job_id = job_id
        self.start = start
        self.span = span
        self.every = every
        self._last = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        import time

        now = time.monotonic()
        if now - self._last < self.every and fraction < 1.0:
            return
        self._last = now
        job_progress(job_id=self.job_id, fraction=self.start + self.span * fraction, message=message)
