"""The client and the command line with a real Celery worker on a real broker (tests/integration/conftest.py):
training until a model version exists (`wait_job`), and the CLI end to end: create, import, answers, `train
--watch`, `jobs watch`, `simulate --watch` (the savings estimate), export."""

from __future__ import annotations

import json
from typing import Any

import pyarrow.parquet as pq
import pytest

from .conftest import goemotions, goemotions_labels, wait_for
from .test_cli import alabel, cli_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LABELS = goemotions_labels()


def _scored(client: Any, project: int) -> bool:
    """The pool encoded and the cold-start queue filled (the first score job succeeded)."""
    jobs = list(client.jobs(project))
    failed = [j for j in jobs if j["status"] == "FAILED"]
    if failed:
        pytest.fail(f"a job failed: {failed[0]['kind']}: {failed[0]['error']}")
    return any(j["kind"] == "score" and j["status"] == "SUCCEEDED" for j in jobs)


def test_train_and_wait_job_until_a_model_version_exists(celery_worker, manager, capsys):
    pid = manager.create_project("Train", labels=LABELS, retrain_every=1000)["id"]
    sample = goemotions(40, start=700)
    manager.import_documents(pid, sample)  # seed answers: 40 labelled documents
    wait_for(lambda: _scored(manager, pid), timeout=240, what="encoding and the cold-start queue")

    job = manager.train(pid, mode="full")
    assert job["kind"] == "train" and job["status"] in {"PENDING", "RUNNING"}
    done = manager.wait_job(pid, job["id"], progress=True, interval=0.5, timeout=300)
    assert done["status"] == "SUCCEEDED" and done["progress"] == 1.0 and done["model_version"] == 1
    assert f"job {job['id']}" in capsys.readouterr().err  # the tqdm bar, on stderr
    versions = list(manager.models(pid))
    assert [(v["number"], v["is_serving"]) for v in versions] == [(1, True)]
    assert manager.stats(pid)["model_version"]["number"] == 1


def test_cli_end_to_end_create_import_train_simulate_export(celery_worker, manager, annotator, tmp_path):
    env = cli_env(manager.base_url, tmp_path, manager.token)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(LABELS), encoding="utf-8")
    created = alabel(
        "--json",
        "projects",
        "create",
        "End to end",
        "--labels",
        str(labels),
        "--retrain-every",
        "1000",
        "--set",
        "eval_fraction=0.4",
        "--set",
        "eval_share=0.4",
        "--set",
        "queue_size=60",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    pid = json.loads(created.stdout)["id"]
    manager.add_member(pid, "annotator")

    sample = goemotions(90, start=800)
    gold = {r["id"]: r["labels"] for r in sample}
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in sample), encoding="utf-8")
    imported = alabel("import", str(pid), str(docs), env=env)
    assert imported.returncode == 0 and "imported 90 documents, 0 answers" in imported.stdout, imported.stderr
    wait_for(lambda: _scored(manager, pid), timeout=240, what="encoding and the cold-start queue")

    # 64 answers through the client: 40 % of them from the evaluation set, the rest picked by the queue, so that
    # the savings estimate has the 20 + 20 it needs.
    for _ in range(64):
        item = annotator.next(pid)
        assert item is not None, annotator.last_reason
        annotator.answer(pid, item["document"]["id"], gold[item["document"]["external_id"]])

    trained = alabel("train", str(pid), "--mode", "full", "--watch", env=env)
    assert trained.returncode == 0, trained.stderr
    assert "succeeded: model version 1" in trained.stdout

    listed = alabel("--json", "jobs", "list", str(pid), env=env)
    assert listed.returncode == 0, listed.stderr
    train_job = next(j for j in json.loads(listed.stdout) if j["kind"] == "train")
    watched = alabel("jobs", "watch", str(pid), str(train_job["id"]), env=env)
    assert watched.returncode == 0 and f"job {train_job['id']} train succeeded" in watched.stdout

    simulated = alabel("simulate", str(pid), "--watch", env=env, timeout=400)
    assert simulated.returncode == 0, simulated.stderr
    verdict = [line for line in simulated.stdout.splitlines() if line.startswith("verdict: ")]
    assert verdict and verdict[0].split(": ")[1] in {"saves", "costs", "undecided", "not_enough_data"}
    result = manager.savings(pid)["estimate"]["result"]
    assert simulated.stdout.splitlines()[0] == result["headline"]

    out = tmp_path / "labels.parquet"
    exported = alabel("export", str(pid), str(out), env=env)
    assert exported.returncode == 0 and "(parquet," in exported.stdout, exported.stderr
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 64 and all(sorted(r["labels"]) == sorted(gold[r["id"]]) for r in rows)
