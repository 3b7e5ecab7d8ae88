"""Load: --annotators experts doing `next` + submit against the web server (gunicorn, as `make run` starts it),
driven by Locust headless (bench/locust_annotators.py), on PostgreSQL or SQLite.

What it builds, in a throw-away database (a dedicated PostgreSQL database created from the admin URL given with
--database-url and dropped at the end, or SQLite in a temp folder): a project with the 28 GoEmotions labels, --docs
GoEmotions texts, a hard label budget of --label-budget documents, a published model version (with a tick curve, so
pre-ticks are computed; --cold-start: none) whose queue holds every document with ten suggestions each, as the
scoring task leaves it, training never due, and --annotators annotators, each with an API token. Celery's broker is
its in-process `memory://` transport: no worker runs, no task is waited for.

Then Locust starts the annotators, --spawn-rate per second (0: all within the same second), and runs them for
--seconds: each asks for the next document and answers it with its gold labels, --think seconds apart (uniform,
+-50 %), until the budget is spent (`next` answers 204) or the time is up. Reported: p50 / p95 / p99 of `next` and of
submit (ms, exact, over the whole run and past --warmup seconds, and p95 per 5 s), answers per second (between the
first and the last answer stored), 5xx and failed requests, lost answers (answers the server accepted with 201 that
are not in the database: must be 0) and budget overshoot (documents answered beyond the hard budget: must be 0).
gunicorn's access log (in the temp folder) has the server's own time per request.

Locust is not a test dependency: `pip install -r requirements-bench.txt` first.

    .venv/bin/python bench/bench_load.py --database-url postgres://postgres@127.0.0.1:5432/postgres

Prints a Markdown table and writes bench/results/load-<vendor>.json.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from common import (
    RESULTS_DIR,
    ROOT,
    database_info,
    django_setup,
    header,
    percentile,
    table,
    throwaway_database,
    wait_for,
    write_json,
)

DATASET = ROOT.parent / "shared" / "datasets" / "goemotions" / "train.jsonl.gz"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL admin URL; default: SQLite in a temp folder")
    parser.add_argument("--pg-name", default="alabel_bench_load", help="PostgreSQL database to create and drop")
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--docs", type=int, default=5_000, help="documents in the project (all queued)")
    parser.add_argument("--label-budget", type=int, default=2_000, help="the project's hard label budget (0: none)")
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument(
        "--cold-start",
        action="store_true",
        help="serve the cold-start queue (no model yet); default: a published model version's queue, whose "
        "suggestions carry a tick curve and whose experts' decisions are counted with every answer",
    )
    parser.add_argument("--seconds", type=int, default=60, help="how long Locust runs at most")
    parser.add_argument(
        "--think", type=float, default=0.5, help="mean seconds an annotator waits between documents (uniform, +-50%%)"
    )
    parser.add_argument(
        "--spawn-rate",
        type=float,
        default=5.0,
        help="annotators starting per second (0: all within the same second, the harshest start)",
    )
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="seconds from the start not counted in the steady-state percentiles"
    )
    parser.add_argument(
        "--one-annotator",
        type=int,
        default=0,
        metavar="N",
        help="instead of the load: one annotator's N next + submit cycles in-process (Django's test client, no "
        "server, no Locust): median ms and SQL queries per request, where a request's own cost is seen alone",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (make run starts 2)")
    parser.add_argument("--web-threads", type=int, default=4, help="threads per gunicorn worker (make run: 4)")
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/load-<vendor>.json)")
    return parser.parse_args()


def bench_tick_curve(shortlists: dict[str, list], gold: dict[str, list[str]], label_ids: list[int]) -> dict:
    """A tick curve as training leaves one (learner.decision.tick_curve), from the queued shortlists checked against
    the gold labels: the pre-tick rule then computes its threshold on every `next`, as in a trained project."""
    import numpy as np
    from scipy import sparse

    from annotator.models import Label
    from learner.decision import tick_curve

    column = {label_id: i for i, label_id in enumerate(label_ids)}
    names = dict(Label.objects.filter(pk__in=label_ids).values_list("name", "id"))
    docs = list(shortlists)
    idx = np.array([[column[label_id] for label_id, _ in shortlists[d]] for d in docs])
    probs = np.array([[score for _, score in shortlists[d]] for d in docs])
    rows = [(i, column[names[name]]) for i, d in enumerate(docs) for name in gold[d] if name in names]
    targets = sparse.csr_matrix(
        (np.ones(len(rows)), ([r for r, _ in rows], [c for _, c in rows])), shape=(len(docs), len(label_ids))
    )
    return tick_curve(idx, probs, targets)


def build(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The project, its queue and the annotators' tokens; returns what the Locust users need."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.core.management import call_command
    from django.utils import timezone

    from annotator import services
    from annotator.importing import ImportRecord
    from annotator.models import Document, Label, ModelVersion, QueueItem
    from annotator.services.demo import demo_labels
    from annotator.services.tokens import token_create

    call_command("migrate", interactive=False, verbosity=0)
    User = get_user_model()
    manager = User.objects.create_user(username="load-manager", password=secrets.token_urlsafe(16))
    manager.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    manager = User.objects.get(pk=manager.pk)
    project = services.project_create(
        user=manager,
        name="Load",
        labels=demo_labels(),
        retrain_every=1_000_000,
        label_budget=args.label_budget or None,  # 0: no budget (nothing serialises on the project row)
        eval_size=0,
        queue_size=args.docs,
    )
    rows = []
    with gzip.open(args.dataset, "rt", encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if len(rows) >= args.docs:
                break
    records = [ImportRecord(line=i, external_id=r["id"], text=r["text"], labels=None) for i, r in enumerate(rows, 1)]
    services.documents_import(project=project, user=manager, records=records)
    by_external = dict(Document.objects.filter(project=project).values_list("external_id", "id"))
    gold = {str(by_external[row["id"]]): row["labels"] for row in rows}
    label_ids = list(Label.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    shortlists = {
        doc_id: [[label_ids[(rank + j) % len(label_ids)], round(0.9 - 0.08 * j, 2)] for j in range(10)]
        for rank, doc_id in enumerate(gold)
    }
    version = None
    if not args.cold_start:
        version = ModelVersion.objects.create(
            project=project,
            number=1,
            is_serving=True,
            artifact_path=f"bench-load/{project.pk}/v1",
            n_annotations=0,
            n_labels=len(label_ids),
            data_cutoff=timezone.now(),
            config={"threshold": 0.5, "tick_curve": bench_tick_curve(shortlists, gold, label_ids)},
        )
    QueueItem.objects.filter(project=project).delete()
    QueueItem.objects.bulk_create(
        [
            QueueItem(
                project=project,
                document_id=int(doc_id),
                model_version=version,
                strategy="cold_start" if version is None else "uncertainty",
                score=float(len(gold) - rank),
                suggestions=shortlists[doc_id],
            )
            for rank, doc_id in enumerate(gold)
        ],
        batch_size=1000,
    )
    tokens = []
    for i in range(args.annotators):
        user = User.objects.create_user(username=f"load-annotator-{i}", password=secrets.token_urlsafe(16))
        services.member_add(project=project, username=user.username, role="annotator")
        tokens.append(token_create(user=user, name="load")[1])
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # the steady state: autovacuum analyzes fresh tables within a minute
    connection.close()
    return {
        "project_id": project.pk,
        "tokens": tokens,
        "gold": gold,
        "think_seconds": args.think,
        "counts_path": str(folder / "counts.json"),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_answers(port: int) -> bool:
    """Whether a web worker answers (any HTTP status: /healthz says 503 without a Celery worker)."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def percentiles(rows: list[dict[str, str]], requests: list[list], name: str, *, after: float = 0.0) -> dict[str, Any]:
    """Exact p50 / p95 / p99 (ms) of the requests named `name` that started `after` seconds or later into the run
    (the locustfile records every request); the failures come from Locust's statistics (whole run)."""
    times = [ms for started, request, ms in requests if request == name and started >= after]
    if not times:
        return {"requests": 0}
    row = next((r for r in rows if r["Name"] == name), None)
    return {
        "requests": len(times),
        "failures": int(row["Failure Count"]) if row and not after else None,
        "p50_ms": round(percentile(times, 50), 1),
        "p95_ms": round(percentile(times, 95), 1),
        "p99_ms": round(percentile(times, 99), 1),
        "max_ms": round(max(times), 1),
        "mean_ms": round(sum(times) / len(times), 1),
    }


def one_annotator(setup: dict[str, Any], cycles: int) -> dict[str, Any]:
    """One annotator's `cycles` next + submit in-process (after 5 unmeasured ones): median and p95 ms and the
    median number of SQL queries of each request."""
    import statistics

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings

    client = Client()
    base = f"/api/v1/projects/{setup['project_id']}"
    auth = {"HTTP_AUTHORIZATION": f"Token {setup['tokens'][0]}"}
    times: dict[str, list[float]] = {"next": [], "submit": []}
    queries: dict[str, list[int]] = {"next": [], "submit": []}
    with override_settings(ALLOWED_HOSTS=["*"]):
        for cycle in range(cycles + 5):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                served = client.get(f"{base}/next/", **auth)
                took = time.perf_counter() - started
            if served.status_code != 200:
                raise SystemExit(f"next answered {served.status_code}: {served.content[:200]!r}")
            if cycle >= 5:
                times["next"].append(took * 1000)
                queries["next"].append(len(captured))
            document = served.json()["document"]["id"]
            body = json.dumps({"document": document, "labels": setup["gold"].get(str(document), [])})
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                answer = client.post(f"{base}/annotations/", body, content_type="application/json", **auth)
                took = time.perf_counter() - started
            if answer.status_code != 201:
                raise SystemExit(f"submit answered {answer.status_code}: {answer.content[:200]!r}")
            if cycle >= 5:
                times["submit"].append(took * 1000)
                queries["submit"].append(len(captured))
    return {
        name: {
            "cycles": cycles,
            "median_ms": round(statistics.median(times[name]), 1),
            "p95_ms": round(percentile(times[name], 95), 1),
            "queries": statistics.median(queries[name]),
        }
        for name in times
    }


def main() -> None:
    args = parse_args()
    folder = Path(tempfile.mkdtemp(prefix="alabel-load-"))
    with throwaway_database(database_url=args.database_url, data_dir=folder, pg_name=args.pg_name) as url:
        env = {"DATABASE_URL": url, "ALABEL_DATA_DIR": str(folder / "data"), "CELERY_BROKER_URL": "memory://"}
        django_setup(**env)
        started = time.perf_counter()
        setup = build(args, folder)
        setup_seconds = round(time.perf_counter() - started, 1)
        if args.one_annotator:
            result = one_annotator(setup, args.one_annotator)
            vendor = database_info()["vendor"]
            from django.db import connection

            connection.close()
            print(
                table(
                    ["request", "median ms", "p95 ms", "SQL queries"],
                    [[n, r["median_ms"], r["p95_ms"], r["queries"]] for n, r in result.items()],
                )
            )
            out = args.out or RESULTS_DIR / f"load-one-annotator-{vendor}.json"
            write_json(out, {**header("load-one-annotator", vars(args)), **result})
            print(f"wrote {out}")
            return
        (folder / "setup.json").write_text(json.dumps(setup))
        port = free_port()
        server_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "ALABEL_LOG_LEVEL": "WARNING"}
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "webapp.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.web_workers), "--threads", str(args.web_threads), "--timeout", "60",
             # The server's own time per request (microseconds; the clock starts when gunicorn reads the request):
             "--access-logfile", str(folder / "access.log"), "--access-logformat", "%(m)s %(U)s %(s)s %(D)s"],
            cwd=ROOT, env=server_env, stdout=open(folder / "web.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )  # fmt: skip
        try:
            # gunicorn's master listens at once, but its workers need about a second to load the application:
            # wait until one answers, then as long again for the others (a request sent earlier waits for them,
            # which is the platform starting, not serving).
            booting = time.perf_counter()
            wait_for(lambda: http_answers(port), timeout=60, what="the web server")
            time.sleep(time.perf_counter() - booting)
            locust = [
                sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locust_annotators.py"), "--headless",
                "-u", str(args.annotators), "-r", str(args.spawn_rate or args.annotators), "-t", f"{args.seconds}s",
                "--host", f"http://127.0.0.1:{port}", "--csv", str(folder / "stats"), "--only-summary",
                "--stop-timeout", "10", "--exit-code-on-error", "0",
            ]  # fmt: skip
            print(f"load: {args.annotators} annotators for up to {args.seconds} s ...", flush=True)
            ran = time.perf_counter()
            subprocess.run(locust, cwd=ROOT, env={**os.environ, "LOAD_SETUP": str(folder / "setup.json")}, check=True)
            wall = time.perf_counter() - ran
        finally:
            web.terminate()
            web.wait(timeout=30)
        from django.db import connection
        from django.db.models import Max, Min

        from annotator import selectors
        from annotator.models import Annotation, Project

        connection.close()
        project = Project.objects.get(pk=setup["project_id"])
        answers = Annotation.objects.filter(project=project)
        in_database = answers.count()
        span = answers.aggregate(first=Min("created_at"), last=Max("created_at"))
        active = (span["last"] - span["first"]).total_seconds() if in_database > 1 else 0.0
        spent = selectors.budget_for(project=project).spent
        counts = json.loads((folder / "counts.json").read_text())
        requests = counts.pop("requests")
        with open(folder / "stats_stats.csv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        vendor = database_info()["vendor"]
        connection.close()
    result = {
        "setup_seconds": setup_seconds,
        "wall_seconds": round(wall, 1),
        "next": percentiles(rows, requests, "next"),
        "next_nothing_to_serve": percentiles(rows, requests, "next: nothing to serve"),
        "submit": percentiles(rows, requests, "submit"),
        # Past the start (every annotator asking for a first document within the same second, when --spawn-rate is
        # 0): the steady state of annotators working at their own pace.
        "steady_after_seconds": args.warmup,
        "next_steady": percentiles(rows, requests, "next", after=args.warmup),
        "submit_steady": percentiles(rows, requests, "submit", after=args.warmup),
        "answers_accepted": counts["submitted"],
        "answers_refused_409": counts["refused"],
        "answers_in_database": in_database,
        "lost_answers": counts["submitted"] - in_database,
        "server_errors_5xx": counts["server_errors"],
        "budget": args.label_budget,
        "budget_spent": spent,
        "budget_overshoot": max(spent - args.label_budget, 0) if args.label_budget else None,
        "answers_per_second": round(in_database / active, 1) if active else None,  # first to last answer
    }
    print(
        table(
            ["request", "count", "failures", "p50 ms", "p95 ms", "p99 ms"],
            [
                [name, r.get("requests", 0), r.get("failures", 0), r.get("p50_ms"), r.get("p95_ms"), r.get("p99_ms")]
                for name, r in (
                    ("next", result["next"]),
                    ("submit", result["submit"]),
                    (f"next, after {args.warmup:g} s", result["next_steady"]),
                    (f"submit, after {args.warmup:g} s", result["submit_steady"]),
                )
            ],
        )
    )
    print({k: v for k, v in result.items() if not isinstance(v, dict)})
    timeline = {}  # p95 per 5-second stretch: where the slow requests are
    for started, name, ms in requests:
        if name in ("next", "submit"):
            timeline.setdefault(int(started // 5) * 5, []).append(ms)
    result["p95_per_5s"] = {str(k): round(percentile(v, 95), 1) for k, v in sorted(timeline.items())}
    print("p95 (ms) of next and submit per 5 s from the start:", result["p95_per_5s"])
    out = args.out or RESULTS_DIR / f"load-{vendor}.json"
    write_json(out, {**header("load", vars(args)), **result})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
