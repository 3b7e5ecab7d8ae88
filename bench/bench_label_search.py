"""Label search relevance and speed at 41,218 labels (issue 17): the ranking before and after, on the same queries.

What it builds, in a throw-away database (SQLite file in a temp folder, or a dedicated PostgreSQL database created
from the admin URL given with --database-url and dropped at the end): one project with the 41,218 tibkat-gnd subject
headings (labels.tsv), each with its frequency in the tibkat-gnd train split as `Label.frequency` (what
`services.labels_recount` keeps current in a project in full swing).

Queries, from the first --records records of the tibkat-gnd dev split: for each gold label, what an expert types for
it:

- "first word": the gold label's first word, lower-case, as typed ("künstliche" for "Künstliche Intelligenz");
- "transliterated": the same for the gold labels whose first word has an umlaut or ß, typed without them
  ("kuenstliche", "strasse"): what an expert types on a keyboard without umlauts;
- "english": the gold label's English translation, for the 261 of those records' 286 gold labels that have one in
  bench/data/tibkat-gnd-english.tsv (written by hand before any measurement, never changed after; the GND's own
  English equivalents are not in the data set).

For each query the rank of the gold label among the first 10 results: MRR@10, hit@1 and hit@10, for the ranking of
the commit before issue 17 (`label_search_before`: a verbatim copy of it, scored labels first, then exact, then
frequency, then prefix, then name) and for `annotator.selectors.labels.label_search` now (textual only, what the
page asks first). Speed: the wall time of each call (in-process, after `close_old_connections()`, as
`request_started` does), p50 / p95, and of the page's request `GET labels/?q=...&limit=15` through the Django stack
(APIClient) for the new search.

The semantic fallback (`--answers`, default 0,500,2000,5000; empty skips it): the first max(--answers) train records
are imported as documents and the project's encode job runs in this process (MiniLM on this CPU embeds the documents
and the 41,218 names: minutes), which builds the label index from the names alone (0 answers). Then, for each N, the
index is rebuilt by `ml.label_index_build` as the platform does after a model is published, with the first N
records' gold labels as the answers (each answered label gains the centroid of its documents), and every query set
is searched with `semantic=True` (text first, the fallback fills the rest), with its latency.

    .venv/bin/python bench/bench_label_search.py                      # SQLite
    .venv/bin/python bench/bench_label_search.py --database-url postgres://postgres@127.0.0.1:5432/postgres

Prints Markdown tables and writes bench/results/label-search-<vendor>.json.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (
    RESULTS_DIR,
    Stopwatch,
    database_info,
    django_setup,
    header,
    software_info,
    summary,
    table,
    throwaway_database,
    write_json,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "tibkat-gnd"
ENGLISH = Path(__file__).resolve().parent / "data" / "tibkat-gnd-english.tsv"
UMLAUTS = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="PostgreSQL admin URL; default: SQLite in a temp folder")
    parser.add_argument("--pg-name", default="alabel_bench_label_search", help="PostgreSQL database to create")
    parser.add_argument("--labels-tsv", type=Path, default=SHARED / "labels.tsv", help="tibkat-gnd labels.tsv")
    parser.add_argument("--dev", type=Path, default=SHARED / "dev.jsonl.gz", help="tibkat-gnd dev.jsonl.gz")
    parser.add_argument("--records", type=int, default=300, help="dev records whose gold labels are queried")
    parser.add_argument("--limit", type=int, default=10, help="results per query (MRR@limit)")
    parser.add_argument("--train", type=Path, default=SHARED / "train.jsonl.gz", help="tibkat-gnd train.jsonl.gz")
    parser.add_argument("--answers", default="0,500,2000,5000", help="answered documents behind the semantic index")
    parser.add_argument("--keep", action="store_true", help="keep the database and the temp folder")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/...)")
    return parser.parse_args()


def read_labels(path: Path) -> list[tuple[str, int]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [(row["label"], int(row["train"])) for row in csv.DictReader(handle, delimiter="\t")]


def read_records(path: Path, limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if len(rows) >= limit:
                break
            rows.append(json.loads(line))
    return rows


def read_gold(path: Path, limit: int) -> list[list[str]]:
    return [record["labels"] for record in read_records(path, limit)]


def read_english(path: Path = ENGLISH) -> dict[str, str]:
    with open(path, encoding="utf-8") as handle:
        rows = [line.rstrip("\n").split("\t") for line in handle if line.strip() and not line.startswith("#")]
    return {row[0]: row[1] for row in rows}


def first_word(name: str) -> str:
    return name.split()[0].lower()


def transliterated(word: str) -> str:
    return "".join(UMLAUTS.get(ch, ch) for ch in word)


def query_sets(gold: list[list[str]], names: set[str]) -> dict[str, list[tuple[str, str]]]:
    """{set name: [(query, gold label)]}, one entry per (record, gold label) present in the label set."""
    pairs = [(label, first_word(label)) for labels in gold for label in labels if label in names]
    english = read_english()
    return {
        "first word": [(word, label) for label, word in pairs],
        "transliterated": [(transliterated(w), label) for label, w in pairs if any(ch in UMLAUTS for ch in w)],
        "english": [(english[label], label) for label, _ in pairs if label in english],
    }


def label_search_before(*, project, query: str, limit: int = 20, scores: dict[int, float] | None = None) -> list:
    """annotator.selectors.labels.label_search as of the commit before issue 17 (ec3333f), verbatim but for the
    returned rows (id, name): every query word a substring of the folded name; scored labels first, then an exact
    match, then frequency, then prefix matches, then name."""
    from django.db.models import Case, IntegerField, Value, When

    from annotator.models import Label
    from annotator.text import fold

    limit = max(1, min(int(limit), 100))
    key = fold(query or "")
    scores = scores or {}
    base = Label.objects.filter(project=project)
    for word in key.split():
        base = base.filter(search_key__contains=word)
    fields = ("id", "name")
    hits: list[tuple[int, str]] = []
    if scores:
        scored = list(base.filter(pk__in=list(scores)).values_list(*fields))
        scored.sort(key=lambda row: (-scores[row[0]], row[1]))
        hits = scored[:limit]
    if len(hits) >= limit:
        return hits
    rest = base.exclude(pk__in=[hit[0] for hit in hits]) if hits else base
    if key:
        rest = rest.annotate(
            exact=Case(When(search_key=key, then=Value(1)), default=Value(0), output_field=IntegerField()),
            prefix=Case(When(search_key__startswith=key, then=Value(1)), default=Value(0), output_field=IntegerField()),
        ).order_by("-exact", "-frequency", "-prefix", "search_key", "id")
    else:
        rest = rest.order_by("-frequency", "search_key", "id")
    return hits + list(rest.values_list(*fields)[: limit - len(hits)])


def build(args: argparse.Namespace, watch: Stopwatch) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.db import transaction

    from annotator import services
    from annotator.models import Label

    manager = get_user_model().objects.create_user(username="manager", password=secrets.token_urlsafe(16))
    manager.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    manager = get_user_model().objects.get(pk=manager.pk)
    labels = read_labels(args.labels_tsv)
    with watch("create_labels"):
        project = services.project_create(
            user=manager, name="GND", labels=[name for name, _ in labels], retrain_every=1_000_000
        )
    with watch("set_frequencies"), transaction.atomic():
        frequency = dict(labels)
        rows = list(Label.objects.filter(project=project).only("id", "name"))
        for label in rows:
            label.frequency = frequency[label.name]
        Label.objects.bulk_update(rows, ["frequency"], batch_size=5000)
    return {"project_id": project.pk, "manager_id": manager.pk, "names": {name for name, _ in labels}}


def rank_of(names: list[str], gold: str) -> int | None:
    return names.index(gold) + 1 if gold in names else None


def relevance(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    return {
        "queries": n,
        "mrr": sum(1 / r for r in ranks if r) / n if n else float("nan"),
        "hit1": sum(1 for r in ranks if r == 1) / n if n else float("nan"),
        "hit10": sum(1 for r in ranks if r) / n if n else float("nan"),
        "no_result_or_miss": sum(1 for r in ranks if r is None),
    }


def measure(args: argparse.Namespace, built: dict[str, Any]) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import close_old_connections
    from rest_framework.test import APIClient
    from tqdm import tqdm

    from annotator.models import Project
    from annotator.selectors.labels import label_search

    project = Project.objects.get(pk=built["project_id"])
    sets = query_sets(read_gold(args.dev, args.records), built["names"])

    def new(query: str) -> list[str]:
        return [hit.name for hit in label_search(project=project, query=query, limit=args.limit)]

    def old(query: str) -> list[str]:
        return [name for _, name in label_search_before(project=project, query=query, limit=args.limit)]

    searches: dict[str, Callable[[str], list[str]]] = {"before": old, "after": new}
    for search in searches.values():  # warm the connection and the caches
        search("kunst")
    results: dict[str, Any] = {"relevance": {}, "latency_ms": {}, "examples": {}}
    for set_name, pairs in sets.items():
        ranks: dict[str, list[int | None]] = {version: [] for version in searches}
        latencies: dict[str, list[float]] = {version: [] for version in searches}
        for i, (query, gold) in enumerate(tqdm(pairs, desc=set_name, unit="query")):
            # Interleaved, in alternating order: the shared machine's load falls on both rankings alike.
            for version in list(searches)[:: 1 if i % 2 == 0 else -1]:
                close_old_connections()
                started = time.perf_counter()
                names = searches[version](query)
                latencies[version].append((time.perf_counter() - started) * 1000)
                ranks[version].append(rank_of(names, gold))
        for version in searches:
            results["relevance"][f"{set_name}/{version}"] = relevance(ranks[version])
            results["latency_ms"][f"{set_name}/{version}"] = summary(latencies[version])
    for query in ("feminismus", "kohlenwasserstoffe", "kuenstliche", "non-profit", "desintegration", "approval"):
        results["examples"][query] = {version: search(query)[:3] for version, search in searches.items()}

    client = APIClient()
    client.force_login(get_user_model().objects.get(pk=built["manager_id"]))
    url = f"/api/v1/projects/{project.pk}/labels/"
    latencies = []
    for query, _ in tqdm(sets["first word"], desc="GET labels/", unit="query"):
        close_old_connections()
        started = time.perf_counter()
        response = client.get(url, {"q": query, "limit": 15})
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"search answered {response.status_code}: {response.content[:300]!r}")
    results["latency_ms"]["GET labels/?limit=15 (after)"] = summary(latencies)
    answers = [int(n) for n in args.answers.split(",") if n.strip()]
    if answers:
        results["semantic"] = meaning(args, project, sets, answers)
    else:
        results["latency_ms"]["semantic fallback"] = semantic_cost(project, [q for q, _ in sets["first word"]])
    return results


def meaning(args: argparse.Namespace, project, sets: dict[str, list[tuple[str, str]]], answers: list[int]) -> dict:
    """The semantic fallback's relevance with the label index of N answered documents, for each N in `answers`."""
    from django.contrib.auth import get_user_model
    from django.db import close_old_connections
    from tqdm import tqdm

    from annotator import ml, services
    from annotator.importing import ImportRecord
    from annotator.models import Job, Label
    from annotator.selectors.labels import label_search, label_search_texts

    records = read_records(args.train, max(answers))
    user = get_user_model().objects.get(username="manager")
    services.documents_import(
        project=project,
        user=user,
        records=[ImportRecord(i + 1, str(r["id"]), r["text"], None) for i, r in enumerate(records)],
    )
    job = Job.objects.filter(project=project, kind=Job.Kind.ENCODE, status=Job.Status.PENDING).get()
    started = time.perf_counter()
    services.encode_run(job_id=job.pk)  # embeds the documents and the names, builds the index of the names
    encode_seconds = time.perf_counter() - started
    job.refresh_from_db()
    if job.status != Job.Status.SUCCEEDED:
        raise RuntimeError(f"the encode job {job.status}: {job.error}")
    label_ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
    doc_ids = dict(project.documents.values_list("external_id", "id"))
    documents = [doc_ids[str(r["id"])] for r in records]
    rows = [[label_ids[name] for name in r["labels"] if name in label_ids] for r in records]
    texts = label_search_texts(project.pk)
    out: dict[str, Any] = {"encode_seconds": encode_seconds, "documents_embedded": len(records), "by_answers": {}}
    for n in answers:
        started = time.perf_counter()
        ml.label_index_build(project.pk, texts, documents=(documents[:n], rows[:n]))
        build_seconds = time.perf_counter() - started
        point: dict[str, Any] = {"index_build_seconds": build_seconds, "labels_with_documents": 0}
        point["labels_with_documents"] = len({label for row in rows[:n] for label in row})
        for set_name, pairs in sets.items():
            ranks, latencies = [], []
            for query, gold in tqdm(pairs, desc=f"{set_name} @ {n} answers", unit="query"):
                close_old_connections()
                begun = time.perf_counter()
                hits = label_search(project=project, query=query, limit=args.limit, semantic=True)
                latencies.append((time.perf_counter() - begun) * 1000)
                ranks.append(rank_of([hit.name for hit in hits], gold))
            point[set_name] = {**relevance(ranks), "latency_ms": summary(latencies)}
        out["by_answers"][str(n)] = point
    return out


def semantic_cost(project, queries: list[str]) -> dict[str, float]:
    """The cost of the semantic fallback's request at 41,218 labels: the query embedded by MiniLM on this CPU, one
    product with the index, the hits read back. The index here holds random unit vectors (embedding the 41,218
    names takes minutes of CPU; the cost of a search does not depend on the values) and the similarity floor is off,
    so every query reads 10 labels back. Relevance of the fallback is not measured: the GND names are German, the
    bundled MiniLM is an English model."""
    import numpy as np
    from django.db import close_old_connections

    from annotator import ml
    from annotator.models import Label
    from annotator.selectors import labels as selector
    from learner.label_index import LabelIndex

    ids = np.array(list(Label.objects.filter(project=project).values_list("id", flat=True)), dtype=np.int64)
    vectors = np.random.default_rng(0).standard_normal((len(ids), 384)).astype(np.float32)  # (L, 384)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    LabelIndex(ids, vectors, ml.fingerprint(None)).save(ml.label_index_folder(project.pk))
    floor, selector.SEMANTIC_MIN_SIMILARITY = selector.SEMANTIC_MIN_SIMILARITY, -1.0
    try:
        selector.label_search_semantic(project=project, query="warm up", limit=10)  # loads the encoder once
        latencies = []
        for query in queries:
            close_old_connections()
            started = time.perf_counter()
            hits = selector.label_search_semantic(project=project, query=query, limit=10)
            latencies.append((time.perf_counter() - started) * 1000)
            if len(hits) != 10:
                raise RuntimeError(f"the semantic search gave {len(hits)} hits for {query!r}")
    finally:
        selector.SEMANTIC_MIN_SIMILARITY = floor
    return summary(latencies)


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    data_dir = Path(tempfile.mkdtemp(prefix="alabel-bench-label-search-"))
    watch = Stopwatch()
    try:
        with throwaway_database(
            database_url=args.database_url, data_dir=data_dir, pg_name=args.pg_name, keep=args.keep
        ) as url:
            django_setup(
                DATABASE_URL=url,
                ALABEL_DATA_DIR=str(data_dir),
                DJANGO_ALLOWED_HOSTS="testserver",
                CELERY_BROKER_URL="memory://localhost/",  # the encode job the labels request goes nowhere
            )
            from django.core.management import call_command
            from django.db import connection

            with watch("migrate"):
                call_command("migrate", interactive=False, verbosity=0)
            db = database_info()
            built = build(args, watch)
            if db["vendor"] == "postgresql":  # autovacuum would have analyzed the fresh tables within a minute
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE")
            with watch("measure"):
                measured = measure(args, built)
            software = software_info()
    finally:
        if args.keep:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)

    print(f"\n{db['vendor']} {db['version']}, {len(built['names']):,} labels, {args.records} dev records")
    rows = []
    for key, rel in measured["relevance"].items():
        lat = measured["latency_ms"][key]
        set_name, version = key.split("/")
        rows.append([set_name, version, rel["queries"], rel["mrr"], rel["hit1"], rel["hit10"], lat["p50"], lat["p95"]])
    print(table(["queries", "ranking", "n", "MRR@10", "hit@1", "hit@10", "p50 ms", "p95 ms"], rows))
    lat = measured["latency_ms"]["GET labels/?limit=15 (after)"]
    print(
        f"GET labels/?q=<first word>&limit=15 (after): n {lat['n']}, p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms"
    )
    if "semantic" in measured:
        rows = []
        for n, point in measured["semantic"]["by_answers"].items():
            for set_name in ("first word", "transliterated", "english"):
                rel, lat = point[set_name], point[set_name]["latency_ms"]
                rows.append([n, set_name, rel["queries"], rel["mrr"], rel["hit1"], rel["hit10"]])
                rows[-1] += [lat["p50"], lat["p95"]]
        print("\ntext + semantic fallback, label index with N answered train documents:")
        print(table(["answers", "queries", "n", "MRR@10", "hit@1", "hit@10", "p50 ms", "p95 ms"], rows))
    else:
        lat = measured["latency_ms"]["semantic fallback"]
        print(f"semantic fallback (41,218-row index): p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms")
    for query, shown in measured["examples"].items():
        print(f"{query!r}: before {shown['before']}, after {shown['after']}")
    payload = {
        **header("label_search", {k: str(v) for k, v in vars(args).items()}),
        "database": db,
        "software": software,
        "setup_seconds": watch.seconds,
        **measured,
    }
    out = args.out or RESULTS_DIR / f"label-search-{db['vendor']}.json"
    print(f"wrote {write_json(out, payload)}")


if __name__ == "__main__":
    main()
