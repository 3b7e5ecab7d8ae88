"""`python manage.py import_documents PROJECT_ID PATH [--format ...]`: the same all-or-nothing import as the upload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotator import formats, selectors, services
from annotator.exceptions import ProjectError
from annotator.importing import import_notes
from annotator.models import Membership


class Command(BaseCommand):
    help = (
        "Imports documents (and their answers as seed annotations) into a project from JSONL, CSV, Label Studio JSON, "
        "Parquet or a Hugging Face dataset folder; all or nothing, every bad record named."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project_id", type=int)
        parser.add_argument("path", type=Path, help="a file, or a folder written by Dataset.save_to_disk")
        parser.add_argument("--format", default="auto", choices=formats.IMPORT_FORMATS)
        parser.add_argument("--split", default="train", help="the split of a DatasetDict folder (default train)")
        parser.add_argument("--user", help="the importing manager (default: the project's first manager)")
        parser.add_argument("--create-labels", action="store_true", help="add labels the project does not have yet")
        parser.add_argument("--multi-hot", action="store_true", help="labels as 0/1 columns, detected")
        parser.add_argument("--label-columns", help="labels as these 0/1 columns (comma-separated)")
        parser.add_argument("--text-key", default="text", help="Label Studio: the data key holding the text")
        parser.add_argument(
            "--prediction-source",
            default=services.DEFAULT_PREDICTION_SOURCE,
            help='the source of predictions (pre-annotations) that name none (default "import")',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = self._user(options["project_id"], options["user"])
        try:
            project, _ = selectors.project_get_for(project_id=options["project_id"], user=user, manager=True)
            path: Path = options["path"]
            limit = settings.ALABEL_MAX_IMPORT_BYTES
            if path.exists() and (size := formats.path_size(path)) > limit:
                raise ProjectError(
                    f"{path} is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB (ALABEL_MAX_IMPORT_BYTES)"
                )
            columns = [name.strip() for name in (options["label_columns"] or "").split(",") if name.strip()]
            self.stderr.write(f"reading {path} ...")
            records, errors = formats.parse_path(
                path,
                fmt=options["format"],
                split=options["split"],
                text_key=options["text_key"],
                label_columns=columns or None,
                multi_hot=options["multi_hot"],
            )
            self.stderr.write(f"importing {len(records):,} document(s) ...")
            result = services.documents_import(
                project=project,
                user=user,
                records=records,
                parse_errors=errors,
                create_labels=options["create_labels"],
                prediction_source=options["prediction_source"],
            )
        except ProjectError as exc:
            raise CommandError("\n".join([exc.message, *exc.errors])) from exc
        self.stdout.write(
            f"Imported {result.documents} documents with {result.annotations} answers"
            f" ({result.labels_created} new labels) into project {project.pk}."
            + (f" {result.preannotations} pre-annotations stored." if result.preannotations else "")
        )
        for note in import_notes(records):
            self.stdout.write(f"Note: {note}.")

    def _user(self, project_id: int, username: str | None) -> Any:
        if username:
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                raise CommandError(f"no user {username!r}")
            return user
        membership = (
            Membership.objects.filter(project_id=project_id, role=Membership.Role.MANAGER)
            .select_related("user")
            .order_by("id")
            .first()
        )
        if membership is None:
            raise CommandError(f"project {project_id} does not exist or has no manager; name one with --user")
        return membership.user
