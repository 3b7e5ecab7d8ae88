"""The expert's annotate page: label search at 28 and 41,218 labels, `next` and submit with the model's shortlist, and
the page's weight.

What it builds, in a throw-away database (SQLite file in a temp folder, or a dedicated PostgreSQL database created
from the admin URL given with --database-url and dropped at the end):

- project "GoEmotions": the 28 GoEmotions labels (with their descriptions);
- project "GND": the 41,218 tibkat-gnd subject headings (German names with umlauts), each with its frequency in the
  tibkat-gnd train split as `Label.frequency` (what `services.labels_recount` keeps up to date from the answers of
  a project in full swing), --docs tibkat-gnd dev records, and a queue of them as the scoring task leaves it: a
  serving ModelVersion and one QueueItem per document with the model's 50-label shortlist (`KEPT_SHORTLIST`: the
  first `suggestions_k` = 10 are shown as suggestions, all 50 rank the search results for the document).

Then it plays the annotator's requests through the real Django stack in-process (middleware, session auth, DRF,
JSON; DRF's APIClient, no sockets), calling `close_old_connections()` before each as `request_started` does:

- label search, `GET labels/?q=...&limit=15&document=ID`, for --queries queries per project: what an expert types
  on the way to a label, i.e. prefixes (3 to 14 characters) of the folded names of labels drawn by frequency, some
  typed without their umlauts or in other case, some with two words ("kunstliche int");
- the labelling cycle on GND: `GET next/` then `POST annotations/` with two suggestions accepted and one rejected.

Page weight: the annotate page's HTML as served to the annotator, plus the JavaScript and CSS it loads (raw and
gzip-compressed bytes). The page loads no label list: labels arrive 15 at a time from the search endpoint.

    .venv/bin/python bench/bench_annotate.py                      # SQLite
    .venv/bin/python bench/bench_annotate.py --database-url postgres://postgres@127.0.0.1:5432/postgres

Prints Markdown tables and writes bench/results/annotate-<vendor>.json.
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
    parser.add_argument("--pg-name", default="alabel_bench_annotate", help="PostgreSQL database to create")
    parser.add_argument("--labels-tsv", type=Path, default=SHARED / "labels.tsv", help="tibkat-gnd labels.tsv")
    parser.add_argument("--documents", type=Path, default=SHARED / "dev.jsonl.gz", help="tibkat-gnd dev.jsonl.gz")
    parser.add_argument("--docs", type=int, default=2_000, help="GND documents (all queued)")
    parser.add_argument("--queries", type=int, default=1_000, help="measured searches per project")
    parser.add_argument("--cycles", type=int, default=300, help="measured next -> submit cycles")
    parser.add_argument("--warmup", type=int, default=30, help="requests of each kind discarded first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/annotate-<vendor>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and the PostgreSQL database")
    args = parser.parse_args()
    if args.warmup + args.cycles > args.docs:
        parser.error("--docs must be at least --warmup + --cycles (every `next` serves a new document)")
    return args


def read_labels(path: Path) -> list[tuple[str, int]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [(row["label"], int(row["train"])) for row in csv.DictReader(handle, delimiter="\t")]


def read_documents(path: Path, limit: int) -> list[dict[str, Any]]:
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if len(rows) >= limit:
                break
    return rows


def typed_queries(names: list[str], weights: list[int], n: int, rng: random.Random) -> list[str]:
    """What experts type on the way to a label: prefixes of its folded name; one in four keeps its original case and
    accents, one in five has two words; always the fixed "kunstliche int" once."""
    from annotator.text import fold

    queries = ["kunstliche int"]
    while len(queries) < n:
        name = rng.choices(names, weights=weights)[0]
        key = name if rng.random() < 0.25 else fold(name)
        words = key.split()
        if len(words) >= 2 and rng.random() < 0.2:
            query = words[0] + " " + words[1][: rng.randint(1, max(1, len(words[1])))]
        else:
            query = key[: rng.randint(3, 14)]
        if query.strip():
            queries.append(query)
    return queries


def build(args: argparse.Namespace, watch: Stopwatch) -> dict[str, Any]:
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
    from annotator.services.scoring import KEPT_SHORTLIST

    User = get_user_model()
    manager = User.objects.create_user(username="bench-manager", password=secrets.token_urlsafe(16))
    manager.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    manager = User.objects.get(pk=manager.pk)
    annotator = User.objects.create_user(username="bench-annotator", password=secrets.token_urlsafe(16))
    small = services.project_create(user=manager, name="GoEmotions", labels=demo_labels(), retrain_every=1_000_000)
    services.member_add(project=small, username=annotator.username, role="annotator")

    labels = read_labels(args.labels_tsv)
    with watch("create_gnd_labels"):
        large = services.project_create(
            user=manager, name="GND", labels=[name for name, _ in labels], retrain_every=1_000_000
        )
        services.member_add(project=large, username=annotator.username, role="annotator")
        frequency = dict(labels)
        rows = list(Label.objects.filter(project=large))
        for label in rows:
            label.frequency = frequency[label.name]
        Label.objects.bulk_update(rows, ["frequency"], batch_size=2000)

    docs = read_documents(args.documents, args.docs)
    with watch("import_documents"):
        services.documents_import(
            project=large,
            user=manager,
            records=[
                ImportRecord(line=i, external_id=d["id"], text=d["text"], labels=None) for i, d in enumerate(docs)
            ],
        )
    gold = {d["id"]: d["labels"] for d in docs}
    with watch("fill_queue"):
        label_ids = np.array(list(Label.objects.filter(project=large).order_by("id").values_list("id", flat=True)))
        counts = (
            np.array(
                [
                    frequency[n]
                    for n in Label.objects.filter(project=large).order_by("id").values_list("name", flat=True)
                ],
                dtype=np.float64,
            )
            + 1.0
        )
        rng = np.random.default_rng(args.seed)
        doc_ids = list(Document.objects.filter(project=large).order_by("id").values_list("id", flat=True))
        with transaction.atomic():
            version = ModelVersion.objects.create(
                project=large,
                number=1,
                is_serving=True,
                artifact_path=f"projects/{large.pk}/models/bench-v1",
                config={"threshold": 0.3, "mean_cardinality": 3.6},
                n_annotations=0,
                n_labels=len(label_ids),
                data_cutoff=timezone.now(),
                device="cpu",
            )
            items = []
            for doc_id in tqdm(doc_ids, desc="queue with 50-label shortlists", unit="doc"):
                top = rng.choice(len(label_ids), size=KEPT_SHORTLIST, replace=False, p=counts / counts.sum())
                probs = np.sort(rng.beta(0.5, 3.0, size=KEPT_SHORTLIST))[::-1]
                items.append(
                    QueueItem(
                        project=large,
                        document_id=doc_id,
                        model_version=version,
                        strategy=large.strategy,
                        score=float(rng.uniform(0, 1)),
                        suggestions=[[int(label_ids[j]), round(float(p), 4)] for j, p in zip(top, probs, strict=True)],
                    )
                )
            QueueItem.objects.bulk_create(items, batch_size=1000)
    small_docs = services.documents_import(
        project=small,
        user=manager,
        records=[ImportRecord(line=1, external_id="one", text="What a lovely day, thank you!", labels=None)],
    )
    del small_docs
    return {
        "annotator_id": annotator.pk,
        "projects": {"GoEmotions": small.pk, "GND": large.pk},
        "labels": {"GoEmotions": 28, "GND": len(labels)},
        "names": {"GoEmotions": [x["name"] for x in demo_labels()], "GND": [name for name, _ in labels]},
        "weights": {"GoEmotions": [1] * 28, "GND": [count + 1 for _, count in labels]},
        "gold": gold,
    }


def measure(args: argparse.Namespace, built: dict[str, Any]) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import close_old_connections
    from rest_framework.test import APIClient
    from tqdm import tqdm

    from annotator.models import Document

    client = APIClient()
    client.force_login(get_user_model().objects.get(pk=built["annotator_id"]))
    rng = random.Random(args.seed)

    def timed(call) -> tuple[Any, float]:
        close_old_connections()
        started = time.perf_counter()
        response = call()
        return response, (time.perf_counter() - started) * 1000

    results: dict[str, Any] = {"search": {}, "cycle": {}}
    for project, project_id in built["projects"].items():
        document = Document.objects.filter(project_id=project_id).order_by("id").values_list("id", flat=True).first()
        queries = typed_queries(built["names"][project], built["weights"][project], args.warmup + args.queries, rng)
        latencies, hits, found_ki = [], [], None
        base = f"/api/v1/projects/{project_id}/labels/"
        for i, query in enumerate(tqdm(queries, desc=f"search {project}", unit="query")):
            params = {"q": query, "limit": 15, "document": document}
            response, ms = timed(lambda url=base, p=params: client.get(url, p))
            if response.status_code != 200:
                raise RuntimeError(f"search answered {response.status_code}: {response.content[:300]!r}")
            body = response.json()
            if query == "kunstliche int":
                found_ki = [x["name"] for x in body][:5]
            if i >= args.warmup:
                latencies.append(ms)
                hits.append(len(body))
        results["search"][project] = {
            "latency_ms": summary(latencies),
            "results_per_query": summary(hits),
            "kunstliche_int_top5": found_ki,
            "sample_queries": queries[:20],
        }

    base = f"/api/v1/projects/{built['projects']['GND']}"
    samples: dict[str, list[float]] = {"next": [], "submit": []}
    for i in tqdm(range(args.warmup + args.cycles), desc="next -> submit (GND)", unit="cycle"):
        served, ms_next = timed(lambda: client.get(f"{base}/next/"))
        if served.status_code != 200:
            raise RuntimeError(f"`next` answered {served.status_code}: {served.content[:300]!r}")
        body = served.json()
        shown = [s["label"] for s in body["suggestions"]]
        payload = {"document": body["document"]["id"], "labels": shown[:2], "rejected": shown[2:3], "seconds_spent": 9}
        answer, ms_submit = timed(lambda p=payload: client.post(f"{base}/annotations/", p, format="json"))
        if answer.status_code != 201:
            raise RuntimeError(f"submit answered {answer.status_code}: {answer.content[:300]!r}")
        if i >= args.warmup:
            samples["next"].append(ms_next)
            samples["submit"].append(ms_submit)
    results["cycle"] = {name: summary(values) for name, values in samples.items()}
    results["page_weight"] = page_weight(client, built["projects"]["GND"])
    close_old_connections()
    return results


def page_weight(client: Any, project_id: int) -> dict[str, Any]:
    """Bytes of the annotate page: its HTML and the static JS and CSS it references (raw and gzip -6)."""
    import re

    from django.contrib.staticfiles import finders

    html = client.get(f"/projects/{project_id}/annotate/").content
    parts = {"html": html}
    for path in re.findall(rb'(?:src|href)="/static/([^"]+\.(?:js|css))"', html):
        found = finders.find(path.decode())
        if found:
            parts[path.decode()] = Path(found).read_bytes()
    return {
        "parts": {name: {"bytes": len(body), "gzip": len(gzip.compress(body, 6))} for name, body in parts.items()},
        "total_bytes": sum(len(body) for body in parts.values()),
        "total_gzip": sum(len(gzip.compress(body, 6)) for body in parts.values()),
    }


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    data_dir = Path(tempfile.mkdtemp(prefix="alabel-bench-annotate-"))
    watch = Stopwatch()
    try:
        with throwaway_database(
            database_url=args.database_url, data_dir=data_dir, pg_name=args.pg_name, keep=args.keep
        ) as url:
            django_setup(
                DATABASE_URL=url,
                ALABEL_DATA_DIR=str(data_dir),
                DJANGO_ALLOWED_HOSTS="testserver",
                CELERY_BROKER_URL="memory://localhost/",  # jobs the import requests go nowhere; no worker needed
            )
            from django.core.management import call_command
            from django.db import connection

            with watch("migrate"):
                call_command("migrate", interactive=False, verbosity=0)
            db = database_info()
            print(f"database: {db['vendor']} {db['version']} ({'temp folder' if not is_postgres(url) else url})")
            load_before = os.getloadavg()
            built = build(args, watch)
            if db["vendor"] == "postgresql":  # autovacuum would have analyzed the fresh tables within a minute
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE")
            with watch("measure"):
                measured = measure(args, built)
            load_after = os.getloadavg()
            software = software_info()
    finally:
        if args.keep:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)

    print()
    rows = []
    for project in ("GoEmotions", "GND"):
        lat = measured["search"][project]["latency_ms"]
        rows.append(
            [f"label search, {built['labels'][project]:,} labels", lat["n"], lat["p50"], lat["p95"], lat["max"]]
        )
    for name, what in (("next", "GET next/ (GND, 50-label shortlist)"), ("submit", "POST annotations/ (GND)")):
        lat = measured["cycle"][name]
        rows.append([what, lat["n"], lat["p50"], lat["p95"], lat["max"]])
    print(f"{db['vendor']} {db['version']}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(table(["request", "n", "p50 ms", "p95 ms", "max ms"], rows))
    print(f'"kunstliche int" top 5 at 41,218 labels: {measured["search"]["GND"]["kunstliche_int_top5"]}')
    weight = measured["page_weight"]
    print()
    print(
        table(
            ["part", "bytes", "gzip bytes"],
            [[n, p["bytes"], p["gzip"]] for n, p in weight["parts"].items()]
            + [["total", weight["total_bytes"], weight["total_gzip"]]],
        )
    )
    print(f"setup seconds: {watch.seconds}")
    payload = {
        **header("annotate", {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}),
        "database": db,
        "software": software,
        "load_average": {"before": load_before, "after": load_after},
        "setup_seconds": watch.seconds,
        **measured,
    }
    out = args.out or RESULTS_DIR / f"annotate-{db['vendor']}.json"
    print(f"wrote {write_json(out, payload)}")


if __name__ == "__main__":
    main()
