"""The Celery app. Workers: `celery -A webapp worker -Q default` and `-Q gpu -c 1` (training and encoding).

Every worker records itself in the database (annotator.services.workers) when it is ready and then every
ALABEL_WORKER_HEARTBEAT_SECONDS from a thread of its main process: /healthz and the manager's page show which
workers are alive, on which queues and devices, without asking them over the broker.
"""

from __future__ import annotations

import logging
import os
import threading

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("webapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)
_heartbeat_stop = threading.Event()


@worker_ready.connect
def _worker_ready(sender=None, **_kwargs) -> None:
    from django.conf import settings
    from django.db import close_old_connections, connection

    hostname = getattr(sender, "hostname", "") or "worker"
    try:
        queues = ",".join(sorted(q.name for q in sender.task_consumer.queues))
    except AttributeError:
        queues = ""
    from annotator.services.workers import worker_device, worker_heartbeat

    device = worker_device()
    interval = float(settings.ALABEL_WORKER_HEARTBEAT_SECONDS)

    def run() -> None:
        first = True
        while True:
            try:
                worker_heartbeat(hostname=hostname, queues=queues, device=device, started=first)
                first = False
            except Exception:  # the database may be away for a moment: try again next period
                logger.warning("worker heartbeat not written", exc_info=True)
                close_old_connections()
            if _heartbeat_stop.wait(interval):
                break
        connection.close()

    threading.Thread(target=run, name="worker-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _worker_shutdown(sender=None, **_kwargs) -> None:
    _heartbeat_stop.set()
    hostname = getattr(sender, "hostname", "")
    if not hostname:
        return
    try:
        from annotator.services.workers import worker_stopped

        worker_stopped(hostname=hostname)
    except Exception:  # shutting down: never block it
        logger.warning("worker stop not recorded", exc_info=True)
