"""Taxonomy import: the 41,218 tibkat-gnd labels (labels.tsv, with their GND ids) imported into an empty project as a
manager would upload them, imported again unchanged, and imported once more with a description and two alternative
names for every label; the seconds of each (parsing included), on PostgreSQL or SQLite.

    .venv/bin/python bench/bench_taxonomy.py --database-url postgres://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_taxonomy.py

Prints a Markdown table and writes bench/results/taxonomy-<vendor>.json.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path

from common import RESULTS_DIR, ROOT, database_info, django_setup, header, table, throwaway_database, write_json

LABELS = ROOT.parent / "shared" / "datasets" / "tibkat-gnd" / "labels.tsv"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL admin URL; default: SQLite in a temp folder")
    parser.add_argument("--pg-name", default="alabel_bench_taxonomy", help="PostgreSQL database to create and drop")
    parser.add_argument("--labels", type=Path, default=LABELS, help="a label file (tibkat-gnd's labels.tsv)")
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/taxonomy-<vendor>.json)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    folder = Path(tempfile.mkdtemp(prefix="alabel-taxonomy-"))
    with throwaway_database(database_url=args.database_url, data_dir=folder, pg_name=args.pg_name) as url:
        django_setup(DATABASE_URL=url, ALABEL_DATA_DIR=str(folder / "data"), CELERY_BROKER_URL="memory://")
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Permission
        from django.core.management import call_command
        from django.db import connection

        from annotator import services
        from annotator.importing import parse_label_file
        from annotator.models import Label, LabelAlias

        call_command("migrate", interactive=False, verbosity=0)
        user = get_user_model().objects.create_user(username="taxonomist", password=secrets.token_urlsafe(16))
        user.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
        user = get_user_model().objects.get(pk=user.pk)
        project = services.project_create(user=user, name="tibkat-gnd", labels=[])
        data = args.labels.read_bytes()
        parsed = parse_label_file(args.labels.name, data)
        lines = ["name\texternal_id\talt_names\tdescription"]
        for record in parsed.records:
            lines.append(
                f"{record.name}\t{record.external_id}\t{record.name} (en)|{record.name} alt\tabout {record.name}"
            )
        richer = ("\n".join(lines) + "\n").encode()
        rows = []
        for what, name, payload in (
            ("create every label", args.labels.name, data),
            ("the same file again (nothing changes)", args.labels.name, data),
            ("a description and two alternative names each", "labels.tsv", richer),
        ):
            started = time.perf_counter()
            parsed = parse_label_file(name, payload)
            result = services.labels_import(
                project=project, user=user, records=parsed.records, parse_errors=parsed.errors
            )
            seconds = round(time.perf_counter() - started, 2)
            rows.append(
                {"step": what, "seconds": seconds, "result": {k: v for k, v in result.items() if k != "labels"}}
            )
            print(f"{what}: {seconds} s {rows[-1]['result']}", flush=True)
        counts = {
            "labels": Label.objects.filter(project=project).count(),
            "alternative_names": LabelAlias.objects.filter(project=project).count(),
        }
        vendor = database_info()["vendor"]
        connection.close()
    print(table(["step", "seconds"], [[row["step"], row["seconds"]] for row in rows]))
    out = args.out or RESULTS_DIR / f"taxonomy-{vendor}.json"
    write_json(out, {**header("taxonomy", vars(args)), "steps": rows, **counts})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
