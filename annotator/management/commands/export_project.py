"""`python manage.py export_project PROJECT_ID PATH --format ...`: the API's export, written to a file or folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotator import formats, selectors, services
from annotator.models import Annotation, Document, Project
from annotator.selectors.export import export_label_names

EXPORT_FORMATS = ["jsonl", "csv", "labelstudio", "parquet", "hf"]


class Command(BaseCommand):
    help = (
        "Exports a project's documents and answers as JSONL, CSV (labels or multi-hot), Label Studio JSON, Parquet "
        "or a Hugging Face dataset folder (save_to_disk)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project_id", type=int)
        parser.add_argument("path", type=Path, help="the file (or, for hf, the folder) to write; must not exist")
        parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
        parser.add_argument("--include-unlabelled", action="store_true", help="also documents nobody answered")
        parser.add_argument("--multi-hot", action="store_true", help="csv: one 0/1 column per label")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(pk=options["project_id"]).first()
        if project is None:
            raise CommandError(f"project {options['project_id']} does not exist")
        path: Path = options["path"]
        fmt: str = options["format"]
        if path.exists():
            raise CommandError(f"{path} already exists: name a new file or folder")
        if options["multi_hot"] and fmt != "csv":
            raise CommandError("--multi-hot applies to --format csv only")
        include = options["include_unlabelled"]
        documents = Document.objects.filter(project=project)
        total = documents.count() if include else documents.filter(annotations__isnull=False).distinct().count()
        written = [0]

        def counted() -> Iterator[dict[str, Any]]:
            for row in selectors.export_rows(project=project, include_unlabelled=include):
                written[0] += 1
                yield row

        rows = tqdm(
            counted(),
            total=total,
            unit="doc",
            disable=options["no_progress"],
            file=self.stderr,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        # written next to the target and renamed at the end: a failed export leaves nothing half-written
        temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        try:
            if fmt in {"parquet", "hf"}:
                formats.hf_export(rows, temporary / "out", fmt)
            else:
                if fmt == "labelstudio":
                    chunks = formats.label_studio_export(rows)
                elif fmt == "csv" and options["multi_hot"]:
                    chunks = formats.csv_multi_hot_export(rows, export_label_names(project=project))
                elif fmt == "csv":
                    chunks = formats.csv_export(rows)
                else:
                    chunks = formats.jsonl_export(rows)
                with open(temporary / "out", "w", encoding="utf-8", newline="") as handle:
                    for chunk in chunks:
                        handle.write(chunk)
            os.replace(temporary / "out", path)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        services.webhook_emit_export(
            project=project, user=None, fmt=fmt, include_unlabelled=include, via="command"
        )  # the "project.exported" webhooks, like an export through the API
        answers = Annotation.objects.filter(project=project).count()
        self.stdout.write(f"Exported {written[0]} documents ({answers} answers in the project) to {path} as {fmt}.")
