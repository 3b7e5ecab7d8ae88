"""Import and export formats (issue 19): N documents with their answers (GoEmotions train, 28 labels, repeated with
fresh ids up to N) exported from a project and imported into an empty one in each format, through the management
commands a user runs (`export_project`, `import_documents`: parsing, checks and the all-or-nothing import included);
the seconds of each (and of parsing the file alone, no database), the file size, and a check that the re-imported
project has the same texts and answers. Each import goes into a new project of the same database.

    .venv/bin/python bench/bench_formats.py                       # SQLite, 100,000 documents
    .venv/bin/python bench/bench_formats.py --documents 20000
    .venv/bin/python bench/bench_formats.py --database-url postgres://postgres@127.0.0.1:5432/postgres

Prints a Markdown table and writes bench/results/formats-<vendor>.json.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from common import RESULTS_DIR, ROOT, database_info, django_setup, header, table, throwaway_database, write_json

SOURCE = ROOT.parent / "shared" / "datasets" / "goemotions" / "train.jsonl.gz"
# (format, file name, extra options of export_project)
FORMATS = [
    ("jsonl", "export.jsonl", {}),
    ("csv", "export-multi-hot.csv", {"multi_hot": True}),
    ("labelstudio", "export-labelstudio.json", {}),
    ("parquet", "export.parquet", {}),
    ("hf", "export-dataset", {}),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL admin URL; default: SQLite in a temp folder")
    parser.add_argument("--pg-name", default="alabel_bench_formats", help="PostgreSQL database to create and drop")
    parser.add_argument("--documents", type=int, default=100_000, help="documents per format (default 100,000)")
    parser.add_argument("--source", type=Path, default=SOURCE, help="a JSONL(.gz) file of {id, text, labels}")
    parser.add_argument("--formats", default=",".join(f for f, _, _ in FORMATS), help="comma-separated subset")
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/formats-<vendor>.json)")
    return parser.parse_args()


def source_lines(path: Path, n: int) -> bytes:
    """N JSONL lines of {id, text, labels}, the source repeated with ids suffixed "-r<k>" after its first pass."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        base = [json.loads(line) for line in handle if line.strip()]
    out = io.StringIO()
    for index in range(n):
        raw = base[index % len(base)]
        repeat = index // len(base)
        ext_id = raw["id"] if repeat == 0 else f"{raw['id']}-r{repeat}"
        out.write(json.dumps({"id": ext_id, "text": raw["text"], "labels": raw["labels"]}, ensure_ascii=False) + "\n")
    return out.getvalue().encode()


def size_mb(path: Path) -> float:
    from annotator.formats import path_size

    return round(path_size(path) / 1e6, 1)


def main() -> None:
    args = parse_args()
    wanted = [item for item in FORMATS if item[0] in args.formats.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="alabel-formats-"))
    with throwaway_database(database_url=args.database_url, data_dir=folder, pg_name=args.pg_name) as url:
        django_setup(
            DATABASE_URL=url,
            ALABEL_DATA_DIR=str(folder / "data"),
            CELERY_BROKER_URL="memory://",
            ALABEL_MAX_IMPORT_BYTES=str(2 * 1024**3),  # the files of 100,000 documents pass the 50 MB upload limit
            HF_DATASETS_OFFLINE="1",
        )
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Permission
        from django.core.management import call_command
        from django.db import connection

        from annotator import formats, selectors, services

        call_command("migrate", interactive=False, verbosity=0)
        user = get_user_model().objects.create_user(username="bench", password=secrets.token_urlsafe(16))
        user.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
        user = get_user_model().objects.get(pk=user.pk)

        def content(project) -> dict[str, tuple[str, frozenset[str] | None]]:
            return {
                row["id"]: (row["text"], None if row["labels"] is None else frozenset(row["labels"]))
                for row in selectors.export_rows(project=project, include_unlabelled=True)
            }

        seed_file = folder / "seed.jsonl"
        seed_file.write_bytes(source_lines(args.source, args.documents))
        source = services.project_create(user=user, name="source", labels=[], eval_size=0)
        started = time.perf_counter()
        call_command(
            "import_documents",
            source.pk,
            str(seed_file),
            create_labels=True,
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
        seed_seconds = round(time.perf_counter() - started, 2)
        print(f"seed import (jsonl, {args.documents:,} documents): {seed_seconds} s", flush=True)
        expected = content(source)
        rows = []
        for fmt, name, options in wanted:
            target = folder / name
            started = time.perf_counter()
            call_command(
                "export_project", source.pk, str(target), format=fmt, no_progress=True, stdout=io.StringIO(), **options
            )
            export_seconds = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            parsed, problems = formats.parse_path(target, fmt=fmt, multi_hot=bool(options))
            parse_seconds = round(time.perf_counter() - started, 2)
            assert len(parsed) == args.documents and not problems, problems[:3]
            del parsed
            project = services.project_create(user=user, name=f"import {fmt}", labels=[], eval_size=0)
            started = time.perf_counter()
            call_command(
                "import_documents",
                project.pk,
                str(target),
                format=fmt,
                create_labels=True,
                stdout=io.StringIO(),
                stderr=io.StringIO(),
            )
            import_seconds = round(time.perf_counter() - started, 2)
            same = content(project) == expected
            rows.append(
                {
                    "format": fmt,
                    "documents": args.documents,
                    "export_seconds": export_seconds,
                    "export_docs_per_s": round(args.documents / export_seconds),
                    "parse_seconds": parse_seconds,
                    "import_seconds": import_seconds,
                    "import_docs_per_s": round(args.documents / import_seconds),
                    "size_mb": size_mb(target),
                    "round_trip_equal": same,
                }
            )
            print(f"{fmt}: {rows[-1]}", flush=True)
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
        vendor = database_info()["vendor"]
        connection.close()
    shutil.rmtree(folder, ignore_errors=True)
    print(
        table(
            [
                "format",
                "documents",
                "export s",
                "export docs/s",
                "parse s",
                "import s",
                "import docs/s",
                "MB",
                "round trip equal",
            ],
            [
                [
                    r["format"],
                    r["documents"],
                    r["export_seconds"],
                    r["export_docs_per_s"],
                    r["parse_seconds"],
                    r["import_seconds"],
                    r["import_docs_per_s"],
                    r["size_mb"],
                    "yes" if r["round_trip_equal"] else "NO",
                ]
                for r in rows
            ],
        )
    )
    out = args.out or RESULTS_DIR / f"formats-{vendor}.json"
    write_json(out, {**header("formats", vars(args)), "seed_import_seconds": seed_seconds, "formats": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
