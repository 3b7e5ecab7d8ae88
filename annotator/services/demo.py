"""The demo project that `make run` creates on first start: a GoEmotions sample, a manager and an annotator."""

from __future__ import annotations

import csv
import gzip
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction

from ..importing import ImportRecord
from ..models import Membership, Project
from .documents import documents_import
from .projects import member_add, project_create

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
DEMO_PROJECT = "GoEmotions demo"
DEMO_USERS = {"demo-manager": Membership.Role.MANAGER, "demo-annotator": Membership.Role.ANNOTATOR}
GUIDELINES = """Choose every emotion the writer expresses in the comment; several may apply.
Choose "neutral" only when no emotion is expressed. Judge the text alone, not what you know about the topic.
The model's suggestions are ranked by its confidence; accept the right ones, untick the wrong ones,
and search for anything it missed."""


@dataclass(frozen=True)
class DemoInfo:
    project_id: int
    created: bool
    credentials: dict[str, str]


def demo_records(limit: int | None = None, *, with_labels: bool = False) -> list[ImportRecord]:
    records = []
    with gzip.open(DEMO_DIR / "goemotions-sample.jsonl.gz", "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            raw = json.loads(line)
            records.append(
                ImportRecord(
                    line=number,
                    external_id=raw["id"],
                    text=raw["text"],
                    labels=raw["labels"] if with_labels else None,
                )
            )
            if limit is not None and len(records) >= limit:
                break
    return records


def demo_labels() -> list[dict[str, str]]:
    with open(DEMO_DIR / "labels.tsv", encoding="utf-8", newline="") as handle:
        return [
            {"name": row["label"], "description": row["description"]} for row in csv.DictReader(handle, delimiter="\t")
        ]


def _credentials(path: Path) -> dict[str, str]:
    if path.exists():
        return json.loads(path.read_text())
    values = {username: secrets.token_urlsafe(12) for username in DEMO_USERS}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    return values


def demo_setup(*, data_dir: Path) -> DemoInfo:
    """Idempotent: creates the demo users (passwords kept in data_dir/demo-credentials.json, mode 600) and the
    demo project once; later calls return what exists."""
    credentials = _credentials(Path(data_dir) / "demo-credentials.json")
    User = get_user_model()
    with transaction.atomic():
        users = {}
        for username in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(credentials[username])
                user.save()
            users[username] = user
        users["demo-manager"].user_permissions.add(
            Permission.objects.get(codename="add_project", content_type__app_label="annotator")
        )
        existing = Project.objects.filter(name=DEMO_PROJECT, created_by=users["demo-manager"]).first()
        if existing is not None:
            return DemoInfo(project_id=existing.pk, created=False, credentials=credentials)
        manager = User.objects.get(pk=users["demo-manager"].pk)  # fresh permission cache
        project = project_create(
            user=manager,
            name=DEMO_PROJECT,
            labels=demo_labels(),
            guidelines=GUIDELINES,
            label_budget=500,
            retrain_every=20,
        )
        member_add(project=project, username="demo-annotator", role=Membership.Role.ANNOTATOR)
        documents_import(project=project, user=manager, records=demo_records())
    return DemoInfo(project_id=project.pk, created=True, credentials=credentials)
