"""Latency of the annotation hot path, `GET next` and `POST annotations`, on a 10,000-document project.

What it builds, in a throw-away database (SQLite file in a temp folder, or a dedicated PostgreSQL database created
from the admin URL given with --database-url and dropped at the end):

- a project with the 28 GoEmotions labels, a manager and an annotator (session login), a label budget of 5,000
  (so `next` checks the budget, as it does on the demo project) and training never due (see below);
- 10,000 GoEmotions training texts imported through `services.documents_import` (texts only);
- --labelled documents already answered through `services.annotation_submit` with their gold labels (a project in
  mid-flight, default 1,000), so the "is it annotated?" sub-queries see a realistic annotation table;
- the selection queue as the scoring task leaves it: a serving ModelVersion v1 and --queue-items QueueItem rows
  (default 5,000, `queue_size` set to match) with ten [label_id, probability] suggestions each.

Then it plays the annotator's request cycle through the real Django stack in-process (middleware, session and
auth, DRF, services, JSON rendering; DRF's APIClient, no sockets): GET /api/v1/projects/{id}/next/, then POST
/api/v1/projects/{id}/annotations/ with the document's gold labels. Before each request it calls
`close_old_connections()` as Django's request_started signal does in production (the test client skips it), so the
SQLite connection is re-opened per request (CONN_MAX_AGE=0) and PostgreSQL's is kept and health-checked
(CONN_MAX_AGE=60). --warmup cycles are discarded, --iterations are measured.

SQLite in WAL mode checkpoints and deletes the -wal file whenever the last connection to the database closes, and
the next write then pays for re-creating it (several milliseconds of fsync per request). Under `make run` the
worker and celery beat keep connections open most of the time, so by default a helper process holds one idle
connection for the whole run, as they would; --sqlite-alone measures the web process as the only connection.

PostgreSQL plans the queue query from table statistics; right after the queue rows are inserted there are none
(autovacuum analyzes within about a minute), and the plan is much slower. By default the benchmark runs ANALYZE on
PostgreSQL before measuring (the steady state); --analyze no measures the freshly filled queue.

Training is never due (retrain_every is set to 1,000,000) and the broker is Celery's in-process `memory://`
transport, so the encode job the import requests is sent nowhere and no worker or Redis is needed.

    .venv/bin/python bench/bench_api.py                      # SQLite
    .venv/bin/python bench/bench_api.py --database-url postgres://postgres@127.0.0.1:5432/postgres

Prints a Markdown table and writes bench/results/api-<vendor>.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import (
    RESULTS_DIR,
    Stopwatch,
    database_info,
    django_setup,
    header,
    is_postgres,
    software_info,
    summary,
    table,
    throwaway_database,
    write_json,
)

# The shared datasets live next to the repository (../shared/datasets); --dataset points elsewhere.
DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "goemotions" / "train.jsonl.gz"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        help="PostgreSQL admin URL (e.g. postgres://postgres@127.0.0.1:5432/postgres); the benchmark creates and "
        "drops its own database there. Default: SQLite in a temp folder.",
    )
    parser.add_argument("--pg-name", default="alabel_bench", help="name of the PostgreSQL database to create")
    parser.add_argument("--dataset", type=Path, default=DATASET, help="GoEmotions-style JSONL(.gz): id, text, labels")
    parser.add_argument("--docs", type=int, default=10_000, help="documents in the project")
    parser.add_argument("--labelled", type=int, default=1_000, help="documents answered before measuring")
    parser.add_argument(
        "--label-budget", type=int, default=5_000, help="the project's label budget (0: none); `next` checks it"
    )
    parser.add_argument("--queue-items", type=int, default=5_000, help="queue rows of the serving model version")
    parser.add_argument("--warmup", type=int, default=50, help="request cycles discarded before measuring")
    parser.add_argument("--iterations", type=int, default=500, help="measured next -> annotation cycles")
    parser.add_argument(
        "--overlap-share",
        type=float,
        default=0.0,
        help="the project's overlap share (issue 18): with --annotators 2 half the `next` calls serve further answers",
    )
    parser.add_argument(
        "--annotators", type=int, choices=[1, 2], default=1, help="annotators taking turns in the measured cycle"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON result (default bench/results/api-<vendor>[-alone][-analyze-yes|no][-overlap].json)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and the PostgreSQL database")
    parser.add_argument(
        "--analyze",
        choices=["auto", "yes", "no"],
        default="auto",
        help="run ANALYZE before measuring. auto: on PostgreSQL (autovacuum would have analyzed the tables within "
        "a minute), not on SQLite (nothing ever runs ANALYZE there)",
    )
    parser.add_argument(
        "--sqlite-alone",
        action="store_true",
        help="SQLite: no other process holds the database open (each request's close then checkpoints the WAL)",
    )
    args = parser.parse_args()
    if args.labelled + args.queue_items > args.docs:
        parser.error("--labelled + --queue-items must not exceed --docs")
    if args.label_budget and args.labelled + args.warmup + args.iterations >= args.label_budget:
        parser.error("--label-budget must exceed --labelled + --warmup + --iterations")
    if args.warmup + args.iterations > args.queue_items:
        parser.error("--queue-items must be at least --warmup + --iterations (every `next` is served from it)")
    return args


def read_dataset(path: Path, limit: int) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if len(rows) >= limit:
                break
    if len(rows) < limit:
        raise SystemExit(f"{path} has only {len(rows)} documents; --docs asks for {limit}")
    return rows


class QueryCounter:
    """A connection execute_wrapper: counts SQL statements and the seconds spent in them (cheap enough to stay on
    while timing). With `record` set, keeps the statements of the current request."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.record = False
        self.statements: list[dict[str, Any]] = []

    def reset(self, *, record: bool = False) -> None:
        self.count, self.seconds, self.record, self.statements = 0, 0.0, record, []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = time.perf_counter() - started
            self.count += 1
            self.seconds += elapsed
            if self.record:
                self.statements.append({"ms": round(elapsed * 1000, 3), "sql": " ".join(str(sql).split())[:400]})


HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1])
connection.execute("select count(*) from sqlite_master").fetchall()  # opens the WAL index; no transaction stays open
print("ready", flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
connection.close()
"""


@contextmanager
def other_connection(database_url: str, enabled: bool) -> Iterator[bool]:
    """SQLite: a separate process holding one idle connection (as the worker and beat do under `make run`)."""
    if not enabled or not database_url.startswith("sqlite:///"):
        yield False
        return
    path = database_url.removeprefix("sqlite:///")
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        if process.stdout is None or process.stdout.readline().strip() != "ready":
            raise RuntimeError("the helper process holding the SQLite database did not start")
        yield True
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def build_project(args: argparse.Namespace, watch: Stopwatch) -> dict[str, Any]:
    """Users, project, documents, earlier answers and the queue. Returns ids and the gold labels by document id."""
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.db import transaction
    from django.utils import timezone
    from tqdm import tqdm

    from annotator import services
    from annotator.importing import ImportRecord
    from annotator.models import Document, Label, ModelVersion, QueueItem
    from annotator.services.demo import demo_labels

    rng = random.Random(args.seed)
    User = get_user_model()
    manager = User.objects.create_user(username="bench-manager", password=secrets.token_urlsafe(16))
    manager.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    manager = User.objects.get(pk=manager.pk)
    annotator = User.objects.create_user(username="bench-annotator", password=secrets.token_urlsafe(16))
    project = services.project_create(
        user=manager,
        name=f"Bench {args.docs} documents",
        labels=demo_labels(),
        retrain_every=1_000_000,  # training never becomes due: no task is sent while measuring
        label_budget=args.label_budget or None,  # with a budget, `next` counts spent and leased documents
        queue_size=args.queue_items,
        overlap_share=args.overlap_share,
        eval_size=0,  # the earlier answers are given directly, which the blind evaluation set refuses
    )
    services.member_add(project=project, username=annotator.username, role="annotator")
    annotator_ids = [annotator.pk]
    if args.annotators == 2:
        second = User.objects.create_user(username="bench-annotator-2", password=secrets.token_urlsafe(16))
        services.member_add(project=project, username=second.username, role="annotator")
        annotator_ids.append(second.pk)

    rows = read_dataset(args.dataset, args.docs)
    gold_by_external = {row["id"]: row["labels"] for row in rows}
    records = [
        ImportRecord(line=i, external_id=row["id"], text=row["text"], labels=None) for i, row in enumerate(rows, 1)
    ]
    print(f"importing {len(records)} documents through services.documents_import ...", flush=True)
    with watch("import_documents"):
        services.documents_import(project=project, user=manager, records=records)
    doc_ids = dict(Document.objects.filter(project=project).values_list("external_id", "id"))
    gold = {doc_ids[ext]: labels for ext, labels in gold_by_external.items()}

    ids = sorted(gold)
    rng.shuffle(ids)
    labelled, queued = ids[: args.labelled], ids[args.labelled : args.labelled + args.queue_items]
    with watch("label_before"):
        for doc_id in tqdm(labelled, desc="answer earlier documents", unit="doc"):
            services.annotation_submit(
                project=project, user=annotator, document_id=doc_id, labels=gold[doc_id], seconds_spent=5.0
            )

    with watch("fill_queue"):
        label_ids = list(Label.objects.filter(project=project).order_by("id").values_list("id", flat=True))
        nprng = np.random.default_rng(args.seed)
        k = project.suggestions_k
        probs = nprng.beta(0.4, 4.0, size=(len(queued), len(label_ids)))  # (Q, L) mostly small, a few high
        scores = nprng.uniform(0.05, 0.69, size=len(queued))  # mean binary entropy lies in [0, ln 2]
        with transaction.atomic():
            version = ModelVersion.objects.create(
                project=project,
                number=1,
                is_serving=True,
                artifact_path=f"projects/{project.pk}/models/bench-v1",
                metrics={},
                config={"mean_cardinality": 1.18},
                n_annotations=len(labelled),
                n_labels=len(label_ids),
                data_cutoff=timezone.now(),
                train_seconds=0.0,
                device="cpu",
            )
            items = []
            for row, doc_id in enumerate(tqdm(queued, desc="fill the queue", unit="item")):
                top = np.argsort(-probs[row])[:k]
                items.append(
                    QueueItem(
                        project=project,
                        document_id=doc_id,
                        model_version=version,
                        strategy=project.strategy,
                        score=float(scores[row]),
                        suggestions=[[int(label_ids[j]), round(float(probs[row, j]), 4)] for j in top],
                    )
                )
            QueueItem.objects.bulk_create(items, batch_size=1000)
    return {
        "project_id": project.pk,
        "annotator_ids": annotator_ids,
        "labelled": labelled,
        "gold": gold,
        "labels": len(label_ids),
    }


def measure(args: argparse.Namespace, built: dict[str, Any]) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import close_old_connections, connection
    from rest_framework.test import APIClient
    from tqdm import tqdm

    clients = []
    for annotator_id in built["annotator_ids"]:  # taking turns, one cycle each
        client = APIClient()
        client.force_login(get_user_model().objects.get(pk=annotator_id))
        clients.append(client)
    strategies: dict[str, int] = {}
    base = f"/api/v1/projects/{built['project_id']}"
    gold = built["gold"]
    samples: dict[str, dict[str, list[float]]] = {
        name: {"latency_ms": [], "queries": [], "sql_ms": [], "previous_close_ms": []}
        for name in ("next", "annotations")
    }
    sample_queries: dict[str, list[dict[str, Any]]] = {}
    served_versions: dict[str, int] = {}
    without_suggestions = 0
    counter = QueryCounter()

    def timed(name: str, call, measured: bool, record: bool):
        started = time.perf_counter()
        close_old_connections()  # what request_started does in production: closes the previous request's one
        closed = time.perf_counter() - started
        counter.reset(record=record)
        started = time.perf_counter()
        response = call()
        elapsed = time.perf_counter() - started
        if measured:
            samples[name]["latency_ms"].append(elapsed * 1000)
            samples[name]["queries"].append(counter.count)
            samples[name]["sql_ms"].append(counter.seconds * 1000)
            samples[name]["previous_close_ms"].append(closed * 1000)
        if record:
            sample_queries[name] = counter.statements
        return response

    total = args.warmup + args.iterations
    answered = set(built["labelled"])  # a document served again is served for a further (overlap) answer
    with connection.execute_wrapper(counter):
        for i in tqdm(range(total), desc="next -> annotation", unit="cycle"):
            measured = i >= args.warmup
            record = i == args.warmup
            client = clients[i % len(clients)]
            served = timed("next", lambda client=client: client.get(f"{base}/next/"), measured, record)
            if served.status_code != 200:
                raise RuntimeError(f"`next` answered {served.status_code}: {served.content[:300]!r}")
            body = served.json()
            served_versions[str(body["model_version"])] = served_versions.get(str(body["model_version"]), 0) + 1
            strategy = "overlap" if body["document"]["id"] in answered else "first answer"
            strategies[strategy] = strategies.get(strategy, 0) + 1
            answered.add(body["document"]["id"])
            without_suggestions += not body["suggestions"]
            doc_id = body["document"]["id"]
            payload = {"document": doc_id, "labels": gold[doc_id], "seconds_spent": 4.2}
            answer = timed(
                "annotations",
                lambda payload=payload, client=client: client.post(f"{base}/annotations/", payload, format="json"),
                measured,
                record,
            )
            if answer.status_code != 201:
                raise RuntimeError(f"`annotations` answered {answer.status_code}: {answer.content[:300]!r}")
    close_old_connections()
    return {
        "endpoints": {
            name: {metric: summary(values) for metric, values in metrics.items()} for name, metrics in samples.items()
        },
        "raw_latency_ms": {name: [round(v, 3) for v in m["latency_ms"]] for name, m in samples.items()},
        "raw_close_ms": {name: [round(v, 3) for v in m["previous_close_ms"]] for name, m in samples.items()},
        "served_model_versions": served_versions,
        "served_without_suggestions": without_suggestions,
        "served": strategies,
        "sample_queries": sample_queries,
    }


def state_after(project_id: int) -> dict[str, int]:
    from annotator.models import Annotation, Document, Job, QueueItem

    return {
        "documents": Document.objects.filter(project_id=project_id).count(),
        "annotations": Annotation.objects.filter(document__project_id=project_id).count(),
        "queue_items": QueueItem.objects.filter(project_id=project_id).count(),
        "jobs": Job.objects.filter(project_id=project_id).count(),
        "train_jobs": Job.objects.filter(project_id=project_id, kind="train").count(),
    }


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # clean up on SIGTERM too
    data_dir = Path(tempfile.mkdtemp(prefix="alabel-bench-api-"))
    watch = Stopwatch()
    try:
        with throwaway_database(
            database_url=args.database_url, data_dir=data_dir, pg_name=args.pg_name, keep=args.keep
        ) as url:
            django_setup(
                DATABASE_URL=url,
                ALABEL_DATA_DIR=str(data_dir),
                DJANGO_ALLOWED_HOSTS="testserver",
                CELERY_BROKER_URL="memory://localhost/",  # the import's encode job goes nowhere; no worker, no Redis
            )
            from django.core.management import call_command
            from django.db import connection

            with watch("migrate"):
                call_command("migrate", interactive=False, verbosity=0)
            db = database_info()
            print(f"database: {db['vendor']} {db['version']} ({'temp folder' if not is_postgres(url) else url})")
            load_before = os.getloadavg()
            if load_before[0] > 0.5:
                print(f"note: load average {load_before[0]:.2f} before measuring; other work shares the CPU")
            with other_connection(url, not args.sqlite_alone) as held:
                db["other_connection_held"] = held
                built = build_project(args, watch)
                db["analyzed"] = args.analyze == "yes" or (args.analyze == "auto" and db["vendor"] == "postgresql")
                if db["analyzed"]:
                    with watch("analyze"), connection.cursor() as cursor:
                        cursor.execute("ANALYZE")
                with watch("measure"):
                    measured = measure(args, built)
            load_after = os.getloadavg()
            after = state_after(built["project_id"])
            software = software_info()
    finally:
        if args.keep:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)

    endpoints = measured["endpoints"]
    rows = []
    for name, path in (("next", "GET next/"), ("annotations", "POST annotations/")):
        lat, queries, sql = endpoints[name]["latency_ms"], endpoints[name]["queries"], endpoints[name]["sql_ms"]
        low, high = int(queries["min"]), int(queries["max"])
        q = str(low) if low == high else f"{low}-{high}"
        rows.append([path, lat["n"], lat["p50"], lat["p95"], lat["mean"], q, sql["p50"]])
    print()
    alone = " (web process alone on the database)" if db["vendor"] == "sqlite" and args.sqlite_alone else ""
    alone += ", ANALYZEd" if db["analyzed"] else ", no ANALYZE"
    print(
        f"{db['vendor']} {db['version']}{alone}: {args.docs} documents, {args.labelled} answered before, "
        f"{args.queue_items} queue items, {args.iterations} measured cycles after {args.warmup} warm-up"
        + (f", overlap share {args.overlap_share}, {args.annotators} annotator(s)" if args.overlap_share else "")
        + f"; served: {measured['served']}"
    )
    print(table(["request", "n", "p50 ms", "p95 ms", "mean ms", "queries", "SQL p50 ms"], rows))
    closes = [v for name in endpoints for v in measured["raw_close_ms"][name]]
    close = summary(closes)
    print(
        f"closing each request's database connection afterwards (not in the latencies above): "
        f"p50 {close['p50']:.2f} ms, p95 {close['p95']:.2f} ms"
    )
    print(f"setup seconds: {watch.seconds}")

    payload = {
        **header("api", {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}),
        "database": db,
        "software": software,
        "setup": {
            "documents": args.docs,
            "labels": built["labels"],
            "labelled_before": args.labelled,
            "label_budget": args.label_budget or None,
            "queue_items": args.queue_items,
            "suggestions_per_item": 10,
            "seconds": watch.seconds,
        },
        "state_after": after,
        "load_average": {"before": load_before, "after": load_after},
        **measured,
    }
    suffix = "-alone" if db["vendor"] == "sqlite" and args.sqlite_alone else ""
    suffix += "" if args.analyze == "auto" else f"-analyze-{args.analyze}"
    suffix += f"-overlap-{args.annotators}" if args.overlap_share else ""
    out = args.out or RESULTS_DIR / f"api-{db['vendor']}{suffix}.json"
    print(f"wrote {write_json(out, payload)}")


if __name__ == "__main__":
    main()
