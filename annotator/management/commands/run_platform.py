"""`make run`: migrate, start the broker (embedded unless CELERY_BROKER_URL is set), the workers, beat and the web
server, create the demo project on first start, and stop every process on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Children get SIGTERM if the launcher itself is killed, so no orphan keeps running."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Command(BaseCommand):
    help = "Starts the whole platform on this machine (web, workers, beat, embedded broker)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-demo", action="store_true", help="Do not create the demo project.")

    def handle(self, *args: object, **options) -> None:
        self.processes: list[tuple[str, subprocess.Popen]] = []
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
                for name, process in self.processes:
                    if process.poll() is not None:
                        self._report_crash(name, process)
                        stop["requested"] = True
                        break
                time.sleep(0.5)
        finally:
            self._stop_all()

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
            process = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET, log_path=self.logs / "redis.log")
            self.processes.append(("redis", process))
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

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
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
        self.processes.append((name, process))

    @staticmethod
    def _port_busy(host: str, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            return probe.connect_ex((host, port)) == 0

    def _report_crash(self, name: str, process: subprocess.Popen) -> None:
        self.stderr.write(self.style.ERROR(f"{name} exited with code {process.returncode}; stopping everything."))
        log = self.logs / f"{name}.log"
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
