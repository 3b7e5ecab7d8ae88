"""The README's screenshots of the annotate page, made with Playwright on the system Chromium.

- docs/img/annotate-small.png: GoEmotions (28 labels) as the expert sees it, every label a toggle with its key, the
  model's suggestions marked on them with their scores. A real model: 60 demo comments, 20 of them with their labels,
  encoded, trained and scored in-process exactly as the workers do (about a minute on two cores).
- docs/img/annotate-large.png: the 41,218 tibkat-gnd subject headings (labels.tsv, with their GND ids as external
  ids) and a few tibkat-gnd dev records, no model yet, with the results of a search ("kunstliche int") on screen.

Everything happens in a throw-away SQLite database in a temp folder, served by Django's live server thread.

    .venv/bin/python bench/screenshots.py                 # writes both PNGs into docs/img/
    .venv/bin/python bench/screenshots.py --out /tmp/img  # elsewhere
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

from common import django_setup

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets" / "tibkat-gnd"
CHROMIUM = os.environ.get("ALABEL_CHROMIUM", "/usr/bin/chromium")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder for the PNGs")
    parser.add_argument("--labels-tsv", type=Path, default=SHARED / "labels.tsv", help="tibkat-gnd labels.tsv")
    parser.add_argument("--documents", type=Path, default=SHARED / "dev.jsonl.gz", help="tibkat-gnd dev.jsonl.gz")
    parser.add_argument("--docs", type=int, default=5, help="tibkat-gnd dev records in the large project")
    parser.add_argument("--query", default="kunstliche int", help="what is typed into the large project's search")
    return parser.parse_args()


def run_job(project, kind: str, runner) -> None:
    from annotator import services

    job, _ = services.job_request(project=project, kind=kind, reason="screenshots")
    runner(job_id=job.pk)
    job.refresh_from_db()
    if job.status != "SUCCEEDED":
        raise SystemExit(f"{kind} job failed: {job.error}")


def build(args: argparse.Namespace, data_dir: Path) -> dict[str, object]:
    from annotator import services
    from annotator.importing import ImportRecord
    from annotator.models import Label, Project
    from annotator.services.demo import demo_labels, demo_records, demo_setup

    info = demo_setup(data_dir=data_dir)
    manager = Project.objects.get(pk=info.project_id).created_by

    small = services.project_create(user=manager, name="GoEmotions", labels=demo_labels(), eval_size=0)
    services.member_add(project=small, username="demo-annotator", role="annotator")
    sample = demo_records(60, with_labels=True)
    for index, record in enumerate(sample):
        record.labels = record.labels if index < 20 else None
    services.documents_import(project=small, user=manager, records=sample)
    small.decision_threshold = 0.999  # nothing pre-ticked: the picture shows the suggestions, not a filled answer
    small.save()
    run_job(small, "encode", services.encode_run)
    run_job(small, "train", services.training_run)
    run_job(small, "score", services.scoring_run)

    with open(args.labels_tsv, encoding="utf-8", newline="") as handle:
        rows = [(row["label"], row["gnd_id"]) for row in csv.DictReader(handle, delimiter="\t")]
    large = services.project_create(user=manager, name="tibkat-gnd", labels=[name for name, _ in rows], eval_size=0)
    services.member_add(project=large, username="demo-annotator", role="annotator")
    gnd = dict(rows)
    labels = list(Label.objects.filter(project=large))
    for label in labels:
        label.external_id = gnd[label.name]
    Label.objects.bulk_update(labels, ["external_id"], batch_size=2000)
    records = []
    with gzip.open(args.documents, "rt", encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            records.append(ImportRecord(line=len(records) + 1, external_id=doc["id"], text=doc["text"], labels=None))
            if len(records) >= args.docs:
                break
    services.documents_import(project=large, user=manager, records=records)
    return {"small": small.pk, "large": large.pk, "password": info.credentials["demo-annotator"], "labels": len(rows)}


def shoot(args: argparse.Namespace, built: dict[str, object]) -> None:
    from django.conf import settings
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread
    from playwright.sync_api import sync_playwright

    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    url = f"http://127.0.0.1:{server.port}"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_context(viewport={"width": 1280, "height": 860}, device_scale_factor=1).new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{url}/accounts/login/")
            page.fill("#id_username", "demo-annotator")
            page.fill("#id_password", str(built["password"]))
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/")

            page.set_viewport_size({"width": 1280, "height": 1180})  # the 28 toggles below the suggestions
            page.goto(f"{url}/projects/{built['small']}/annotate/")
            page.wait_for_selector("#label-buttons .toggle.suggested")
            page.keyboard.press("1")  # the expert accepts suggestion 1
            page.evaluate("() => document.activeElement.blur()")
            page.screenshot(path=str(args.out / "annotate-small.png"))

            page.set_viewport_size({"width": 1280, "height": 860})
            page.goto(f"{url}/projects/{built['large']}/annotate/")
            page.wait_for_function("() => !['Loading…', ''].includes(document.querySelector('#doc-text').textContent)")
            page.keyboard.press("/")
            page.keyboard.type(args.query)
            page.wait_for_selector("#search-results li.active")
            page.screenshot(path=str(args.out / "annotate-large.png"))
            browser.close()
    finally:
        server.terminate()


def main() -> None:
    args = parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="alabel-screenshots-"))
    try:
        django_setup(
            ALABEL_DATA_DIR=str(data_dir),
            DATABASE_URL=f"sqlite:///{data_dir / 'screenshots.sqlite3'}",
            ALABEL_CACHE_URL="",
        )
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        built = build(args, data_dir)
        shoot(args, built)
        print(f"wrote {args.out / 'annotate-small.png'} and {args.out / 'annotate-large.png'}")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
