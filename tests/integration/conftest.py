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

from annotator.management import embedded_redis
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


def purge_queues() -> None:
    """Drops messages left on the broker this process publishes to (earlier runs on a shared broker)."""
    with celery_app.connection_for_write() as conn:
        for queue in ("default", "gpu"):
            conn.default_channel.queue_purge(queue)


def service_env(broker_url: str, settings, **extra: str) -> dict[str, str]:
    """The environment of a worker or beat process: this test's database, broker and artifacts folder."""
    return {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker_url,
        "ALABEL_ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR),
        "ALABEL_ENCODER_PATH": settings.ALABEL_ENCODER_PATH,
        "ALABEL_HEARTBEAT_SECONDS": "1",
        "ALABEL_WORKER_HEARTBEAT_SECONDS": "1",
        # No automatic encoder adaptation (minutes of MiniLM fine-tuning on the worker) in the middle of other
        # tests; tests/annotator/test_adaptation.py covers when it is due.
        "ALABEL_ADAPT_AUTO_DOCUMENTS": "1000000",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class Service:
    """A Celery worker or beat subprocess (own session, so SIGKILL of the group kills its pool children too)."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def kill(self) -> None:
        """SIGKILL to the whole process group: no cleanup, no acks, no goodbye (a crashed host)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        print(f"--- {self.log_path.name} (last 4000 chars) ---\n{self.log()}")


def start_worker(env: dict[str, str], log_path: Path, *, name: str = "test") -> Service:
    """Starts `celery worker` (queues default and gpu) and waits until it answers a ping on its broker."""
    service = Service([*WORKER_COMMAND, "-n", f"{name}-{os.getpid()}@%h"], env, log_path)
    app = celery_app
    if env["CELERY_BROKER_URL"] != celery_app.conf.broker_url:
        from celery import Celery

        app = Celery("probe", broker=env["CELERY_BROKER_URL"])
    try:
        wait_for(
            lambda: service.poll() is not None or app.control.ping(timeout=0.5),
            timeout=60,
            what="the worker to answer a ping",
        )
        if service.poll() is not None:
            pytest.fail(f"the worker exited at start:\n{service.log()}")
    except BaseException:
        service.stop()  # never leave a worker behind (it would hold the test database)
        raise
    return service


def start_beat(env: dict[str, str], log_path: Path, schedule_dir: Path) -> Service:
    """Starts `celery beat` with the database scheduler (django-celery-beat), as docker-compose runs it."""
    command = [sys.executable, "-m", "celery", "-A", "webapp", "beat", "-l", "INFO"]
    command += ["-s", str(schedule_dir / "celerybeat-schedule"), "--max-interval", "1"]
    service = Service(command, env, log_path)
    try:
        wait_for(
            lambda: service.poll() is not None or "beat: Starting" in service.log(100_000),
            timeout=60,
            what="beat to start",
        )
        if service.poll() is not None:
            pytest.fail(f"beat exited at start:\n{service.log()}")
    except BaseException:
        service.stop()
        raise
    return service


@pytest.fixture
def celery_worker(transactional_db, broker_url, settings, tmp_path) -> Iterator[Service]:
    """Starts `celery worker` (queues default and gpu) in a subprocess on the broker this process publishes to.
    Yields it; stops it afterwards and prints the end of its log."""
    purge_queues()
    service = start_worker(service_env(broker_url, settings), tmp_path / "worker.log")
    try:
        yield service
    finally:
        service.stop()
