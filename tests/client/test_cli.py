"""The `alabel` command line (`python -m alabel_client`) run as a subprocess against a live server: login and the
stored token, project creation from label files (all or nothing), import, export, errors as one line with exit code
2, a failed job's exit code 1. Training, the savings estimate and a watched job with a worker: test_worker.py."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import PASSWORD, goemotions, goemotions_labels

LABELS = goemotions_labels()


def alabel(*args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 300) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "alabel_client", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_env(server: str, tmp_path: Path, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALABEL_")}
    env.update({"ALABEL_URL": server, "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYTHONUNBUFFERED": "1"})
    if token:
        env["ALABEL_TOKEN"] = token
    return env


def test_login_stores_a_private_token_that_later_commands_use(server, make_user, tmp_path):
    make_user("ana", can_create=True)
    env = cli_env(server, tmp_path)
    done = alabel("login", "ana", "--password-stdin", env=env, stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    stored = tmp_path / "config" / "alabel" / "credentials.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text())["url"] == server.rstrip("/")

    (tmp_path / "labels.txt").write_text("joy\nanger\n\nfear\n", encoding="utf-8")
    created = alabel("--json", "projects", "create", "From txt", "--labels", str(tmp_path / "labels.txt"), env=env)
    assert created.returncode == 0, created.stderr
    listed = alabel("projects", "list", env=env)
    assert listed.returncode == 0 and listed.stdout.split("\t")[:3] == [
        str(json.loads(created.stdout)["id"]),
        "From txt",
        "manager\n",
    ]

    printed = alabel("login", "ana", "--password-stdin", "--print", env=env, stdin=PASSWORD + "\n")
    assert printed.returncode == 0 and len(printed.stdout.strip()) > 20 and "\n" not in printed.stdout.strip()

    refused = alabel("login", "ana", "--password-stdin", env=env, stdin="wrong\n")
    assert refused.returncode == 2
    assert (
        refused.stderr.count("\n") == 1 and "unable to log in" in refused.stderr and "Traceback" not in refused.stderr
    )


def test_create_from_label_files_import_export_and_errors(server, manager, tmp_path):
    env = cli_env(server, tmp_path, manager.token)
    labels_csv = tmp_path / "labels.csv"
    with open(labels_csv, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "description", "aliases", "notes"])
        writer.writerows([label["name"], label["description"], "", "x"] for label in LABELS)
        writer.writerow(["grief2", "", "sorrow|mourning", ""])
    done = alabel("--json", "projects", "create", "CLI", "--labels", str(labels_csv), "--budget", "40", env=env)
    assert done.returncode == 0, done.stderr
    assert "ignoring the column(s) notes" in done.stderr
    project = json.loads(done.stdout)
    pid = str(project["id"])
    assert project["label_budget"] == 40
    assert [h["name"] for h in manager.labels(project["id"], "mourning")] == ["grief2"]

    # A label file with a bad line creates nothing (all or nothing).
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "ok", "external_id": "1"}, {"name": "", "parent": "ok"}]), encoding="utf-8")
    refused = alabel("projects", "create", "Bad", "--labels", str(bad), env=env)
    assert refused.returncode == 2 and refused.stderr.startswith("error: 400") and refused.stderr.count("\n") == 1
    assert [p["name"] for p in manager.projects()] == ["CLI"]
    tsv = tmp_path / "tree.tsv"
    tsv.write_text("label\tgnd_id\tparent\nEmotion\tE\t\nJoy\tJ\tE\n", encoding="utf-8")
    tree = alabel("--json", "projects", "create", "Tree", "--labels", str(tsv), env=env)
    assert tree.returncode == 0, tree.stderr
    joy = manager.labels(json.loads(tree.stdout)["id"], "Joy")[0]
    assert joy["external_id"] == "J" and joy["parent"] is not None

    sample = goemotions(30, start=500)
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(r) + "\n" for r in sample), encoding="utf-8")
    imported = alabel("import", pid, str(docs), env=env)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "imported 30 documents, 30 answers, 0 new labels"

    new_labels = tmp_path / "new.jsonl"
    new_labels.write_text(json.dumps({"id": "n1", "text": "a new one", "labels": ["brand-new"]}) + "\n")
    unknown = alabel("import", pid, str(new_labels), env=env)
    assert unknown.returncode == 2 and "brand-new" in unknown.stderr and unknown.stderr.count("\n") == 1
    created = alabel("import", pid, str(new_labels), "--create-labels", env=env)
    assert created.returncode == 0 and "1 new labels" in created.stdout

    out = tmp_path / "out" / "export.csv"
    exported = alabel("export", pid, str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    with open(out, encoding="utf-8", newline="") as handle:
        rows = {row["id"]: sorted(row["labels"].split("|")) for row in csv.DictReader(handle)}
    assert rows == {**{r["id"]: sorted(r["labels"]) for r in sample}, "n1": ["brand-new"]}
    again = alabel("export", pid, str(out), env=env)
    assert again.returncode == 2 and "exists" in again.stderr
    hot = alabel("export", pid, str(tmp_path / "hot.csv"), "--multi-hot", "--include-unlabelled", env=env)
    assert hot.returncode == 0, hot.stderr
    assert (tmp_path / "hot.csv").read_text(encoding="utf-8").startswith("id,text,")

    stats = alabel("stats", pid, env=env)
    assert stats.returncode == 0 and json.loads(stats.stdout)["budget"]["label_budget"] == 40

    missing = alabel("stats", "999999", env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("error: 404"), missing.stderr
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    no_token = alabel("projects", "list", env=cli_env(server, tmp_path / "elsewhere"))
    assert no_token.returncode == 2 and "not logged in" in no_token.stderr


def test_jobs_watch_exits_1_for_a_cancelled_job(server, manager, tmp_path):
    env = cli_env(server, tmp_path, manager.token)
    pid = manager.create_project("Watch", labels=LABELS, retrain_every=1000)["id"]
    manager.import_documents(pid, goemotions(30, start=600))
    job = manager.train(pid, mode="full")  # no worker here: it stays queued until cancelled
    manager.cancel_job(pid, job["id"])
    listed = alabel("jobs", "list", str(pid), env=env)
    assert listed.returncode == 0 and f"{job['id']}\ttrain\tCANCELLED" in listed.stdout
    watched = alabel("jobs", "watch", str(pid), str(job["id"]), env=env)
    assert watched.returncode == 1
    assert f"job {job['id']} (train) ended CANCELLED" in watched.stderr and "Traceback" not in watched.stderr


def test_the_client_imports_without_the_platform_and_names_the_missing_hf_extra(tmp_path):
    code = (
        "import sys, alabel_client, alabel_client.cli, alabel_client.hf\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded & {'django', 'annotator', 'learner', 'webapp', 'torch', 'datasets'}, loaded\n"
        "sys.modules['datasets'] = None  # as if the hf extra were not installed\n"
        "try:\n"
        "    alabel_client.Client('http://127.0.0.1:9').import_documents(1, sys.argv[1])\n"
        "except alabel_client.ClientError as error:\n"
        "    print(error)\n"
    )
    (tmp_path / "ds").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "ds")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "alabel-client[hf]" in done.stdout
