"""The manager's dashboard and statistics endpoints on a large project.

What it builds, in a throw-away database (SQLite file in a temp folder, or a dedicated PostgreSQL database created
from the admin URL given with --database-url and dropped at the end), as issue 6 sizes it:

- a project with the 41,218 tibkat-gnd labels and --docs documents (default 100,000: the train split, then dev
  records), imported through `services.documents_import` (which also draws the 200-document evaluation set);
- --annotations answered documents (default 20,000) with their gold labels by five annotators, spread over the last
  30 days, each with ten suggestion decisions (accepted when the label is gold, otherwise rejected or not chosen),
  written with bulk inserts (the answer path itself is measured by bench_api / bench_annotate), then
  `labels_recount` over every label;
- --versions model versions (default 50) at growing label counts, each with evaluation metrics and intervals, 800
  per-label rows, decisions on a 500-document stop set and its agreement; the learning curve fitted on them;
- a label budget with its thresholds fired, quotas, 100 activity records.

Then it requests, as the manager, through the whole Django stack in process (session auth, middleware, DRF or the
template; `close_old_connections()` before each request as `request_started` does): the dashboard page and every
statistics endpoint, --iterations times each after --warmup.

    .venv/bin/python bench/bench_dashboard.py                      # SQLite
    .venv/bin/python bench/bench_dashboard.py --database-url postgres://postgres@127.0.0.1:5432/postgres

Prints a Markdown table and writes bench/results/dashboard-<vendor>.json. Target (issue 6): every request under
200 ms p95.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
from datetime import timedelta
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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "tibkat-gnd"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL admin URL; default: SQLite in a temp folder")
    parser.add_argument("--pg-name", default="alabel_bench_dashboard", help="PostgreSQL database to create")
    parser.add_argument("--data", type=Path, default=SHARED, help="the tibkat-gnd folder (labels.tsv, *.jsonl.gz)")
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--annotations", type=int, default=20_000)
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/dashboard-<vendor>.json)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.annotations > args.docs - 1000:
        parser.error("--annotations must leave at least 1,000 documents unlabelled")
    return args


def read_records(folder: Path, n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in ("train.jsonl.gz", "dev.jsonl.gz"):
        with gzip.open(folder / name, "rt", encoding="utf-8") as handle:
            for line in handle:
                rows.append(json.loads(line))
                if len(rows) >= n:
                    return rows
    raise SystemExit(f"{folder} holds only {len(rows)} records; --docs asks for {n}")


def build(args: argparse.Namespace, watch: Stopwatch) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.db import transaction
    from django.utils import timezone
    from tqdm import tqdm

    from annotator import services
    from annotator.importing import ImportRecord
    from annotator.models import (
        Activity,
        Annotation,
        AnnotationLabel,
        Document,
        Label,
        ModelVersion,
        Project,
        SuggestionDecision,
    )
    from annotator.services.curves import learning_curve_refresh

    rng = random.Random(args.seed)
    User = get_user_model()
    manager = User.objects.create_user(username="bench-manager", password=secrets.token_urlsafe(16))
    manager.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    manager = User.objects.get(pk=manager.pk)
    annotators = [
        User.objects.create_user(username=f"expert-{i}", password=secrets.token_urlsafe(16)) for i in range(5)
    ]
    with open(args.data / "labels.tsv", encoding="utf-8", newline="") as handle:
        names = [row["label"] for row in csv.DictReader(handle, delimiter="\t")]
    with watch("create_project_and_labels"):
        project = services.project_create(
            user=manager,
            name="GND at scale",
            labels=names,
            retrain_every=1_000_000,
            label_budget=25_000,
            cost_per_document="0.80",
            currency="EUR",
        )
        for i, user in enumerate(annotators):
            services.member_add(project=project, username=user.username, role="annotator", quota=8_000 if i else None)
    records = read_records(args.data, args.docs)
    with watch("import_documents"):
        services.documents_import(
            project=project,
            user=manager,
            records=[
                ImportRecord(line=i, external_id=f"{r['id']}#{i}", text=r["text"], labels=None)
                for i, r in enumerate(records)
            ],
        )
    label_id = dict(Label.objects.filter(project=project).values_list("name", "id"))
    all_label_ids = list(label_id.values())
    doc_ids = list(Document.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    evaluation = set(Document.objects.filter(project=project, is_evaluation=True).values_list("id", flat=True))
    pool = [d for d in doc_ids if d not in evaluation]
    answered = rng.sample(pool, args.annotations - 150) + rng.sample(sorted(evaluation), 150)
    gold = {doc_ids[i]: [label_id[n] for n in r["labels"] if n in label_id] for i, r in enumerate(records)}
    now = timezone.now()
    with watch("insert_annotations"), transaction.atomic():
        annotations = Annotation.objects.bulk_create(
            [
                Annotation(
                    document_id=doc,
                    project=project,
                    annotator=annotators[k % 5],
                    source=Annotation.Source.UI,
                    strategy="cardinality+kmeans",
                    seconds_spent=round(rng.uniform(8, 90), 1),
                )
                for k, doc in enumerate(answered)
            ],
            batch_size=2000,
        )
        for annotation in annotations:  # spread over the last 30 days (auto_now_add set "now" on insert)
            annotation.created_at = annotation.updated_at = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        Annotation.objects.bulk_update(annotations, ["created_at", "updated_at"], batch_size=2000)
        links, decisions = [], []
        for annotation in tqdm(annotations, desc="labels and decisions", unit="answer"):
            labels = gold[annotation.document_id]
            links.extend(AnnotationLabel(annotation=annotation, label_id=x) for x in labels)
            shown = list(dict.fromkeys(labels[:3] + rng.sample(all_label_ids, 10)))[:10]
            for rank, x in enumerate(shown, start=1):
                decision = "accepted" if x in labels else ("rejected" if rng.random() < 0.2 else "not_chosen")
                decisions.append(
                    SuggestionDecision(
                        annotation=annotation,
                        label_id=x,
                        rank=rank,
                        score=round(1 - rank / 12, 3),
                        preselected=rank <= 2,
                        decision=decision,
                    )
                )
        AnnotationLabel.objects.bulk_create(links, batch_size=5000)
        SuggestionDecision.objects.bulk_create(decisions, batch_size=5000)
        shown: dict[int, list[int]] = {}
        for d in decisions:
            counts = shown.setdefault(d.annotation.pk, [0, 0])
            counts[0] += 1
            counts[1] += d.decision == "accepted"
        for annotation in annotations:
            annotation.suggestions_shown, annotation.suggestions_accepted = shown.get(annotation.pk, [0, 0])
        Annotation.objects.bulk_update(annotations, ["suggestions_shown", "suggestions_accepted"], batch_size=2000)
    with watch("labels_recount"):
        services.labels_recount(label_ids=all_label_ids)
    stop_set = sorted(rng.sample(pool, 500))
    Project.objects.filter(pk=project.pk).update(stop_set=stop_set)
    with watch("insert_versions"):
        for number in range(1, args.versions + 1):
            labels = int(args.annotations * number / args.versions)
            value = 0.45 - 0.9 * labels**-0.35 + rng.gauss(0, 0.01)
            metrics = {
                name: {"value": round(v, 4), "low": round(v - 0.04, 4), "high": round(v + 0.04, 4)}
                for name, v in (
                    ("micro_f1", value),
                    ("macro_f1", value * 0.6),
                    ("P@1", value + 0.2),
                    ("P@3", value),
                    ("P@5", value - 0.1),
                    ("nDCG@5", value + 0.05),
                    ("PSP@5", value * 0.8),
                )
            }
            ModelVersion.objects.create(
                project=project,
                number=number,
                is_serving=number == args.versions,
                artifact_path=f"projects/{project.pk}/models/bench-v{number}",
                metrics={"micro_f1": round(value + 0.03, 4), "p_at_1": round(value + 0.22, 4)},
                evaluation={"n_documents": 150, "n_boot": 1000, "alpha": 0.05, "metrics": metrics},
                evaluation_per_label=[
                    {"label": names[j], "support": 1, "f1": 0.5, "low": 0.0, "high": 1.0} for j in range(800)
                ],
                stop_predictions=[rng.sample(all_label_ids, 4) for _ in stop_set],
                agreement=None if number == 1 else round(0.8 + 0.004 * number, 4),
                config={"strategy": "cardinality+kmeans", "mode": "full", "threshold": 0.3},
                n_annotations=labels,
                n_labels=len(names),
                data_cutoff=now,
                train_seconds=round(rng.uniform(60, 200), 1),
                device="cpu",
            )
        project.refresh_from_db()
        learning_curve_refresh(project=project)
    services.budgets.budget_alerts_check(project=project)
    Activity.objects.bulk_create(
        [Activity(project=project, kind="model", message=f"v{i} published") for i in range(100)]
    )
    return {"project_id": project.pk, "manager_id": manager.pk}


ENDPOINTS = [
    ("dashboard page", "/projects/{id}/", {}),
    ("stats", "/api/v1/projects/{id}/stats/", {}),
    ("learning-curve", "/api/v1/projects/{id}/learning-curve/", {}),
    ("learning-curve CSV", "/api/v1/projects/{id}/learning-curve/", {"format": "csv"}),
    ("models", "/api/v1/projects/{id}/models/", {}),
    ("models/compare", "/api/v1/projects/{id}/models/compare/", {"a": 1, "b": "LAST"}),
    ("annotators", "/api/v1/projects/{id}/annotators/", {}),
    ("annotators, 7 days", "/api/v1/projects/{id}/annotators/", {"date_from": "DAYS7"}),
    ("labels/coverage", "/api/v1/projects/{id}/labels/coverage/", {}),
    ("labels/coverage, q + max 4", "/api/v1/projects/{id}/labels/coverage/", {"q": "geschichte", "max_positives": 4}),
    ("labels/coverage, 7 days", "/api/v1/projects/{id}/labels/coverage/", {"date_from": "DAYS7"}),
]


def measure(args: argparse.Namespace, built: dict[str, Any]) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import close_old_connections
    from django.utils import timezone
    from rest_framework.test import APIClient
    from tqdm import tqdm

    client = APIClient()
    client.force_login(get_user_model().objects.get(pk=built["manager_id"]))
    week = (timezone.localdate() - timedelta(days=7)).isoformat()
    results: dict[str, Any] = {}
    for name, path, params in tqdm(ENDPOINTS, desc="endpoints", unit="endpoint"):
        url = path.replace("{id}", str(built["project_id"]))
        query = {k: {"DAYS7": week, "LAST": args.versions}.get(v, v) for k, v in params.items()}
        latencies, size = [], 0
        for i in range(args.warmup + args.iterations):
            close_old_connections()
            started = time.perf_counter()
            response = client.get(url, query)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{name} answered {response.status_code}: {response.content[:300]!r}")
            size = len(response.content)
            if i >= args.warmup:
                latencies.append(elapsed)
        results[name] = {"latency_ms": summary(latencies), "bytes": size}
    close_old_connections()
    return results


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    data_dir = Path(tempfile.mkdtemp(prefix="alabel-bench-dashboard-"))
    watch = Stopwatch()
    try:
        with throwaway_database(
            database_url=args.database_url, data_dir=data_dir, pg_name=args.pg_name, keep=args.keep
        ) as url:
            django_setup(
                DATABASE_URL=url,
                ALABEL_DATA_DIR=str(data_dir),
                DJANGO_ALLOWED_HOSTS="testserver",
                CELERY_BROKER_URL="memory://localhost/",
                DJANGO_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
            )
            from django.core.management import call_command
            from django.db import connection

            with watch("migrate"):
                call_command("migrate", interactive=False, verbosity=0)
            db = database_info()
            print(f"database: {db['vendor']} {db['version']} ({'temp folder' if not is_postgres(url) else url})")
            load_before = os.getloadavg()
            built = build(args, watch)
            if db["vendor"] == "postgresql":  # what autovacuum does to fresh tables within a minute
                with connection.cursor() as cursor:
                    cursor.execute("VACUUM ANALYZE")
            with watch("measure"):
                measured = measure(args, built)
            load_after = os.getloadavg()
            software = software_info()
    finally:
        if args.keep:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    rows = [
        [name, m["latency_ms"]["n"], m["latency_ms"]["p50"], m["latency_ms"]["p95"], m["latency_ms"]["max"], m["bytes"]]
        for name, m in measured.items()
    ]
    print()
    print(
        f"{db['vendor']} {db['version']}: {args.docs:,} documents, 41,218 labels, {args.annotations:,} answers, "
        f"{args.versions} versions; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(table(["request", "n", "p50 ms", "p95 ms", "max ms", "bytes"], rows))
    print(f"setup seconds: {watch.seconds}")
    payload = {
        **header("dashboard", {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}),
        "database": db,
        "software": software,
        "load_average": {"before": load_before, "after": load_after},
        "setup_seconds": watch.seconds,
        "endpoints": measured,
    }
    out = args.out or RESULTS_DIR / f"dashboard-{db['vendor']}.json"
    print(f"wrote {write_json(out, payload)}")


if __name__ == "__main__":
    main()
