"""Celery workers' signs of life: each worker records itself when ready, then every few seconds, and when it stops
(webapp.celery calls these from the worker's signals). /healthz and the manager's page read them."""

from __future__ import annotations

import os

from django.utils import timezone

from .. import ml
from ..models import WorkerHeartbeat


def worker_device() -> str:
    """The device this worker process trains and encodes on ("cuda", "cpu"), as its heartbeat reports it."""
    return ml.device()


def worker_heartbeat(*, hostname: str, queues: str, device: str, started: bool = False) -> None:
    """Records that the worker `hostname` (serving `queues`, on `device`) is alive now; `started`: it just started."""
    now = timezone.now()
    defaults = {"queues": queues[:200], "device": device, "pid": os.getpid(), "seen_at": now, "stopped_at": None}
    if started:
        defaults["started_at"] = now
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname[:200], defaults=defaults, create_defaults={**defaults, "started_at": now}
    )


def worker_stopped(*, hostname: str) -> None:
    """Records that the worker `hostname` stopped cleanly."""
    WorkerHeartbeat.objects.filter(hostname=hostname).update(stopped_at=timezone.now())
