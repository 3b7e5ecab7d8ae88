"""Shared helpers for the benchmarks in bench/: a throw-away database and data folder, the machine description,
percentiles, the printed table and the JSON file.

Nothing here imports Django at module level: each benchmark sets the environment (DATABASE_URL, ALABEL_DATA_DIR,
...) first and then calls `django_setup()`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"

if str(ROOT) not in sys.path:  # `python bench/bench_x.py` puts bench/ on the path, not the repository root
    sys.path.insert(0, str(ROOT))


# --- database ---------------------------------------------------------------------------------------------------
def is_postgres(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme in {"postgres", "postgresql", "pgsql"}


def bench_database_url(admin_url: str, name: str) -> str:
    """The admin URL with its database name replaced by `name`."""
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _pg_admin_execute(admin_url: str, statements: Sequence[str]) -> None:
    import psycopg

    parts = urlsplit(admin_url)
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@contextmanager
def throwaway_database(*, database_url: str | None, data_dir: Path, pg_name: str, keep: bool = False) -> Iterator[str]:
    """Yields a DATABASE_URL for a database nobody else uses.

    SQLite (no URL): a file in `data_dir`, removed with it. PostgreSQL (`database_url` is the admin URL, e.g.
    postgres://postgres@127.0.0.1:5432/postgres): the dedicated database `pg_name` is dropped if left over by an
    earlier run, created, and dropped again on the way out (unless `keep`).
    """
    if not database_url:
        yield f"sqlite:///{data_dir / 'bench.sqlite3'}"
        return
    if not is_postgres(database_url):
        raise SystemExit(f"--database-url must be a postgres:// URL (got {database_url!r})")
    if not pg_name.startswith("alabel_bench"):
        raise SystemExit("the benchmark database name must start with 'alabel_bench' (it is dropped afterwards)")
    drop = f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'
    _pg_admin_execute(database_url, [drop, f'CREATE DATABASE "{pg_name}"'])
    try:
        yield bench_database_url(database_url, pg_name)
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except ImportError:  # pragma: no cover - Django missing: nothing was opened
            pass
        if keep:
            print(f"kept the PostgreSQL database {pg_name}")
        else:
            _pg_admin_execute(database_url, [drop])


def django_setup(**env: str) -> None:
    """Sets the environment the settings read, then `django.setup()`. Call once, before any Django import."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    os.environ.setdefault("ALABEL_LOG_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.update(env)
    import django

    django.setup()


# --- the machine ------------------------------------------------------------------------------------------------
def _meminfo_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory_gib": _meminfo_gib(),
        "hostname": platform.node(),
    }


def database_info() -> dict[str, Any]:
    """Vendor and server version of Django's default connection (call after django_setup)."""
    from django.db import connection

    info: dict[str, Any] = {"vendor": connection.vendor}
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("select sqlite_version()")
            info["version"] = cursor.fetchone()[0]
            cursor.execute("pragma journal_mode")
            info["journal_mode"] = cursor.fetchone()[0]
        elif connection.vendor == "postgresql":
            cursor.execute("show server_version")
            info["version"] = cursor.fetchone()[0]
            import psycopg

            info["driver"] = f"psycopg {psycopg.__version__}"
    info["conn_max_age"] = connection.settings_dict.get("CONN_MAX_AGE")
    return info


def source_hash(folders: Sequence[str] = ("annotator", "webapp", "learner")) -> str:
    """sha256 (16 hex digits) over the Python sources of the platform: which code, committed or not, was measured."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def software_info() -> dict[str, Any]:
    import celery
    import django
    import rest_framework

    return {
        "django": django.get_version(),
        "djangorestframework": rest_framework.VERSION,
        "celery": celery.__version__,
        "git_commit": _git("rev-parse", "HEAD").strip(),
        "git_modified": [line[3:] for line in _git("status", "--porcelain").splitlines() if line[:2] != "??"],
        "source_sha256": source_hash(),
    }


def header(benchmark: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": args,
        "machine": machine_info(),
    }


# --- numbers, table, JSON ----------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), `q` in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    values = list(values)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "mean": sum(values) / len(values),
        "min": min(values),
        "max": max(values),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (pastes straight into docs/benchmarks.md); numbers right-aligned."""

    def cell(value: object) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            value = 0.0 if abs(value) < 0.005 else value  # no "-0.00"
            return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) if rows else False
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "| " + " | ".join(parts) + " |"

    rules = [("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric, strict=True)]
    rule = "|" + "|".join(rules) + "|"
    return "\n".join([line(list(headers)), rule, *(line(r) for r in cells)])


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


class Stopwatch:
    """`with watch("phase"):` records wall-clock seconds per phase in `watch.seconds`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)


def wait_for(
    predicate: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    on_timeout: Callable[[], str] | None = None,
) -> Any:
    """Polls until `predicate()` is truthy and returns its value; raises TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}\n{detail}")
        time.sleep(interval)
