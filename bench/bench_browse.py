"""Browsing documents and answers at 100,000 documents (issue 18): `GET .../documents/` with each filter, on the first
page and deep in the project (keyset paging), through the whole Django stack in process, on PostgreSQL or SQLite.

What it builds, in a throw-away database: one project with the 28 GoEmotions labels, --documents documents (texts
of the GoEmotions train split, repeated with a suffix when more are asked than the split has), three annotators
and a reviewer; --answered of the documents answered (each by one annotator in turn, a second answer on every tenth,
the gold labels of the text; the second answer of every twentieth adds a label, so those documents disagree, and a
gold answer settles every fifth of them), answers spread over 30 days, a third of them with a model agreement below
1; a tenth of the documents in the evaluation set. Then, for each request, --repeats timed calls (after
`close_old_connections()`, as `request_started` does): the first page and a page after the middle document (half of
the ids), unfiltered and filtered by annotator, label, dates, model disagreement, agreement below 1, gold,
answered=0 and evaluation=1.

    .venv/bin/python bench/bench_browse.py --database-url postgres://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_browse.py

Prints a Markdown table and writes bench/results/browse-<vendor>.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import secrets
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from common import (
    RESULTS_DIR,
    ROOT,
    database_info,
    django_setup,
    header,
    summary,
    table,
    throwaway_database,
    write_json,
)

GOEMOTIONS = ROOT.parent / "shared" / "datasets" / "goemotions" / "train.jsonl.gz"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL admin URL; default: SQLite in a temp folder")
    parser.add_argument("--pg-name", default="alabel_bench_browse", help="PostgreSQL database to create and drop")
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--answered", type=int, default=60_000, help="documents with at least one answer")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database (to EXPLAIN queries)")
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/browse-<vendor>.json)")
    return parser.parse_args()


def read_records(n: int) -> list[dict]:
    rows = []
    with gzip.open(GOEMOTIONS, "rt", encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
    return [
        {"text": f"{rows[i % len(rows)]['text']} #{i // len(rows)}", "labels": rows[i % len(rows)]["labels"]}
        for i in range(n)
    ]


def build(args: argparse.Namespace) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.db import transaction
    from django.utils import timezone
    from tqdm import tqdm

    from annotator import services
    from annotator.models import Adjudication, AdjudicationLabel, Annotation, AnnotationLabel, Document, Label

    rng = random.Random(args.seed)
    users = get_user_model().objects
    manager = users.create_user(username="manager", password=secrets.token_urlsafe(16))
    manager.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    manager = users.get(pk=manager.pk)
    records = read_records(args.documents)
    labels = sorted({name for record in records for name in record["labels"]})
    project = services.project_create(user=manager, name="Browse", labels=labels, eval_size=0)
    annotators = [users.create_user(username=f"annotator{i}", password=secrets.token_urlsafe(16)) for i in range(3)]
    for user in annotators:
        services.member_add(project=project, username=user.username, user=manager)
    reviewer = users.create_user(username="reviewer", password=secrets.token_urlsafe(16))
    services.member_add(project=project, username="reviewer", role="reviewer", user=manager)
    label_ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
    now = timezone.now()
    chunk = 5000
    for start in tqdm(range(0, args.documents, chunk), desc="documents + answers", unit="chunk"):
        part = records[start : start + chunk]
        with transaction.atomic():
            docs = Document.objects.bulk_create(
                [
                    Document(
                        project=project,
                        external_id=f"d{start + i}",
                        text=record["text"],
                        is_evaluation=(start + i) % 10 == 3,
                        answers_count=0 if start + i >= args.answered else 1 + ((start + i) % 10 == 0),
                        agreement=None
                        if start + i >= args.answered or (start + i) % 10
                        else (1.0 if (start + i) % 20 else 0.5),
                    )
                    for i, record in enumerate(part)
                ]
            )
            if any(doc.pk is None for doc in docs):
                by_ext = dict(
                    Document.objects.filter(project=project, external_id__in=[d.external_id for d in docs]).values_list(
                        "external_id", "id"
                    )
                )
                for doc in docs:
                    doc.pk = by_ext[doc.external_id]
            answers, links, golds = [], [], []
            for i, (doc, record) in enumerate(zip(docs, part, strict=True)):
                n = start + i
                if n >= args.answered:
                    continue
                who = [annotators[n % 3]] + ([annotators[(n + 1) % 3]] if n % 10 == 0 else [])
                for k, user in enumerate(who):
                    answers.append(
                        Annotation(
                            document=doc,
                            project=project,
                            annotator=user,
                            source=Annotation.Source.API,
                            seconds_spent=rng.uniform(2, 30),
                            model_agreement=rng.choice([None, 1.0, 0.5]),
                        )
                    )
                    extra = [labels[n % len(labels)]] if k == 1 and n % 20 == 0 else []
                    links.append(sorted(set(record["labels"]) | set(extra)))
                if n % 100 == 0:
                    golds.append((doc, record["labels"]))
            created = Annotation.objects.bulk_create(answers)
            if any(a.pk is None for a in created):
                raise RuntimeError("the database gave no ids back for bulk-created answers")
            AnnotationLabel.objects.bulk_create(
                [
                    AnnotationLabel(annotation=answer, label_id=label_ids[name])
                    for answer, names in zip(created, links, strict=True)
                    for name in names
                ]
            )
            for answer in created:  # spread over 30 days
                answer.updated_at = now - timedelta(days=rng.uniform(0, 30))
            Annotation.objects.bulk_update(created, ["updated_at"], batch_size=1000)
            settled = Adjudication.objects.bulk_create(
                [Adjudication(project=project, document=doc, reviewer=reviewer) for doc, _ in golds]
            )
            AdjudicationLabel.objects.bulk_create(
                [
                    AdjudicationLabel(adjudication=gold, label_id=label_ids[name])
                    for gold, (_, names) in zip(settled, golds, strict=True)
                    for name in names
                ]
            )
    from annotator.services.annotations import labels_recount

    labels_recount(label_ids=list(label_ids.values()))  # Label.frequency, as answering keeps it
    ids = list(Document.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    return {
        "project_id": project.pk,
        "deep": ids[len(ids) // 2],
        "label": labels[len(labels) // 2],
        "frequent_label": Label.objects.filter(project=project)
        .order_by("-frequency")
        .values_list("name", flat=True)[0],
        "annotations": Annotation.objects.filter(project=project).count(),
    }


def measure(args: argparse.Namespace, built: dict) -> list[dict]:
    from django.contrib.auth import get_user_model
    from django.db import close_old_connections
    from django.utils import timezone
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(get_user_model().objects.get(username="manager"))
    url = f"/api/v1/projects/{built['project_id']}/documents/"
    today = timezone.localdate()
    week = {"date_from": (today - timedelta(days=7)).isoformat(), "date_to": today.isoformat()}
    requests = {
        "no filter": {},
        "annotator": {"annotator": "annotator1"},
        "label": {"label": built["label"]},
        "most frequent label": {"label": built["frequent_label"]},
        "last 7 days": week,
        "annotator + label + 7 days": {"annotator": "annotator1", "label": built["label"], **week},
        "model disagreement": {"model_disagreement": "1"},
        "agreement below 1": {"agreement_below": "1"},
        "agreement below 1, no gold": {"agreement_below": "1", "gold": "0"},
        "answered=0": {"answered": "0"},
        "evaluation=1": {"evaluation": "1"},
    }
    rows = []
    for name, params in requests.items():
        for where, extra in (("first page", {}), ("after half of the ids", {"after": built["deep"]})):
            latencies, shown = [], 0
            for _ in range(args.repeats):
                close_old_connections()
                started = time.perf_counter()
                response = client.get(url, {**params, **extra, "limit": 50})
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: {response.status_code} {response.content[:300]!r}")
                shown = len(response.json()["documents"])
            rows.append({"request": name, "page": where, "documents": shown, "latency_ms": summary(latencies)})
            print(f"{name}, {where}: p95 {rows[-1]['latency_ms']['p95']:.1f} ms", flush=True)
    return rows


def main() -> None:
    args = parse_args()
    folder = Path(tempfile.mkdtemp(prefix="alabel-browse-"))
    with throwaway_database(
        database_url=args.database_url, data_dir=folder, pg_name=args.pg_name, keep=args.keep
    ) as url:
        django_setup(
            DATABASE_URL=url,
            ALABEL_DATA_DIR=str(folder / "data"),
            CELERY_BROKER_URL="memory://",
            DJANGO_ALLOWED_HOSTS="testserver",
        )
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", interactive=False, verbosity=0)
        started = time.perf_counter()
        built = build(args)
        build_seconds = time.perf_counter() - started
        db = database_info()
        if db["vendor"] == "postgresql":  # autovacuum would have analyzed the fresh tables within a minute
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        rows = measure(args, built)
        connection.close()
    print(
        f"\n{db['vendor']} {db['version']}: {args.documents:,} documents, {built['annotations']:,} answers, "
        f"label {built['label']!r}, most frequent label {built['frequent_label']!r}"
    )
    print(
        table(
            ["request", "page", "shown", "p50 ms", "p95 ms", "max ms"],
            [
                [r["request"], r["page"], r["documents"], *(r["latency_ms"][k] for k in ("p50", "p95", "max"))]
                for r in rows
            ],
        )
    )
    out = args.out or RESULTS_DIR / f"browse-{db['vendor']}.json"
    payload = {
        **header("browse", {k: str(v) for k, v in vars(args).items()}),
        "database": db,
        "build_seconds": build_seconds,
        **{k: v for k, v in built.items() if k != "project_id"},
        "requests": rows,
    }
    print(f"wrote {write_json(out, payload)}")


if __name__ == "__main__":
    main()
