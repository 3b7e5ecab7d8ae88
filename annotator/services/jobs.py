"""Job rows: request (coalesced), dispatch after commit, claim, progress, finish. The database is the truth."""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone

from .. import ml
from ..exceptions import ProjectError
from ..models import Job, Project

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a running job when a manager cancelled it: the job stops at its next progress report."""


TASKS = {  # the Celery task of each job kind, by name: services never import the tasks module (it imports them)
    Job.Kind.ENCODE: "annotator.tasks.encode_documents",
    Job.Kind.TRAIN: "annotator.tasks.train_model",
    Job.Kind.SCORE: "annotator.tasks.score_pool",
    Job.Kind.ADAPT: "annotator.tasks.adapt_encoder",
    Job.Kind.ESTIMATE: "annotator.tasks.estimate_savings",
    Job.Kind.AGREEMENT: "annotator.tasks.compute_agreement",
}
# Errors a job reports as FAILED with its message (bad data, model errors, disk). Anything else is a bug: it
# propagates, and the reconciler marks the job failed when its heartbeat stops.
JOB_ERRORS = (ValueError, RuntimeError, OSError, ProjectError, KeyError)


def job_dispatch(*, job_id: int) -> bool:
    """Sends the job's task to the broker. A broker that is down is logged, not raised: the job stays PENDING
    and the reconciler (celery beat) sends it again, so a web request never fails for it."""
    from celery import current_app
    from kombu.exceptions import OperationalError

    job = Job.objects.only("kind").get(pk=job_id)
    try:
        current_app.send_task(TASKS[job.kind], args=[job_id])
    except (OperationalError, ConnectionError, OSError) as exc:
        logger.warning("could not dispatch %s job %s now (%s); the reconciler will retry", job.kind, job_id, exc)
        return False
    Job.objects.filter(pk=job_id).update(dispatched_at=timezone.now())
    return True


def job_request(
    *,
    project: Project,
    kind: str,
    reason: str = "",
    requested_by=None,
    model_version=None,
    mode: str = "",
    schedule=None,
    retry_of: Job | None = None,
) -> tuple[Job, bool]:
    """Queues a job unless one of the same kind is already queued or running for the project.

    Returns (job, created). Coalescing is enforced by a partial unique constraint, so two concurrent requests
    still yield one job. The task is sent only after the surrounding transaction commits. A request for a full
    retrain while an automatic or incremental run is still only queued upgrades that run to a full one.
    """
    if kind == Job.Kind.TRAIN and not mode:
        mode = project.retrain_mode
    active = Job.objects.filter(project=project, kind=kind, status__in=Job.ACTIVE).first()
    if active is not None:
        if mode == "full" and active.mode != "full":
            Job.objects.filter(pk=active.pk, status=Job.Status.PENDING).update(mode="full")
        return active, False
    try:
        with transaction.atomic():
            job = Job.objects.create(
                project=project,
                kind=kind,
                reason=reason[:100],
                requested_by=requested_by,
                model_version=model_version,
                mode=mode,
                schedule=schedule,
                retry_of=retry_of,
            )
    except IntegrityError:
        return Job.objects.get(project=project, kind=kind, status__in=Job.ACTIVE), False
    transaction.on_commit(lambda: job_dispatch(job_id=job.pk))
    return job, True


def job_cancel(*, job: Job, user=None) -> Job:
    """Cancels a queued job at once; a running one is asked to stop and stops at its next progress report (within
    seconds), leaving nothing behind. Raises ProjectError for a finished job."""
    with transaction.atomic():
        job = Job.objects.select_for_update(no_key=True).get(pk=job.pk)
        if job.status == Job.Status.PENDING:
            job.status = Job.Status.CANCELLED
            job.finished_at = timezone.now()
            job.message = f"cancelled by {user}" if user is not None else "cancelled"
            job.save(update_fields=["status", "finished_at", "message"])
        elif job.status == Job.Status.RUNNING:
            job.cancel_requested = True
            job.message = "cancelling"
            job.save(update_fields=["cancel_requested", "message"])
        else:
            raise ProjectError(f"job {job.pk} has already finished ({job.status.lower()})")
    return job


def job_claim(*, job_id: int) -> Job | None:
    """PENDING -> RUNNING, or takes over a RUNNING job whose heartbeat is stale (its worker died).

    Returns None when the job is finished or is being run by a live worker: a duplicate delivery does nothing.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.ALABEL_JOB_STALE_SECONDS)
    with transaction.atomic():
        job = Job.objects.select_for_update(no_key=True).filter(pk=job_id).first()
        if job is None:
            logger.warning("job %s does not exist", job_id)
            return None
        if job.status == Job.Status.RUNNING and job.heartbeat_at and job.heartbeat_at >= stale_before:
            return None
        if job.status not in Job.ACTIVE:
            return None
        if job.cancel_requested:  # cancelled while its worker died: nothing to take over
            job.status = Job.Status.CANCELLED
            job.finished_at = now
            job.save(update_fields=["status", "finished_at"])
            return None
        job.status = Job.Status.RUNNING
        job.started_at = now
        job.heartbeat_at = now
        job.attempts += 1
        job.worker = socket.gethostname()[:200]
        job.device = ml.device()
        job.error = ""
        job.save(update_fields=["status", "started_at", "heartbeat_at", "attempts", "worker", "device", "error"])
    return job


def job_progress(*, job_id: int, fraction: float, message: str = "") -> bool:
    """Records progress and the heartbeat. Cheap: one UPDATE, no lock. Returns True when the job should stop
    (a manager cancelled it)."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    updated = Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, cancel_requested=False).update(
        progress=fraction, message=message[:300], heartbeat_at=timezone.now()
    )
    return not updated and Job.objects.filter(pk=job_id, cancel_requested=True).exists()


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
    failed = Job.objects.filter(pk=job_id, status__in=Job.ACTIVE).update(
        status=Job.Status.FAILED, error=error[:5000], finished_at=timezone.now()
    )
    if failed:  # once per failure: a job already finished is not failed again
        from .webhooks import webhook_emit

        project_id, kind = Job.objects.filter(pk=job_id).values_list("project_id", "kind").get()
        webhook_emit(
            project=project_id, event="job.failed", payload={"job": job_id, "kind": kind, "error": error[:300]}
        )


def job_mark_cancelled(*, job_id: int) -> None:
    logger.info("job %s cancelled", job_id)
    Job.objects.filter(pk=job_id, status__in=Job.ACTIVE).update(
        status=Job.Status.CANCELLED, message="cancelled", finished_at=timezone.now()
    )


def job_abandon(*, job_id: int, folder: Path | None, error: str | None = None, cancelled: bool = False) -> None:
    """A run that publishes nothing: the folder it wrote is removed; its job FAILED with `error`, or CANCELLED when
    it stopped on a cancel request (`cancelled`, or one found after another delivery took the job over)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    if error is not None:
        job_fail(job_id=job_id, error=error)
    elif cancelled or Job.objects.filter(pk=job_id, cancel_requested=True).exists():
        job_mark_cancelled(job_id=job_id)


def job_retry_depth(job: Job) -> int:
    """How many failed runs precede this one in its retry chain."""
    depth, current = 0, job
    while current.retry_of_id is not None and depth < 100:
        depth += 1
        current = Job.objects.only("retry_of_id").get(pk=current.retry_of_id)
    return depth


class Heartbeat:
    """Throttled progress reporter for long loops: writes at most once per `every` seconds and raises
    JobCancelled when the job was cancelled (so long work stops at its next report)."""

    def __init__(self, job_id: int, *, start: float = 0.0, span: float = 1.0, every: float = 1.0) -> None:
        self.job_id = job_id
        self.start = start
        self.span = span
        self.every = every
        self._last = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if now - self._last < self.every and fraction < 1.0:
            return
        self._last = now
        if job_progress(job_id=self.job_id, fraction=self.start + self.span * fraction, message=message):
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def sub(self, start: float, span: float) -> Heartbeat:
        """A reporter for a part of this one's range (e.g. the training step of a run)."""
        return Heartbeat(self.job_id, start=self.start + self.span * start, span=self.span * span, every=self.every)


class JobLiveness:
    """Context manager run around a job's work: a daemon thread refreshes the job's heartbeat every
    ALABEL_HEARTBEAT_SECONDS, also while the work is inside one long step that reports no progress (a solver
    iteration, a k-means). So a RUNNING job whose heartbeat is older than ALABEL_JOB_STALE_SECONDS has lost its
    worker process (killed, out of memory, machine gone), and the reconciler may fail and retry it."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-{job_id}-heartbeat", daemon=True)

    def _run(self) -> None:
        interval = float(settings.ALABEL_HEARTBEAT_SECONDS)
        try:
            while not self._stop.wait(interval):
                try:
                    Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING).update(heartbeat_at=timezone.now())
                except Exception:  # a database hiccup must not end the thread: the next beat tries again
                    logger.warning("heartbeat of job %s not written", self.job_id, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> JobLiveness:
        # A worker runs jobs outside any transaction. Inside one (a test calling the service in its transaction)
        # the thread's own connection could not see the job row, and on SQLite would wait for the write lock.
        if settings.ALABEL_HEARTBEAT_SECONDS > 0 and not connection.in_atomic_block:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


def job_run_publishing(*, job_id: int, what: str, work: Callable[[Job, Project, Heartbeat], object | None]) -> None:
    """The frame of a job that computes one result and publishes it with its success (the savings estimate, the
    agreement report): claims the job (nothing when another delivery has it), keeps its heartbeat alive while
    `work(job, project, beat)` runs, and abandons it when nothing was published: CANCELLED on a cancel request,
    FAILED with "<what> failed: <error>" on a JOB_ERRORS exception, or left to whoever took it over when `work`
    returned None."""
    job = job_claim(job_id=job_id)
    if job is None:
        return
    try:
        with JobLiveness(job.pk):
            published = work(job, Project.objects.get(pk=job.project_id), Heartbeat(job.pk))
    except JobCancelled:
        job_abandon(job_id=job_id, folder=None, cancelled=True)
        return
    except JOB_ERRORS as exc:
        job_abandon(job_id=job_id, folder=None, error=f"{what} failed: {exc}")
        return
    if published is None:  # another delivery took the job over, or it was cancelled
        job_abandon(job_id=job_id, folder=None)
