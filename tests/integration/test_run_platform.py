"""`make run` on a fresh machine: SQLite and the embedded Redis, the demo project, a dead process restarted, and Ctrl-C
stops everything."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _read_until(process: subprocess.Popen, pattern: str, timeout: float) -> str:
    """Collects the launcher's output (on one reader thread per launcher) until `pattern` appears; returns all that
    was read so far."""
    lines: list[str] | None = getattr(process, "output_lines", None)
    if lines is None:
        lines = process.output_lines = []  # type: ignore[attr-defined]

        def pump() -> None:
            for line in process.stdout:
                lines.append(line)

        threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = "".join(lines)
        if re.search(pattern, seen):
            return seen
        if process.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"launcher output never matched {pattern!r}:\n{''.join(lines)[-3000:]}")


def test_run_platform_serves_the_demo_and_ctrl_c_stops_every_process(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY"}}
    env.update({"ALABEL_DATA_DIR": str(tmp_path / "data"), "PORT": str(port), "PYTHONUNBUFFERED": "1"})
    launcher = subprocess.Popen(
        [sys.executable, "manage.py", "run_platform"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = _read_until(launcher, r"Ctrl-C stops every process", timeout=180)
        assert f"alabel is running at http://127.0.0.1:{port}/" in output
        passwords = dict(re.findall(r"log in as (\S+)\s+password (\S+)", output))
        assert set(passwords) == {"demo-manager", "demo-annotator"}

        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/auth/token/",
            data=json.dumps({"username": "demo-manager", "password": passwords["demo-manager"]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        token = json.load(urllib.request.urlopen(request, timeout=10))["token"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/projects/", headers={"Authorization": f"Token {token}"}
        )
        projects = json.load(urllib.request.urlopen(request, timeout=10))
        assert [p["name"] for p in projects] == ["GoEmotions demo"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/projects/{projects[0]['id']}/stats/",
            headers={"Authorization": f"Token {token}"},
        )
        stats = json.load(urllib.request.urlopen(request, timeout=10))
        assert stats["documents"] == 3000 and stats["labels"] == 28
        # Both workers report themselves (heartbeats in the database): /healthz says "ok" once they have.
        deadline = time.monotonic() + 120
        while True:
            health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10))
            if health["status"] == "ok" or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert health["database"] == "ok" and health["broker"] == "ok"
        assert health["status"] == "ok", health
        assert health["workers"]["queues"]["gpu"]["alive"] == 1 and health["workers"]["queues"]["default"]["alive"] == 1
        assert "workers" not in health["workers"]  # no host names for anonymous callers

        children = psutil.Process(launcher.pid).children(recursive=True)
        names = " ".join(" ".join(child.cmdline()) for child in children)
        for part in ("redis-server", "worker -Q gpu", "worker -Q default", "beat", "gunicorn"):
            assert part in names, part

        # Issue 16: one child that dies (here beat, killed) is restarted with back-off and the others go on.
        beat = next(child for child in children if " beat " in " ".join(child.cmdline()) + " ")
        beat.kill()
        output = _read_until(launcher, r"beat restarted \(restart 1\)", timeout=60)
        assert re.search(r"beat exited with code -?\d+; restarting it in 1 s", output)
        assert launcher.poll() is None
        beats = [
            child
            for child in psutil.Process(launcher.pid).children(recursive=True)
            if " beat " in " ".join(child.cmdline()) + " "
        ]
        assert len(beats) == 1 and beats[0].pid != beat.pid
        assert json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10))["database"] == "ok"
        children = psutil.Process(launcher.pid).children(recursive=True)
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.wait(timeout=60)
    assert launcher.returncode == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
