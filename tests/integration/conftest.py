"""A real Celery worker process on a real Redis broker, against the test database.

The broker is CELERY_BROKER_URL when set (CI: the machine's Redis), otherwise the embedded redis-server.
The database is the test database pytest-django created (PostgreSQL when DATABASE_URL is set): the worker gets
its URL, so tests using it must use `transactional_db` (the worker only sees committed rows).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from webapp import embedded_redis
from webapp.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
WORKER_COMMAND = [
    sys.executable,
    "-m",
    "celery",
    "-A",
    "webapp",
    "worker",
    "-Q",
    "default,gpu",
    "-c",
    "2",
    "-l",
    "INFO",
]
WORKER_COMMAND += ["--without-gossip", "--without-mingle"]


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.25) -> object:
    """Polls until `predicate()` is truthy; fails the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """The broker this process already publishes to (settings.CELERY_BROKER_URL). Without CELERY_BROKER_URL that
    is the embedded Redis socket in the data folder, which is started here for the session."""
    from django.conf import settings

    if os.environ.get("CELERY_BROKER_URL"):
        yield settings.CELERY_BROKER_URL
        return
    process = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
    try:
        yield settings.CELERY_BROKER_URL
    finally:
        process.terminate()
        process.wait(timeout=10)


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        auth = quote(db["USER"] or "")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"])
        return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
    raise RuntimeError(f"unsupported database {connection.vendor}")


@pytest.fixture
def celery_worker(transactional_db, broker_url, settings, tmp_path) -> Iterator[subprocess.Popen]:
    """Starts `celery worker` (queues default and gpu) in a subprocess on the broker this process publishes to.
    Yields the process; stops it afterwards and prints the end of its log."""
    with celery_app.connection_for_write() as conn:
        for queue in ("default", "gpu"):
            conn.default_channel.queue_purge(queue)  # messages left by earlier runs on a shared broker
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker_url,
        "ALABEL_ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR),
        "ALABEL_ENCODER_PATH": settings.ALABEL_ENCODER_PATH,
        "PYTHONUNBUFFERED": "1",
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*WORKER_COMMAND, "-n", f"test-{os.getpid()}@%h"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: process.poll() is not None or celery_app.control.ping(timeout=0.5),
            timeout=60,
            what="the worker to answer a ping",
        )
        if process.poll() is not None:
            pytest.fail(f"the worker exited at start:\n{log_path.read_text()[-3000:]}")
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        print(f"--- worker log (last 4000 chars) ---\n{log_path.read_text(errors='replace')[-4000:]}")
