"""Reads about jobs and workers: job summaries, worker health from heartbeats, recent jobs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from ..models import (
    Job,
    Project,
    WorkerHeartbeat,
)


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


def recent_jobs(*, project: Project, limit: int = 10) -> QuerySet[Job]:
    return Job.objects.filter(project=project).order_by("-id")[:limit]
