"""Pool scoring on the CPU: `scoring_run` over a large unlabelled pool, at 28 and at 41,218 labels, and its memory.

What it builds, per label space, in a throw-away database (SQLite file in a temp folder, or a dedicated PostgreSQL
database created from the admin URL given with --database-url and dropped at the end) and a temp data folder:

- goemotions: a project with the 28 GoEmotions labels (flat head over TF-IDF + MiniLM embeddings); tibkat: one
  with the 41,218 tibkat-gnd subject headings (tree head over TF-IDF);
- --train-docs labelled documents (the first records of the train split, imported with their gold labels: seed
  answers, so they are not in the pool), then --docs unlabelled documents (the next records) plus the evaluation
  set's 200, imported through `services.documents_import` (which draws the evaluation set among them). GoEmotions
  has 54,263 records in all: when the pool needs more, its records are repeated with new external ids (the output
  says how many texts are distinct);
- every document's embedding put into the project's EmbeddingStore (`annotator.ml.embedding_store`), as the encode
  job would: from the learner's embedding cache (--cache-dir, per input file and encoder fingerprint, as
  `learner.benchmark` and `learner.simulate` write it) where it holds the file; otherwise GoEmotions texts are
  encoded with the bundled MiniLM (a whole split file is then added to the cache) and tibkat-gnd documents get
  random unit vectors (the tree head does not read embeddings; only the k-means batch rule clusters them);
- one fast-tier model (`annotator.ml.train`) trained on the labelled documents, saved under the project's artifacts
  folder, and its ModelVersion row (serving) with the fields `training_run` publishes.

Then it times `annotator.services.scoring.scoring_run(job_id=...)` on a new SCORE job: --repeats times in the
process that built the project (the first run loads the model from disk, like a cold worker), and once in a fresh
subprocess that does only that: Django setup, the model loaded through `annotator.ml.load_model` (the worker's
per-process cache, which `scoring_run` then hits), the baseline memory taken, `scoring_run`. Its memory: resident
set sampled every --sample-interval seconds (psutil, or /proc/self/status), the kernel's high-water mark (VmHWM) and
`resource.getrusage(RUSAGE_SELF).ru_maxrss`. Linux carries ru_maxrss over exec from the process that started the
child, so this script's main process only orchestrates (it stays small: the building and training run in a child
too) and the figure is the scoring process's own. While a scoring job runs, the main process polls its job row:
the progress reports (`Heartbeat`, at most one per second) give the break-down in the third table.

    .venv/bin/python bench/bench_scoring.py                      # SQLite
    .venv/bin/python bench/bench_scoring.py --database-url postgres://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_scoring.py --docs 3000 --train-docs 1000        # a quick check

Prints Markdown tables and writes bench/results/scoring-<vendor>.json. The temp folder and the PostgreSQL database
are removed at the end, also on an error or Ctrl-C (unless --keep).
"""

from __future__ import annotations

import argparse
import csv
import gc
import gzip
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    RESULTS_DIR,
    ROOT,
    database_info,
    django_setup,
    header,
    is_postgres,
    software_info,
    table,
    throwaway_database,
    write_json,
)

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SPACES: dict[str, dict[str, Any]] = {
    "goemotions": {"title": "GoEmotions", "folder": DATASETS / "goemotions", "splits": ("train", "dev", "test")},
    "tibkat": {"title": "tibkat-gnd", "folder": DATASETS / "tibkat-gnd", "splits": ("train", "dev")},
}
POLL_SECONDS = 0.1  # how often the main process reads the running scoring job's row
MIB = 1024 * 1024
PATH_ARGS = {"cache_dir", "goemotions_data", "tibkat_data", "out"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL admin URL; default: SQLite in a temp folder")
    parser.add_argument("--pg-name", default="alabel_bench_scoring", help="PostgreSQL database to create and drop")
    parser.add_argument(
        "--labels", default="goemotions,tibkat", help="label spaces, comma-separated: goemotions,tibkat"
    )
    parser.add_argument("--docs", type=int, default=100_000, help="unlabelled documents in the pool")
    parser.add_argument("--train-docs", type=int, default=10_000, help="labelled documents the model is trained on")
    parser.add_argument("--eval-size", type=int, default=200, help="the project's evaluation set (scored as well)")
    parser.add_argument("--queue-size", type=int, default=200, help="the project's queue size")
    parser.add_argument("--strategy", default="default", help="the project's strategy (default: the measured one)")
    parser.add_argument("--repeats", type=int, default=1, help="in-process scoring runs (the first loads the model)")
    parser.add_argument("--no-subprocess", action="store_true", help="skip the fresh-process run (no memory figure)")
    parser.add_argument("--sample-interval", type=float, default=0.1, help="seconds between RSS samples")
    parser.add_argument("--embeddings", choices=["auto", "random"], default="auto", help="auto: cached or encoded")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "benchmark-cache", help="embedding cache")
    parser.add_argument("--goemotions-data", type=Path, default=SPACES["goemotions"]["folder"])
    parser.add_argument("--tibkat-data", type=Path, default=SPACES["tibkat"]["folder"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-prior", action="store_true", help="train without the label-name prior (the platform blends it by default)"
    )
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/scoring-<vendor>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and the PostgreSQL database")
    # internal: the child processes
    parser.add_argument("--phase", choices=["prepare", "score"], help=argparse.SUPPRESS)
    parser.add_argument("--space", help=argparse.SUPPRESS)
    parser.add_argument("--job-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--args-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.spaces = [name.strip() for name in args.labels.split(",") if name.strip()]
    unknown = [name for name in args.spaces if name not in SPACES]
    if unknown or not args.spaces:
        parser.error(f"--labels: unknown label space(s) {unknown}; choose from {', '.join(SPACES)}")
    if args.docs < 1 or args.train_docs < 2 or args.repeats < 0 or args.sample_interval <= 0:
        parser.error("--docs must be >= 1, --train-docs >= 2, --repeats >= 0, --sample-interval > 0")
    return args


# --- memory -------------------------------------------------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_bytes() -> int:
    """This process's resident set now (psutil when installed, else /proc/self/status VmRSS)."""
    try:
        import psutil
    except ImportError:
        return (_status_kib("VmRSS") or 0) * 1024
    return int(psutil.Process().memory_info().rss)


def memory_snapshot() -> dict[str, float | None]:
    """MiB: the resident set now, its high-water mark (VmHWM) and ru_maxrss (KiB on Linux)."""
    hwm = _status_kib("VmHWM")
    return {
        "rss_mib": round(current_rss_bytes() / MIB, 1),
        "vm_hwm_mib": None if hwm is None else round(hwm / 1024, 1),
        "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


class RssSampler:
    """A daemon thread that reads the resident set every `interval` seconds until `stop()`."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (seconds since start, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._started = 0.0

    def _run(self) -> None:
        while True:
            self.samples.append((time.perf_counter() - self._started, current_rss_bytes()))
            if self._stop.wait(self.interval):
                return

    def start(self) -> RssSampler:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter() - self._started, current_rss_bytes()))

    def peak_mib(self) -> float:
        return round(max(rss for _, rss in self.samples) / MIB, 1)

    def timeline(self, points: int = 200) -> list[list[float]]:
        """At most `points` [seconds, MiB] pairs, each the largest sample of its stretch (the peak stays in)."""
        step = max(1, -(-len(self.samples) // points))
        out = []
        for start in range(0, len(self.samples), step):
            part = self.samples[start : start + step]
            t, rss = max(part, key=lambda sample: sample[1])
            out.append([round(t, 2), round(rss / MIB, 1)])
        return out


# --- data ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    split: str
    row: int  # line of the split file (blank lines skipped, as learner.data.read_jsonl counts)
    id: str
    text: str
    labels: list[str]


def read_records(folder: Path, splits: tuple[str, ...], need: int) -> tuple[list[Record], dict[str, dict[str, Any]]]:
    """The first `need` records of the splits, in order (all of them when there are fewer), and per split how many
    rows were read and whether the file was read to its end."""
    from tqdm import tqdm

    records: list[Record] = []
    read: dict[str, dict[str, Any]] = {}
    with tqdm(total=need, desc=f"reading {folder.name}", unit="record") as bar:
        for split in splits:
            if len(records) >= need:
                break
            path = folder / f"{split}.jsonl.gz"
            row, complete = 0, True
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    if len(records) >= need:
                        complete = False
                        break
                    data = json.loads(line)
                    records.append(Record(split, row, str(data["id"]), data["text"], list(data.get("labels") or [])))
                    row += 1
                    bar.update()
            read[split] = {"path": str(path), "rows": row, "complete": complete}
    return records, read


def label_names(folder: Path) -> list[str]:
    with open(folder / "labels.tsv", encoding="utf-8", newline="") as handle:
        return [row["label"] for row in csv.DictReader(handle, delimiter="\t")]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _random_unit(rows: int, dim: int, seed: int) -> Any:
    import numpy as np

    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)  # (rows, D)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def record_embeddings(
    records: list[Record], read: dict[str, dict[str, Any]], *, needed: bool, args: argparse.Namespace
) -> tuple[Any, list[dict[str, Any]]]:
    """Embeddings (R, D) float32 for the records read, and where each split's came from.

    The learner's cache (`<cache-dir>/embeddings/<encoder fingerprint>/<file sha256>.npy`, rows in file order) is
    used where it holds the file. Otherwise, when the model reads embeddings (`needed`), the texts are encoded with
    the bundled MiniLM: a split read to its end through `learner.benchmark.embed_splits`, which adds the file to the
    cache; a part of a split on its own (not cached). When it does not, or with --embeddings random: random unit
    vectors.
    """
    import numpy as np

    from learner.config import EncoderConfig
    from learner.encoder import Encoder, encoder_fingerprint

    fingerprint = encoder_fingerprint(EncoderConfig())
    dim = 384  # all-MiniLM-L6-v2
    blocks: dict[str, Any] = {}
    sources: list[dict[str, Any]] = []
    encode_whole: list[str] = []
    for number, (split, info) in enumerate(read.items()):
        path, rows = Path(info["path"]), info["rows"]
        cache_file = args.cache_dir / "embeddings" / fingerprint / f"{_file_sha256(path)}.npy"
        source: dict[str, Any] = {"split": split, "rows": rows}
        if args.embeddings == "auto" and cache_file.is_file():
            cached = np.load(cache_file, mmap_mode="r")
            if cached.ndim == 2 and cached.shape[0] >= rows and (cached.shape[0] == rows or not info["complete"]):
                blocks[split] = np.asarray(cached[:rows], dtype=np.float32)
                sources.append({**source, "source": "learner cache", "file": str(cache_file)})
                continue
        if args.embeddings == "auto" and needed and info["complete"]:
            encode_whole.append(split)
            continue
        if args.embeddings == "auto" and needed:
            started = time.perf_counter()
            encoder = Encoder.load(EncoderConfig())
            part = [record.text for record in records if record.split == split]
            blocks[split] = encoder.encode(part, progress=True)  # (rows, D)
            seconds = round(time.perf_counter() - started, 1)
            sources.append({**source, "source": f"encoded (MiniLM, CPU; not cached: part of the file; {seconds} s)"})
            continue
        blocks[split] = _random_unit(rows, dim, args.seed + number)
        why = "--embeddings random" if args.embeddings == "random" else "not cached; the tree head does not read them"
        sources.append({**source, "source": f"random unit vectors ({why})"})
    if encode_whole:
        from learner.benchmark import embed_splits, load_split

        started = time.perf_counter()
        splits = [load_split(split, read[split]["path"]) for split in encode_whole]
        found, _ = embed_splits(splits, encoder_path=None, cache_dir=args.cache_dir, progress=True)
        seconds = round(time.perf_counter() - started, 1)
        for split in encode_whole:
            blocks[split] = found[split]
            together = f" (with {', '.join(encode_whole)}: {seconds} s)" if split == encode_whole[0] else ""
            sources.append(
                {"split": split, "rows": read[split]["rows"], "source": f"encoded (MiniLM, CPU) and cached{together}"}
            )
    order = {split: number for number, split in enumerate(read)}
    sources.sort(key=lambda source: order[source["split"]])
    vectors = np.concatenate([blocks[split] for split in read])  # (R, D), records are in split order
    if vectors.shape[0] != len(records):
        raise RuntimeError(f"{vectors.shape[0]} embeddings for {len(records)} records")
    return vectors, sources


# --- the child that builds the project and scores in process ----------------------------------------------------
def phase_prepare(args: argparse.Namespace) -> dict[str, Any]:
    django_setup()
    import numpy as np
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.db import transaction
    from django.db.models import Count
    from django.utils import timezone
    from tqdm import tqdm

    from annotator import ml, services
    from annotator.importing import ImportRecord
    from annotator.models import Document, Job, Label, ModelVersion, QueueItem
    from annotator.selectors import unlabelled_document_ids
    from annotator.services.scoring import scoring_run
    from learner.data import multi_hot

    space = SPACES[args.space]
    folder = args.goemotions_data if args.space == "goemotions" else args.tibkat_data
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    names = label_names(folder)
    need = args.train_docs + args.docs + args.eval_size
    records, read = read_records(folder, space["splits"], need)
    seconds["read_records"] = round(time.perf_counter() - started, 2)
    if len(records) <= args.train_docs:
        raise SystemExit(f"{folder} holds {len(records)} records: none left for the pool after --train-docs")
    rest = list(range(args.train_docs, len(records)))
    pool_plan = [(rest[i % len(rest)], i // len(rest)) for i in range(args.docs + args.eval_size)]  # (record, copy)

    User = get_user_model()
    manager = User.objects.create_user(username=f"bench-{args.space}", password=None)
    manager.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    manager = User.objects.get(pk=manager.pk)
    started = time.perf_counter()
    project = services.project_create(
        user=manager,
        name=f"scoring {space['title']}",
        labels=names,
        retrain_every=1_000_000,  # no training job becomes due: the model is trained here, once
        strategy=args.strategy,
        queue_size=args.queue_size,
        eval_size=args.eval_size,
    )
    seconds["create_project_and_labels"] = round(time.perf_counter() - started, 2)
    known = set(names)
    imports = [
        ImportRecord(
            line=i + 1,
            external_id=f"{records[i].split}:{records[i].id}",
            text=records[i].text,
            labels=[name for name in records[i].labels if name in known],
        )
        for i in tqdm(range(args.train_docs), desc="labelled records", unit="record")
    ]
    for n, (index, copy) in enumerate(tqdm(pool_plan, desc="pool records", unit="record")):
        record = records[index]
        suffix = f"~{copy}" if copy else ""
        imports.append(
            ImportRecord(
                line=args.train_docs + n + 1,
                external_id=f"{record.split}:{record.id}{suffix}",
                text=record.text,
                labels=None,
            )
        )
    started = time.perf_counter()
    services.documents_import(project=project, user=manager, records=imports)
    seconds["import_documents"] = round(time.perf_counter() - started, 2)
    doc_of = dict(Document.objects.filter(project=project).values_list("external_id", "id"))
    record_of_doc = {doc_of[item.external_id]: i for i, item in enumerate(imports)}  # doc id -> import position
    del imports

    started = time.perf_counter()
    labels = list(Label.objects.filter(project=project).order_by("id").values_list("id", "name"))
    model_labels = [name for _, name in labels]
    needed = ml.fast_config(loss=project.loss, seed=1).resolve(len(model_labels)).needs_embeddings
    vectors, sources = record_embeddings(records, read, needed=needed, args=args)
    seconds["embeddings"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    doc_ids = sorted(record_of_doc)

    def record_index(position: int) -> int:
        return position if position < args.train_docs else pool_plan[position - args.train_docs][0]

    rows = np.array([record_index(record_of_doc[doc_id]) for doc_id in doc_ids], dtype=np.int64)
    ml.embedding_store(project.pk).add(doc_ids, vectors[rows])  # (N, D), one write, as encode_run's chunks add up
    Job.objects.filter(project=project, kind=Job.Kind.ENCODE, status__in=Job.ACTIVE).update(
        status=Job.Status.SUCCEEDED,
        progress=1.0,
        message=f"benchmark: {len(doc_ids)} embeddings stored directly",
        finished_at=timezone.now(),
    )
    seconds["embedding_store"] = round(time.perf_counter() - started, 2)

    train_ids = [doc_of[f"{r.split}:{r.id}"] for r in records[: args.train_docs]]
    train_texts = [r.text for r in records[: args.train_docs]]
    train_labels = [[name for name in r.labels if name in known] for r in records[: args.train_docs]]
    Y = multi_hot(train_labels, model_labels)  # (N, L)
    X = ml.embedding_store(project.pk).get(train_ids)  # (N, D)
    prior = None
    if not args.no_prior:  # the label names embedded with the bundled MiniLM, as the platform's encode job does
        from annotator.services.encoding import label_prior

        started = time.perf_counter()
        prior = label_prior(project.pk, encode=True)
        seconds["label_vectors"] = round(time.perf_counter() - started, 2)
    cutoff = timezone.now()
    started = time.perf_counter()
    with tqdm(total=1000, desc=f"training ({len(model_labels):,} labels)", unit="‰") as bar:

        def report(fraction: float) -> None:
            bar.update(max(0, int(fraction * 1000) - bar.n))

        model = ml.train(
            texts=train_texts,
            X=X,
            Y=Y,
            labels=model_labels,
            config=ml.fast_config(loss=project.loss, seed=1),
            prior=prior,
            on_progress=report,
        )
    train_seconds = time.perf_counter() - started
    seconds["train"] = round(train_seconds, 2)
    started = time.perf_counter()
    relative = Path("projects") / str(project.pk) / "models" / "bench-v1"
    model.save(Path(settings.ARTIFACTS_DIR) / relative)
    seconds["save_model"] = round(time.perf_counter() - started, 2)
    rule = model.rules["micro_f1"]
    with transaction.atomic():  # the fields training_run's _publish writes (no evaluation set labelled yet)
        version = ModelVersion.objects.create(
            project=project,
            number=1,
            is_serving=True,
            artifact_path=str(relative),
            metrics=ml.model_metrics(model),
            evaluation={},
            evaluation_per_label=[],
            stop_predictions=[],
            agreement=None,
            config={
                "mode": "full",
                "strategy": ml.resolve_strategy(project.strategy, len(labels))[0],
                "fast_tier": model.config.to_dict(),
                "threshold": rule.threshold,
                "at_least_one": rule.at_least_one,
                "platt": list(model.platt),
                "mean_cardinality": float(Y.sum()) / max(len(train_ids), 1),
                "encoder_fingerprint": ml.fingerprint(),
                "label_prior": ml.prior_info(model),
            },
            n_annotations=len(train_ids),
            n_labels=len(labels),
            data_cutoff=cutoff,
            train_seconds=round(train_seconds, 3),
            device=str(model.train_info.get("device", "")),
        )
    model_info = {
        "head": model.config.head,
        "features": model.config.features,
        "labels": len(model.labels),
        "labels_in_training_data": int((np.asarray(Y.sum(axis=0)).ravel() > 0).sum()),
        "metrics": version.metrics,
        "artifact_mib": round(
            sum(p.stat().st_size for p in (Path(settings.ARTIFACTS_DIR) / relative).rglob("*") if p.is_file()) / MIB,
            1,
        ),
        "strategy": version.config["strategy"],
        "label_prior": model.prior is not None,
    }
    del model, X, Y, train_texts, vectors
    gc.collect()

    pool = unlabelled_document_ids(project=project)
    evaluation = Document.objects.filter(project=project, is_evaluation=True).count()
    runs = []
    for run in range(args.repeats):
        job = Job.objects.create(project=project, kind=Job.Kind.SCORE, reason="benchmark", model_version=version)
        gc.collect()
        started = time.perf_counter()
        scoring_run(job_id=job.pk)
        elapsed = time.perf_counter() - started
        job.refresh_from_db()
        check_scored(job)
        queue = dict(
            QueueItem.objects.filter(project=project).values_list("strategy").annotate(n=Count("id")).order_by()
        )
        runs.append(
            {
                "mode": "in-process" + (", first (loads the model)" if run == 0 else ", model cached"),
                "job_id": job.pk,
                "seconds": round(elapsed, 3),
                "message": job.message,
                "queue_rows": queue,
            }
        )
        print(f"{space['title']}: in-process scoring run {run + 1}: {elapsed:.1f} s ({job.message})", flush=True)
    return {
        "space": args.space,
        "title": space["title"],
        "project_id": project.pk,
        "version_id": version.pk,
        "labels": len(labels),
        "pool_documents": len(pool),
        "evaluation_documents": evaluation,
        "training_documents": len(train_ids),
        "records_read": {split: {k: v for k, v in info.items() if k != "path"} for split, info in read.items()},
        "distinct_pool_texts": min(len(rest), len(pool_plan)),
        "pool_copies": max(copy for _, copy in pool_plan) + 1,
        "embeddings": sources,
        "model": model_info,
        "setup_seconds": seconds,
        "runs": runs,
    }


def check_scored(job: Any) -> None:
    """Raises unless the job scored the pool into the queue and left no other scoring job behind."""
    from annotator.models import Job

    if job.status != Job.Status.SUCCEEDED:
        raise RuntimeError(f"scoring job {job.pk} ended {job.status}: {job.error or job.message}")
    left = Job.objects.filter(project_id=job.project_id, status__in=Job.ACTIVE).exclude(kind=Job.Kind.TRAIN)
    if left.exists() or job.message.startswith("discarded"):
        raise RuntimeError(f"scoring job {job.pk}: {job.message!r}; jobs left active: {list(left)}")


# --- the child that only scores ---------------------------------------------------------------------------------
def phase_score(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    at_start = memory_snapshot()
    django_setup()
    from django.conf import settings
    from django.db.models import Count

    from annotator import ml
    from annotator.models import Job, QueueItem
    from annotator.services.scoring import scoring_run

    after_setup = memory_snapshot()
    setup_seconds = time.perf_counter() - started
    job = Job.objects.select_related("model_version").get(pk=args.job_id)
    if job.model_version is None:
        raise RuntimeError(f"job {job.pk} names no model version")
    path = str(Path(settings.ARTIFACTS_DIR) / job.model_version.artifact_path)  # the key scoring_run's load uses
    started = time.perf_counter()
    ml.load_model(path)
    load_seconds = time.perf_counter() - started
    gc.collect()
    baseline = memory_snapshot()
    sampler = RssSampler(args.sample_interval).start()
    started = time.perf_counter()
    try:
        scoring_run(job_id=job.pk)
    finally:
        elapsed = time.perf_counter() - started
        sampler.stop()
    final = memory_snapshot()
    cache = ml.load_model.cache_info()
    job.refresh_from_db()
    check_scored(job)
    queue = dict(
        QueueItem.objects.filter(project_id=job.project_id).values_list("strategy").annotate(n=Count("id")).order_by()
    )
    peak = max(sampler.peak_mib(), final["vm_hwm_mib"] or 0.0)
    return {
        "mode": "fresh process, model preloaded",
        "job_id": job.pk,
        "seconds": round(elapsed, 3),
        "message": job.message,
        "queue_rows": queue,
        "django_setup_seconds": round(setup_seconds, 2),
        "model_load_seconds": round(load_seconds, 2),
        # scoring_run found the preloaded model in ml.load_model's cache (misses: 1, the preload) or loaded it again
        "model_reused": cache.misses == 1 and cache.hits >= 1,
        "load_model_cache": {"hits": cache.hits, "misses": cache.misses},
        "memory": {
            "at_start": at_start,
            "after_django_setup": after_setup,
            "baseline_model_loaded": baseline,
            "after_scoring": final,
            "sampled_peak_rss_mib": sampler.peak_mib(),
            "peak_mib": peak,
            "increase_over_baseline_mib": round(peak - (baseline["rss_mib"] or 0.0), 1),
            "sample_interval_s": args.sample_interval,
            "samples": len(sampler.samples),
            "sampler": "psutil" if _has_psutil() else "/proc/self/status VmRSS",
            "timeline_s_mib": sampler.timeline(),
        },
    }


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


# --- the main process: orchestrates, watches the job rows -------------------------------------------------------
class JobWatcher:
    """Reads the running SCORE jobs' rows every POLL_SECONDS: each new (progress, message) is a progress report,
    timed by the heartbeat written with it; and a progress bar. The database is the benchmark's own, so every running
    scoring job is one of ours."""

    def __init__(self) -> None:
        self.reports: dict[int, list[dict[str, Any]]] = {}
        self._bars: dict[int, Any] = {}

    def poll(self) -> None:
        from django.db import DatabaseError
        from tqdm import tqdm

        from annotator.models import Job

        try:
            running = list(
                Job.objects.filter(kind=Job.Kind.SCORE, status=Job.Status.RUNNING).values_list(
                    "id", "progress", "message", "heartbeat_at"
                )
            )
        except DatabaseError:  # SQLite busy for a moment: the next poll reads it
            return
        seen = set()
        for job_id, progress, message, beat in running:
            seen.add(job_id)
            reports = self.reports.setdefault(job_id, [])
            # A new report is a new (progress, message): the heartbeat alone is also refreshed by a liveness thread.
            if progress <= 0 or (reports and (reports[-1]["progress"], reports[-1]["message"]) == (progress, message)):
                continue
            reports.append({"at": beat, "progress": progress, "message": message})
            bar = self._bars.get(job_id)
            if bar is None:
                bar = self._bars[job_id] = tqdm(total=1000, desc=f"scoring job {job_id}", unit="‰", leave=False)
            bar.set_postfix_str(message[:60], refresh=False)
            bar.update(max(0, int(progress * 1000) - bar.n))
        for job_id in [job_id for job_id in self._bars if job_id not in seen]:
            self._bars.pop(job_id).close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def breakdown(self, job_id: int) -> dict[str, Any]:
        """What the job row tells: claim -> first progress report -> last report -> finished (seconds)."""
        from annotator.models import Job

        job = Job.objects.get(pk=job_id)
        if job.started_at is None or job.finished_at is None:
            return {}

        def since_claim(moment: datetime) -> float:
            return round((moment - job.started_at).total_seconds(), 3)

        reports = [
            {"t": since_claim(r["at"]), "progress": round(r["progress"], 4), "message": r["message"]}
            for r in self.reports.get(job_id, [])
        ]
        out: dict[str, Any] = {"total_s": since_claim(job.finished_at), "reports": reports}
        if reports:
            first, last = reports[0], reports[-1]
            out.update(
                {
                    "to_first_report_s": first["t"],
                    "first_to_last_report_s": round(last["t"] - first["t"], 3),
                    "after_last_report_s": round(out["total_s"] - last["t"], 3),
                    "first_report": first["message"],
                    "last_report": last["message"],
                }
            )
            counted = [(r["t"], _documents_done(r["message"])) for r in reports]
            counted = [(t, n) for t, n in counted if n is not None]
            if len(counted) >= 2 and counted[-1][0] > counted[0][0] and counted[-1][1] > counted[0][1]:
                (t0, n0), (t1, n1) = counted[0], counted[-1]
                out["between_reports_docs_per_s"] = round((n1 - n0) / (t1 - t0), 1)
        return out


def _documents_done(message: str) -> int | None:
    """N of a "scored N of M documents" report (None when the message says something else)."""
    match = re.search(r"(\d[\d,]*) of \d[\d,]* documents", message)
    return int(match.group(1).replace(",", "")) if match else None


def run_child(phase: list[str], args_file: Path, result_file: Path, watcher: JobWatcher) -> dict[str, Any]:
    """Runs this script as a child (`phase` arguments), watching the job rows meanwhile; returns its JSON."""
    command = [sys.executable, str(Path(__file__).resolve()), *phase, "--args-file", str(args_file)]
    command += ["--result-file", str(result_file)]
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        while process.poll() is None:
            watcher.poll()
            time.sleep(POLL_SECONDS)
    finally:
        watcher.close()
        if process.poll() is None:  # an error or Ctrl-C here: do not leave the child behind
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if process.returncode != 0:
        raise SystemExit(f"the {phase[1]} child ({' '.join(phase)}) failed with exit code {process.returncode}")
    return json.loads(result_file.read_text())


def orchestrate(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    with throwaway_database(
        database_url=args.database_url, data_dir=data_dir, pg_name=args.pg_name, keep=args.keep
    ) as url:
        django_setup(
            DATABASE_URL=url,
            ALABEL_DATA_DIR=str(data_dir),
            DJANGO_ALLOWED_HOSTS="testserver",
            CELERY_BROKER_URL="memory://localhost/",  # the import's encode job goes nowhere: embeddings are stored here
            DJANGO_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        )  # the children inherit this environment
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        db = database_info()
        print(f"database: {db['vendor']} {db['version']} ({'temp folder' if not is_postgres(url) else url})")
        args_file = data_dir / "bench-args.json"
        args_file.write_text(
            json.dumps({k: None if v is None else str(v) if k in PATH_ARGS else v for k, v in vars(args).items()})
        )
        watcher = JobWatcher()
        spaces = []
        for space in args.spaces:
            print(f"--- {SPACES[space]['title']}: building the project, training, scoring in process", flush=True)
            built = run_child(["--phase", "prepare", "--space", space], args_file, data_dir / f"{space}.json", watcher)
            for run in built["runs"]:
                run["breakdown"] = watcher.breakdown(run["job_id"])
            if not args.no_subprocess:
                from annotator.models import Job

                job = Job.objects.create(
                    project_id=built["project_id"],
                    kind=Job.Kind.SCORE,
                    reason="benchmark: fresh process",
                    model_version_id=built["version_id"],
                )
                print(f"--- {SPACES[space]['title']}: scoring in a fresh process (memory)", flush=True)
                fresh = run_child(
                    ["--phase", "score", "--job-id", str(job.pk)], args_file, data_dir / f"{space}-score.json", watcher
                )
                fresh["breakdown"] = watcher.breakdown(job.pk)
                built["runs"].append(fresh)
            for run in built["runs"]:
                run["documents"] = built["pool_documents"]
                run["docs_per_s"] = round(built["pool_documents"] / run["seconds"], 1) if run["seconds"] else None
            spaces.append(built)
        return {"database": db, "spaces": spaces, "software": software_info()}


def _mib(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def report(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    machine = payload["machine"]
    db = payload["database"]
    print()
    print(
        table(
            ["date", "machine", "database", "command"],
            [
                [
                    payload["date"],
                    f"nproc {machine['cpu_affinity']}, {machine['cpu_model']}, {machine['memory_gib']} GiB",
                    f"{db['vendor']} {db['version']}",
                    payload["command"],
                ]
            ],
        )
    )
    load = payload["load_average"]
    print(f"load average {load['before'][0]:.2f} before, {load['after'][0]:.2f} after")
    print()
    rows = []
    for space in payload["spaces"]:
        model = space["model"]
        for run in space["runs"]:
            rows.append(
                [
                    space["title"],
                    f"{space['labels']:,}",
                    f"{model['head']}, {model['features']}",
                    f"{space['pool_documents']:,}",
                    run["mode"],
                    run["seconds"],
                    run["docs_per_s"],
                ]
            )
    print(table(["label space", "labels", "model", "pool docs", "run", "scoring_run s", "docs/s"], rows))
    print()
    rows = []
    for space in payload["spaces"]:
        for run in space["runs"]:
            memory = run.get("memory")
            if memory is None:
                continue
            rows.append(
                [
                    space["title"],
                    f"{space['pool_documents']:,}",
                    _mib(memory["after_django_setup"]["rss_mib"]),
                    _mib(memory["baseline_model_loaded"]["rss_mib"]),
                    _mib(memory["sampled_peak_rss_mib"]),
                    _mib(memory["after_scoring"]["vm_hwm_mib"]),
                    _mib(memory["after_scoring"]["ru_maxrss_mib"]),
                    _mib(memory["increase_over_baseline_mib"]),
                ]
            )
    if rows:
        print("Memory of the scoring process (MiB; baseline: Django set up and the model loaded, before scoring):")
        print(
            table(
                [
                    "label space",
                    "pool docs",
                    "after setup",
                    "baseline",
                    "peak sampled",
                    "VmHWM",
                    "ru_maxrss",
                    "peak - baseline",
                ],
                rows,
            )
        )
        print()
    rows = []
    for space in payload["spaces"]:
        for run in space["runs"]:
            b = run.get("breakdown") or {}
            rows.append(
                [
                    space["title"],
                    run["mode"],
                    b.get("to_first_report_s"),
                    b.get("first_to_last_report_s"),
                    b.get("after_last_report_s"),
                    b.get("total_s"),
                    b.get("between_reports_docs_per_s"),
                    b.get("last_report"),
                ]
            )
    print("Break-down from the job's progress reports (s since the job was claimed):")
    print(
        table(
            [
                "label space",
                "run",
                "-> first report",
                "first -> last report",
                "last report -> done",
                "total",
                "docs/s between reports",
                "last report",
            ],
            rows,
        )
    )
    print()
    for space in payload["spaces"]:
        model = space["model"]
        copies = (
            "distinct texts"
            if space["pool_copies"] == 1
            else f"{space['distinct_pool_texts']:,} distinct texts (with the evaluation set's), each up to "
            f"{space['pool_copies']} times under new ids"
        )
        sources = "; ".join(f"{s['split']} {s['rows']:,} rows: {s['source']}" for s in space["embeddings"])
        print(
            f"{space['title']}: pool {space['pool_documents']:,} documents ({copies}) + "
            f"{space['evaluation_documents']} evaluation documents "
            f"(scored too); trained on {space['training_documents']:,} labelled documents "
            f"({model['labels_in_training_data']:,} labels occur), model {model['artifact_mib']} MiB, "
            f"strategy {model['strategy']}; embeddings: {sources}"
        )
        print(f"  setup seconds: {space['setup_seconds']}")


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # run the clean-up on SIGTERM too
    if args.phase is not None:
        child_main(args)
        return
    data_dir = Path(tempfile.mkdtemp(prefix="alabel-bench-scoring-"))
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"note: load average {load_before[0]:.2f} before starting; other work shares the CPU")
    try:
        measured = orchestrate(args, data_dir)
    finally:
        if args.keep:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    payload = {
        **header("scoring", {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "orchestrator_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **measured,
    }
    report(args, payload)
    out = args.out or RESULTS_DIR / f"scoring-{measured['database']['vendor']}.json"
    print(f"wrote {write_json(out, payload)}")


def child_main(args: argparse.Namespace) -> None:
    """A child: the orchestrator's arguments come from --args-file; writes its result to --result-file."""
    if args.result_file is None or args.args_file is None:
        raise SystemExit("--phase needs --args-file and --result-file")
    own = {"phase", "space", "job_id", "result_file", "args_file"}
    for key, value in json.loads(args.args_file.read_text()).items():
        if key not in own:
            setattr(args, key, Path(value) if key in PATH_ARGS and value is not None else value)
    result = phase_prepare(args) if args.phase == "prepare" else phase_score(args)
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.result_file.write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
