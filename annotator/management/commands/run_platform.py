"""`make run`: migrate, start the broker (embedded unless CELERY_BROKER_URL is set), the workers, beat and the web
server, create the demo project on first start, restart a process that dies (with back-off, and says so), and stop
every process on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Children get SIGTERM if the launcher itself is killed, so no orphan keeps running."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


RESTART_FIRST_DELAY = 1.0  # seconds before restarting a process that died; doubled after each quick death ...
RESTART_MAX_DELAY = 60.0  # ... up to this
RESTART_STABLE_SECONDS = 60.0  # a process that ran this long before dying starts again after the first delay


@dataclass
class Child:
    """One process of the platform and how to start it again."""

    name: str
    start: Callable[[], subprocess.Popen]
    process: subprocess.Popen
    started_at: float
    delay: float = RESTART_FIRST_DELAY  # the wait before the next restart
    restart_at: float | None = None  # when it died: the time of its restart
    restarts: int = 0


class Command(BaseCommand):
    help = "Starts the whole platform on this machine (web, workers, beat, embedded broker)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-demo", action="store_true", help="Do not create the demo project.")

    def handle(self, *args: object, **options) -> None:
        self.children: list[Child] = []
        self.logs = Path(settings.DATA_DIR) / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        stop = {"requested": False}

        def request_stop(signum: int, frame: object) -> None:
            stop["requested"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        try:
            self._start(options)
            while not stop["requested"]:
                self._keep_alive()
                time.sleep(0.5)
        finally:
            self._stop_all()

    def _keep_alive(self) -> None:
        """A process that died is started again after a delay that doubles while it keeps dying quickly: one bad
        process (a crashing beat, a worker killed for memory) never stops the others, and the log says so."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is None and child.process.poll() is not None:
                if now - child.started_at >= RESTART_STABLE_SECONDS:
                    child.delay = RESTART_FIRST_DELAY
                child.restart_at = now + child.delay
                self._report_crash(child)
            elif child.restart_at is not None and now >= child.restart_at:
                try:
                    child.process = child.start()
                except (OSError, RuntimeError) as exc:  # e.g. the embedded broker did not answer in time
                    self.stderr.write(self.style.ERROR(f"{child.name} did not start again: {exc}"))
                    child.restart_at = now + child.delay
                else:
                    child.restart_at = None
                    child.started_at = now
                    child.restarts += 1
                    self.stderr.write(f"{child.name} restarted (restart {child.restarts}).")
                child.delay = min(child.delay * 2, RESTART_MAX_DELAY)

    @property
    def processes(self) -> list[tuple[str, subprocess.Popen]]:
        return [(child.name, child.process) for child in self.children]

    # --- steps ---------------------------------------------------------------------------------------------------
    def _start(self, options: dict) -> None:
        host, port = options["host"], options["port"]
        if self._port_busy(host, port):
            raise CommandError(f"port {port} on {host} is in use: set PORT to another port (PORT=8001 make run)")
        self.stdout.write("Migrating the database…")
        call_command("migrate", interactive=False, verbosity=0)
        if not os.environ.get("CELERY_BROKER_URL"):
            from annotator.management import embedded_redis

            self.stdout.write("Starting the embedded Redis broker…")
            self._add(
                "redis", lambda: embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET, log_path=self.logs / "redis.log")
            )
        celery = [sys.executable, "-m", "celery", "-A", "webapp"]
        # Torch's CPU threads per worker process: with the default (one per core) the training and scoring
        # processes of one machine oversubscribe its cores, and measured on 2 cores an L-BFGS fit then ran up to
        # 100x slower (docs/benchmarks.md, "The low-data regime"). OMP_NUM_THREADS, when set, wins.
        threads = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 2) // 2))}
        self._spawn(
            "worker-gpu", [*celery, "worker", "-Q", "gpu", "-c", "1", "-n", "gpu@%h", "-l", "INFO"], env=threads
        )
        self._spawn(
            "worker-default",
            [*celery, "worker", "-Q", "default", "-c", "2", "-n", "default@%h", "-l", "INFO"],
            env=threads,
        )
        self._spawn(
            "beat",
            [*celery, "beat", "-l", "INFO", "-s", str(Path(settings.DATA_DIR) / "celerybeat-schedule")],
        )
        credentials: dict[str, str] = {}
        if not options["no_demo"]:
            from annotator.services.demo import demo_setup

            self.stdout.write("Preparing the demo project…")
            credentials = demo_setup(data_dir=Path(settings.DATA_DIR)).credentials
        web = [
            sys.executable, "-m", "gunicorn", "webapp.wsgi:application",
            "--bind", f"{host}:{port}", "--workers", "2", "--threads", "4", "--timeout", "60",
            "--access-logfile", "-",
        ]  # fmt: skip
        self._spawn("web", web)
        deadline = time.monotonic() + 30
        while not self._port_busy(host, port):
            if time.monotonic() > deadline:
                raise CommandError(f"the web server did not start; see {self.logs / 'web.log'}")
            time.sleep(0.2)
        self.stdout.write(self.style.SUCCESS(f"\nalabel is running at http://{host}:{port}/"))
        for username, password in credentials.items():
            self.stdout.write(f"  log in as {username:<15} password {password}")
        self.stdout.write(f"Logs: {self.logs}/  ·  Ctrl-C stops every process.\n")

    def _add(self, name: str, start: Callable[[], subprocess.Popen]) -> None:
        self.children.append(Child(name=name, start=start, process=start(), started_at=time.monotonic()))

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        def start() -> subprocess.Popen:
            log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child process
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
            log.close()
            return process

        self._add(name, start)

    @staticmethod
    def _port_busy(host: str, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            return probe.connect_ex((host, port)) == 0

    def _report_crash(self, child: Child) -> None:
        self.stderr.write(
            self.style.ERROR(
                f"{child.name} exited with code {child.process.returncode}; restarting it in {child.delay:g} s "
                "(the other processes go on)."
            )
        )
        log = self.logs / f"{child.name}.log"
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-20:]
            self.stderr.write("\n".join(tail))

    def _stop_all(self) -> None:
        if not self.processes:
            return
        self.stdout.write("\nStopping…")
        # Reverse start order: web first, the broker last.
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 15
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in time; killing it.")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.stdout.write("All processes stopped.")
