"""Turnaround of the learning loop on the demo project: from the N-th annotation to suggestions of the new model.

It runs the real pieces on this machine, in a fresh data folder that is deleted afterwards:

- the broker: the embedded redis-server (`annotator.management.embedded_redis`) on a socket in the temp folder, or
  --broker-url (give it a broker nobody else uses: the benchmark's worker consumes whatever is queued on `default`
  and `gpu`);
- the database: SQLite in the temp folder, or a dedicated PostgreSQL database created from the admin URL given with
  --database-url and dropped at the end;
- a real Celery worker subprocess, as tests/integration/conftest.py starts it (one worker, queues default,gpu,
  -c 2); --workers make-run starts the two workers `make run` starts instead (gpu -c 1 and default -c 2). No beat:
  jobs are dispatched on commit, the reconciler is not needed on the happy path.

Then it times, with the wall clock:

1. `demo_setup` (demo users, project, 3,000 GoEmotions documents; --pool 20000 imports GoEmotions training documents
   up to 20,000) and "import -> first cold-start queue": from the
   start of the import until the cold-start queue is in the database (the worker encoded every document with the
   bundled MiniLM and picked the cold-start documents);
2. --rounds rounds: the demo annotator (session login, DRF's APIClient in-process) takes documents from `next`
   and answers each with its gold GoEmotions labels until training is due (20 new training answers; every fifth
   document served is one of the evaluation set, which does not count). The clock runs from the
   20th answer's response until `next` serves a document of the new model version (1, 2, 3, ...) with
   suggestions. The benchmark polls the database every 0.02 s for the new version's first scored chunk in the
   queue (scoring queues each chunk's best documents as it goes), then calls `next` (polling `next` itself would
   lease, and then hold, an old-queue document), so the figure is within 0.02 s of the earliest moment `next`
   could answer. The job rows give the break-down: waiting for the worker, training, waiting again, scoring until
   `next` serves, and the whole scoring run.

    .venv/bin/python bench/bench_loop.py --pool 20000 --database-url postgres://postgres@127.0.0.1:5432/postgres

    .venv/bin/python bench/bench_loop.py                      # SQLite, embedded Redis
    .venv/bin/python bench/bench_loop.py --database-url postgres://postgres@127.0.0.1:5432/postgres

Prints Markdown tables and writes bench/results/loop-<vendor>.json. Every process it starts is stopped at the end,
also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from common import (
    RESULTS_DIR,
    ROOT,
    database_info,
    django_setup,
    header,
    software_info,
    summary,
    table,
    throwaway_database,
    wait_for,
    write_json,
)

ANNOTATIONS_PER_ROUND = 20  # the demo project's retrain_every
POLL_SECONDS = 0.02  # how often the database is asked whether the new version's queue is ready
ENCODER_LOADED = "loaded encoder"  # learner.encoder logs this when a worker process loads MiniLM


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        help="PostgreSQL admin URL (e.g. postgres://postgres@127.0.0.1:5432/postgres); the benchmark creates and "
        "drops its own database there. Default: SQLite in a temp folder.",
    )
    parser.add_argument("--pg-name", default="alabel_bench_loop", help="name of the PostgreSQL database to create")
    parser.add_argument("--broker-url", help="a Celery broker nobody else uses. Default: embedded redis-server")
    parser.add_argument("--workers", choices=["single", "make-run"], default="single", help="worker layout")
    parser.add_argument("--rounds", type=int, default=3, help="model versions to wait for")
    parser.add_argument(
        "--pool",
        type=int,
        default=3000,
        help="documents in the project: the demo's 3,000, plus GoEmotions training documents (--goemotions) up to "
        "this many (e.g. 20000)",
    )
    parser.add_argument(
        "--goemotions",
        type=Path,
        default=ROOT.parent / "shared" / "datasets" / "goemotions" / "train.jsonl.gz",
        help="GoEmotions JSONL ({id, text, labels}) for --pool above 3,000",
    )
    parser.add_argument("--cold-start-timeout", type=float, default=1800, help="seconds for encoding + cold start")
    parser.add_argument("--round-timeout", type=float, default=900, help="seconds per model version")
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/loop-<vendor>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and the PostgreSQL database")
    return parser.parse_args()


# --- processes ----------------------------------------------------------------------------------------------------
class Processes:
    """The broker and workers this benchmark started; `stop()` ends each by its own process group."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[tuple[str, subprocess.Popen, Path | None]] = []

    def add(self, name: str, process: subprocess.Popen, log: Path | None = None) -> None:
        self.started.append((name, process, log))

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log_path = self.folder / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.add(name, process, log_path)
        return process

    def check_alive(self) -> None:
        for name, process, _ in self.started:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}\n{self.logs()}")

    def logs(self, chars: int = 3000) -> str:
        parts = []
        for name, _, log in self.started:
            if log is not None and log.exists():
                parts.append(
                    f"--- {name} log (last {chars} characters) ---\n{log.read_text(errors='replace')[-chars:]}"
                )
        return "\n".join(parts)

    def count(self, text: str) -> int:
        """Occurrences of `text` in the logs so far (e.g. "loaded encoder": a worker process loading MiniLM)."""
        return sum(
            log.read_text(errors="replace").count(text)
            for _, _, log in self.started
            if log is not None and log.exists()
        )

    def stop(self) -> None:
        """SIGTERM to each process group (a worker finishes its current task: warm shutdown), SIGKILL after 15 s."""
        for name, process, _ in reversed(self.started):
            if process.poll() is not None:
                continue
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop within 15 s; killing it", file=sys.stderr)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        self.started.clear()


def start_workers(processes: Processes, layout: str) -> float:
    """Starts the worker(s) and waits until each answers a ping. Returns the seconds it took."""
    from webapp.celery import app as celery_app

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ALABEL_LOG_LEVEL": "INFO"}
    celery = [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-l", "INFO", "--without-gossip"]
    tag = f"bench{os.getpid()}"
    if layout == "single":
        commands = {"worker": [*celery, "-Q", "default,gpu", "-c", "2", "-n", f"{tag}@%h", "--without-mingle"]}
    else:
        commands = {
            "worker-gpu": [*celery, "-Q", "gpu", "-c", "1", "-n", f"{tag}-gpu@%h", "--without-mingle"],
            "worker-default": [*celery, "-Q", "default", "-c", "2", "-n", f"{tag}-default@%h", "--without-mingle"],
        }
    started = time.perf_counter()
    for name, command in commands.items():
        processes.spawn(name, command, env)

    def all_answer() -> bool:
        processes.check_alive()
        replies = celery_app.control.ping(timeout=0.5) or []
        return sum(1 for reply in replies for name in reply if name.startswith(tag)) >= len(commands)

    wait_for(all_answer, timeout=120, what="the worker(s) to answer a ping", interval=0.2, on_timeout=processes.logs)
    return time.perf_counter() - started


# --- the loop -----------------------------------------------------------------------------------------------------
def offset(moment: datetime | None, zero: float) -> float | None:
    """Seconds from the wall-clock instant `zero` (time.time()) to a database timestamp."""
    return None if moment is None else round(moment.timestamp() - zero, 3)


def job_times(job: Any, zero: float) -> dict[str, Any]:
    if job is None:
        return {}
    return {
        "id": job.pk,
        "status": job.status,
        "reason": job.reason,
        "message": job.message,
        "created": offset(job.created_at, zero),
        "started": offset(job.started_at, zero),
        "finished": offset(job.finished_at, zero),
    }


class Annotator:
    """The demo annotator's request cycle through the real stack; keeps the request latencies."""

    def __init__(self, project_id: int, username: str, gold: dict[str, list[str]]) -> None:
        from django.contrib.auth import get_user_model
        from rest_framework.test import APIClient

        self.client = APIClient()
        self.client.force_login(get_user_model().objects.get(username=username))
        self.base = f"/api/v1/projects/{project_id}"
        self.gold = gold
        self.latency_ms: dict[str, list[float]] = {"next": [], "annotations": []}

    def _timed(self, name: str, call):
        from django.db import close_old_connections

        close_old_connections()  # what request_started does in production
        started = time.perf_counter()
        response = call()
        self.latency_ms[name].append((time.perf_counter() - started) * 1000)
        return response

    def next(self) -> dict[str, Any]:
        response = self._timed("next", lambda: self.client.get(f"{self.base}/next/"))
        if response.status_code != 200:
            raise RuntimeError(f"`next` answered {response.status_code}: {response.content[:300]!r}")
        return response.json()

    def answer(self, served: dict[str, Any]) -> None:
        payload = {
            "document": served["document"]["id"],
            "labels": self.gold[served["document"]["external_id"]],
            "seconds_spent": 5.0,
        }
        response = self._timed(
            "annotations", lambda: self.client.post(f"{self.base}/annotations/", payload, format="json")
        )
        if response.status_code != 201:
            raise RuntimeError(f"`annotations` answered {response.status_code}: {response.content[:300]!r}")

    def skip(self, served: dict[str, Any]) -> None:
        self.client.post(f"{self.base}/skip/", {"document": served["document"]["id"]}, format="json")


def import_more(project_id: int, args: argparse.Namespace) -> dict[str, list[str]]:
    """Imports GoEmotions documents the demo does not have until the project holds `args.pool`; returns their gold
    labels by id. One import (one transaction, one encode job), as a manager would upload a file."""
    import gzip
    import json

    from annotator.importing import ImportRecord
    from annotator.models import Document, Project
    from annotator.services import documents_import

    project = Project.objects.get(pk=project_id)
    have = set(Document.objects.filter(project=project).values_list("external_id", flat=True))
    records, gold = [], {}
    with gzip.open(args.goemotions, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            raw = json.loads(line)
            if raw["id"] in have:
                continue
            records.append(ImportRecord(line=number, external_id=raw["id"], text=raw["text"], labels=None))
            gold[raw["id"]] = raw["labels"]
            if len(have) + len(records) >= args.pool:
                break
    documents_import(project=project, user=project.created_by, records=records)
    print(f"imported {len(records):,} more GoEmotions documents: {len(have) + len(records):,} in the pool", flush=True)
    return gold


def cold_start(project_id: int, zero: float, args: argparse.Namespace, processes: Processes) -> dict[str, Any]:
    from annotator.models import Job, QueueItem

    def ready() -> bool:
        processes.check_alive()
        failed = Job.objects.filter(project_id=project_id, status=Job.Status.FAILED).first()
        if failed is not None:
            raise RuntimeError(f"{failed.kind} job failed: {failed.error}\n{processes.logs()}")
        return (
            Job.objects.filter(project_id=project_id, kind=Job.Kind.SCORE, status=Job.Status.SUCCEEDED).exists()
            and QueueItem.objects.filter(project_id=project_id, model_version=None, strategy="cold_start").exists()
        )

    wait_for(
        ready, timeout=args.cold_start_timeout, what="encoding and the cold-start queue", on_timeout=processes.logs
    )
    seen = time.time()
    encode = Job.objects.filter(project_id=project_id, kind=Job.Kind.ENCODE).order_by("id").first()
    score = Job.objects.filter(project_id=project_id, kind=Job.Kind.SCORE).order_by("id").first()
    return {
        "queue_ready_s": round(seen - zero, 3),
        "encoder_loads": processes.count(ENCODER_LOADED),
        "cold_start_items": QueueItem.objects.filter(project_id=project_id, model_version=None).count(),
        "encode_job": job_times(encode, zero),
        "score_job": job_times(score, zero),
    }


def one_round(
    number: int,
    annotator: Annotator,
    project_id: int,
    args: argparse.Namespace,
    processes: Processes,
    held: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Answers 20 documents, then waits for model version `number` to serve. Returns the round's figures and the
    document `next` served from the new version (leased to the annotator: the next round answers it first)."""
    from annotator.models import Annotation, Job, ModelVersion, QueueItem

    last_job = Job.objects.filter(project_id=project_id).order_by("-id").values_list("id", flat=True).first() or 0
    loads_before = processes.count(ENCODER_LOADED)
    served_from: dict[str, int] = {}
    # Answer until the answer that makes training due (20 new training answers: every fifth document served is one
    # of the evaluation set, which does not count), then start the clock.
    i = 0
    while not Job.objects.filter(project_id=project_id, kind=Job.Kind.TRAIN, id__gt=last_job).exists():
        served = held if (i == 0 and held is not None) else annotator.next()
        key = f"{served['model_version']}/{served['strategy']}"
        served_from[key] = served_from.get(key, 0) + 1
        annotator.answer(served)
        i += 1
        if i > 10 * ANNOTATIONS_PER_ROUND:
            raise RuntimeError(f"no training run was queued after {i} answers")
    submitted = time.perf_counter()
    zero = time.time()

    def scored() -> bool:
        processes.check_alive()
        failed = Job.objects.filter(project_id=project_id, status=Job.Status.FAILED, id__gt=last_job).first()
        if failed is not None:
            raise RuntimeError(f"{failed.kind} job failed: {failed.error}\n{processes.logs()}")
        return Job.objects.filter(
            project_id=project_id, kind=Job.Kind.SCORE, status=Job.Status.SUCCEEDED, model_version__number=number
        ).exists()

    def first_chunk_in() -> bool:
        processes.check_alive()
        failed = Job.objects.filter(project_id=project_id, status=Job.Status.FAILED, id__gt=last_job).first()
        if failed is not None:
            raise RuntimeError(f"{failed.kind} job failed: {failed.error}\n{processes.logs()}")
        return (
            QueueItem.objects.filter(project_id=project_id, model_version__number=number)
            .exclude(strategy__in=["evaluation", "random"])
            .exists()
        )

    # `next` serves the new version's documents as soon as scoring put its first chunk into the queue.
    wait_for(
        first_chunk_in,
        timeout=args.round_timeout,
        what=f"model v{number} to be trained and its first scored chunk queued",
        interval=POLL_SECONDS,
        on_timeout=processes.logs,
    )
    misses: list[dict[str, Any]] = []
    while True:
        served = annotator.next()
        if served["model_version"] == number and served["suggestions"]:
            break
        misses.append({"model_version": served["model_version"], "strategy": served["strategy"]})
        annotator.skip(served)  # not what we wait for: let it go, do not hold it
        if time.perf_counter() - submitted > args.round_timeout:
            raise TimeoutError(f"`next` never served v{number} with suggestions: {misses[-5:]}")
        time.sleep(0.1)
    turnaround = time.perf_counter() - submitted
    wait_for(
        scored,
        timeout=args.round_timeout,
        what=f"model v{number} to finish scoring the pool",
        interval=POLL_SECONDS,
        on_timeout=processes.logs,
    )
    scoring_done = time.perf_counter() - submitted

    version = ModelVersion.objects.get(project_id=project_id, number=number)
    train = Job.objects.filter(project_id=project_id, kind=Job.Kind.TRAIN, model_version=version).first()
    score = (
        Job.objects.filter(project_id=project_id, kind=Job.Kind.SCORE, model_version=version, status="SUCCEEDED")
        .order_by("id")
        .first()
    )
    t, s = job_times(train, zero), job_times(score, zero)
    phases = {
        "to_train_start": _minus(t.get("started"), 0.0),
        "train_run": _minus(t.get("finished"), t.get("started")),
        "to_score_start": _minus(s.get("started"), t.get("finished")),
        "score_run": _minus(s.get("finished"), s.get("started")),
        "served_after_score_start": _minus(round(turnaround, 3), s.get("started")),
    }
    result = {
        "round": number,
        "annotations_total": Annotation.objects.filter(project_id=project_id).count(),
        "served_during_round": served_from,
        "turnaround_s": round(turnaround, 3),
        "scoring_finished_s": round(scoring_done, 3),
        "phases_s": phases,
        "encoder_loads": processes.count(ENCODER_LOADED) - loads_before,
        "train_job": t,
        "score_job": s,
        "model": {
            "number": version.number,
            "n_annotations": version.n_annotations,
            "train_seconds": version.train_seconds,
            "device": version.device,
            "metrics": version.metrics,
        },
        "served": {
            "model_version": served["model_version"],
            "strategy": served["strategy"],
            "suggestions": len(served["suggestions"]),
        },
        "misses_before_served": misses,
    }
    return result, served


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3) + 0.0  # + 0.0: no "-0.0"


def run(args: argparse.Namespace, folder: Path, url: str) -> dict[str, Any]:
    processes = Processes(folder)
    try:
        socket_path = folder / "redis.sock"
        broker = args.broker_url or f"redis+socket://{socket_path}"
        django_setup(
            DATABASE_URL=url,
            ALABEL_DATA_DIR=str(folder),
            CELERY_BROKER_URL=broker,
            DJANGO_ALLOWED_HOSTS="testserver",
        )
        if not args.broker_url:
            from annotator.management import embedded_redis

            redis_log = folder / "redis.log"
            processes.add("redis", embedded_redis.start(socket_path, log_path=redis_log), redis_log)
            if embedded_redis.url_for(socket_path) != broker:
                raise RuntimeError(f"unexpected embedded broker URL {embedded_redis.url_for(socket_path)}")
        from django.core.management import call_command

        from annotator.services.demo import demo_records, demo_setup

        seconds: dict[str, float] = {}
        started = time.perf_counter()
        call_command("migrate", interactive=False, verbosity=0)
        seconds["migrate"] = round(time.perf_counter() - started, 3)
        db = database_info()
        print(
            f"database: {db['vendor']} {db['version']}; broker: {'embedded redis' if not args.broker_url else broker}"
        )
        print(f"starting the worker(s) ({args.workers}) ...", flush=True)
        seconds["workers_ready"] = round(start_workers(processes, args.workers), 3)

        print(f"demo_setup: importing {max(args.pool, 3000):,} documents ...", flush=True)
        zero = time.time()
        started = time.perf_counter()
        info = demo_setup(data_dir=folder)
        extra_gold = import_more(info.project_id, args) if args.pool > 3000 else {}
        seconds["demo_setup"] = round(time.perf_counter() - started, 3)
        print("waiting for encoding and the cold-start queue ...", flush=True)
        cold = cold_start(info.project_id, zero, args, processes)
        gold = {record.external_id: record.labels or [] for record in demo_records(with_labels=True)}
        gold.update(extra_gold)
        annotator = Annotator(info.project_id, "demo-annotator", gold)
        first = annotator.next()
        cold["first_served_s"] = round(time.time() - zero, 3)
        cold["first_served"] = {"model_version": first["model_version"], "strategy": first["strategy"]}

        rounds = []
        held: dict[str, Any] | None = first
        for number in range(1, args.rounds + 1):
            print(
                f"round {number}: answering {ANNOTATIONS_PER_ROUND} documents, then waiting for v{number} ...",
                flush=True,
            )
            result, held = one_round(number, annotator, info.project_id, args, processes, held)
            print(f"  v{number} served {result['turnaround_s']:.1f} s after annotation {result['annotations_total']}")
            rounds.append(result)
        return {
            "database": db,
            "broker": "embedded redis (unix socket)" if not args.broker_url else args.broker_url,
            "workers": args.workers,
            "seconds": seconds,
            "cold_start": cold,
            "rounds": rounds,
            "request_latency_ms": {name: summary(values) for name, values in annotator.latency_ms.items()},
        }
    finally:
        processes.stop()


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # run the clean-up on SIGTERM too
    folder = Path(tempfile.mkdtemp(prefix="alabel-bench-loop-"))
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"note: load average {load_before[0]:.2f} before starting; other work shares the CPU")
    try:
        with throwaway_database(
            database_url=args.database_url, data_dir=folder, pg_name=args.pg_name, keep=args.keep
        ) as url:
            measured = run(args, folder, url)
            software = software_info()
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    cold = measured["cold_start"]
    enc, sco = cold["encode_job"], cold["score_job"]
    pool = max(args.pool, 3000)
    print()
    print(f"{measured['database']['vendor']} {measured['database']['version']}, workers: {args.workers}")
    print(
        table(
            ["step", "seconds"],
            [
                ["workers start (until they answer a ping)", measured["seconds"]["workers_ready"]],
                [
                    f"demo_setup (users, project, import {pool:,} documents)",
                    measured["seconds"]["demo_setup"],
                ],
                ["encode job: queued -> started", _minus(enc.get("started"), enc.get("created"))],
                [
                    f"encode job: run ({pool:,} documents)",
                    _minus(enc.get("finished"), enc.get("started")),
                ],
                ["cold-start score job: queued -> started", _minus(sco.get("started"), sco.get("created"))],
                ["cold-start score job: run", _minus(sco.get("finished"), sco.get("started"))],
                ["import -> first cold-start queue", cold["queue_ready_s"]],
                ["(MiniLM loads in worker processes meanwhile)", cold["encoder_loads"]],
            ],
        )
    )
    print()
    rows = []
    for r in measured["rounds"]:
        p = r["phases_s"]
        rows.append(
            [
                f"{r['annotations_total']}th annotation -> v{r['round']}",
                p["to_train_start"],
                p["train_run"],
                p["to_score_start"],
                p["served_after_score_start"],
                r["turnaround_s"],
                p["score_run"],
                r["encoder_loads"],
            ]
        )
    print(
        table(
            [
                "round",
                "-> train starts",
                "train",
                "-> score starts",
                "score start -> next serves",
                "total s (label -> served)",
                "whole score run",
                "MiniLM loads",
            ],
            rows,
        )
    )
    payload = {
        **header("loop", {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}),
        "software": software,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        **measured,
    }
    out = args.out or RESULTS_DIR / f"loop-{measured['database']['vendor']}.json"
    print(f"wrote {write_json(out, payload)}")


if __name__ == "__main__":
    main()
