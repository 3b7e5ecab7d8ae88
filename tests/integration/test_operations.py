"""Retraining operations with real parts: Celery worker and beat processes, a Redis broker, the test database.

Bursts of labels coalesce into one run and one follow-up; a worker killed with SIGKILL mid-training leaves the
registry as it was and the run is retried; answers given while the broker is down are saved and train a model
once it is back, without anyone doing anything; a task delivered twice makes one version; a schedule created on
the settings page fires.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.test import Client
from rest_framework.test import APIClient

from annotator import tasks
from annotator.management import embedded_redis
from annotator.models import Annotation, Job, ModelVersion, TrainingSchedule
from annotator.services import jobs_reconcile
from annotator.services.demo import demo_labels, demo_records
from webapp.celery import app as celery_app

from .conftest import purge_queues, service_env, start_beat, start_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _user(username: str, *, can_create: bool = False):
    user = get_user_model().objects.create_user(username=username, password="correct horse battery")
    if can_create:
        user.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    return user


def _client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _setup(n_documents: int, *, retrain_every: int) -> tuple[APIClient, APIClient, str, int, dict[str, list[str]]]:
    """A project of demo documents (no evaluation set: every answer trains) with a manager and an annotator.
    Returns (manager client, annotator client, API base, project id, gold labels by external id)."""
    manager, annotator = _client(_user("manager", can_create=True)), _client(_user("annotator"))
    project = manager.post(
        "/api/v1/projects/",
        {"name": "Ops", "labels": demo_labels(), "retrain_every": retrain_every, "eval_size": 0},
        format="json",
    ).json()
    base = f"/api/v1/projects/{project['id']}"
    assert manager.post(f"{base}/members/", {"username": "annotator", "role": "annotator"}, format="json").status_code
    sample = demo_records(n_documents, with_labels=True)
    response = manager.post(
        f"{base}/documents/", [{"id": r.external_id, "text": r.text} for r in sample], format="json"
    )
    assert response.status_code == 201, response.content
    return manager, annotator, base, project["id"], {r.external_id: r.labels for r in sample}


def _label(annotator: APIClient, base: str, gold: dict[str, list[str]], n: int) -> None:
    """The annotator takes `n` documents from `next` and answers each with its gold labels."""
    for _ in range(n):
        served = annotator.get(f"{base}/next/")
        assert served.status_code == 200, served.content
        document = served.json()["document"]
        response = annotator.post(
            f"{base}/annotations/",
            {"document": document["id"], "labels": gold[document["external_id"]]},
            format="json",
        )
        assert response.status_code == 201, response.content


def _wait_encoded(project_id: int) -> None:
    wait_for(
        lambda: Job.objects.filter(project_id=project_id, kind="encode", status="SUCCEEDED").exists(),
        timeout=240,
        what="the documents to be encoded",
    )


def _train_jobs(project_id: int) -> list[Job]:
    return list(Job.objects.filter(project_id=project_id, kind="train").order_by("id"))


@contextmanager
def _first_run_held(job_id: int) -> Iterator[None]:
    """Holds a running job back. PostgreSQL: a second connection locks the job's row, so the worker waits at its
    next progress or heartbeat write (answers do not touch that row). SQLite, one writer at a time: the answers
    are written in one transaction, so the worker's writes wait for them."""
    if connection.vendor == "postgresql":
        import psycopg

        db = connection.settings_dict
        holder = psycopg.connect(
            dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"] or None, host=db["HOST"], port=db["PORT"]
        )
        try:
            holder.execute("SELECT id FROM annotator_job WHERE id = %s FOR UPDATE", [job_id])
            yield
        finally:
            holder.rollback()
            holder.close()
    else:
        with transaction.atomic():
            yield


def test_a_burst_of_labels_yields_one_run_and_one_follow_up(celery_worker):
    _manager, annotator, base, project_id, gold = _setup(160, retrain_every=20)
    _wait_encoded(project_id)
    _label(annotator, base, gold, 20)  # the 20th answer crosses the threshold
    first = wait_for(
        lambda: Job.objects.filter(project_id=project_id, kind="train", status="RUNNING").exclude(message="").first(),
        timeout=120,
        interval=0.05,
        what="the first training run to take its snapshot",
    )
    # The other 80 answers arrive while the first run trains: each crosses or re-crosses the threshold, none
    # queues a second run. The first run is held back meanwhile, whatever the machine's speed, so that all 80 land
    # after its snapshot and before it publishes.
    with _first_run_held(first.pk):
        for _ in range(8):
            _label(annotator, base, gold, 10)
            active = Job.objects.filter(project_id=project_id, kind="train", status__in=["PENDING", "RUNNING"])
            assert active.count() <= 1
    assert Annotation.objects.filter(project_id=project_id).count() == 100

    wait_for(
        lambda: ModelVersion.objects.filter(project_id=project_id, n_annotations=100).exists(),
        timeout=300,
        what="the follow-up run to train on all 100 answers",
    )
    wait_for(
        lambda: not Job.objects.filter(project_id=project_id, status__in=["PENDING", "RUNNING"]).exists(),
        timeout=120,
        what="the loop to go quiet",
    )
    runs = _train_jobs(project_id)
    assert [job.status for job in runs] == ["SUCCEEDED", "SUCCEEDED"]
    assert runs[0].pk == first.pk
    versions = list(ModelVersion.objects.filter(project_id=project_id).order_by("number"))
    assert [v.n_annotations for v in versions] == [20, 100]
    assert versions[-1].is_serving


def test_sigkill_during_training_leaves_the_registry_unchanged_and_the_run_is_retried(
    celery_worker, broker_url, settings, tmp_path
):
    manager, annotator, base, project_id, gold = _setup(240, retrain_every=10_000)
    _wait_encoded(project_id)
    _label(annotator, base, gold, 40)
    assert manager.post(f"{base}/train/", {"mode": "full"}, format="json").status_code == 202
    v1 = wait_for(
        lambda: ModelVersion.objects.filter(project_id=project_id, is_serving=True).first(),
        timeout=240,
        what="v1",
    )
    _label(annotator, base, gold, 160)
    job_id = manager.post(f"{base}/train/", {"mode": "full"}, format="json").json()["id"]
    wait_for(
        lambda: Job.objects.filter(pk=job_id, message__startswith="training").exists(),
        timeout=120,
        what="the second run to start training",
        interval=0.05,
    )
    celery_worker.kill()  # SIGKILL to the worker and its pool: no cleanup, no ack

    job = Job.objects.get(pk=job_id)
    assert job.status == "RUNNING"  # nobody could say otherwise: it died
    assert list(ModelVersion.objects.filter(project_id=project_id).values_list("number", "is_serving")) == [(1, True)]
    models = Path(settings.ARTIFACTS_DIR) / "projects" / str(project_id) / "models"
    assert [p.name for p in models.iterdir() if not p.name.startswith(".")] == [Path(v1.artifact_path).name]

    settings.ALABEL_JOB_STALE_SECONDS = 3
    wait_for(
        lambda: jobs_reconcile()["failed_stale"] or Job.objects.get(pk=job_id).status == "FAILED",
        timeout=60,
        what="the reconciler to notice the dead worker",
        interval=1.0,
    )
    job.refresh_from_db()
    assert job.status == "FAILED" and "worker lost" in job.error
    retry = Job.objects.get(retry_of=job)
    assert retry.status == "PENDING" and retry.mode == "full"
    assert ModelVersion.objects.get(project_id=project_id, is_serving=True).number == 1

    worker = start_worker(service_env(broker_url, settings), tmp_path / "worker-2.log", name="second")
    try:
        v2 = wait_for(
            lambda: ModelVersion.objects.filter(project_id=project_id, number=2).first(),
            timeout=300,
            what="the retried run to publish v2",
        )
    finally:
        worker.stop()
    assert v2.is_serving and v2.n_annotations == 200
    retry.refresh_from_db()
    assert retry.status == "SUCCEEDED" and retry.model_version_id == v2.pk


def test_the_same_training_task_delivered_twice_yields_one_version(celery_worker):
    manager, annotator, base, project_id, gold = _setup(80, retrain_every=10_000)
    _wait_encoded(project_id)
    _label(annotator, base, gold, 30)
    job_id = manager.post(f"{base}/train/", format="json").json()["id"]
    tasks.train_model.delay(job_id)  # a second delivery of the same job (e.g. redelivered after a timeout)
    wait_for(
        lambda: celery_worker.log(200_000).count("annotator.tasks.train_model[") >= 4,  # received + finished, x2
        timeout=300,
        what="both deliveries to finish",
    )
    wait_for(lambda: Job.objects.get(pk=job_id).status == "SUCCEEDED", timeout=60, what="the run to succeed")
    assert ModelVersion.objects.filter(project_id=project_id).count() == 1
    assert Job.objects.get(pk=job_id).attempts == 1
    assert len(_train_jobs(project_id)) == 1


@pytest.fixture
def private_broker(transactional_db, settings, monkeypatch):
    """A redis-server of this test's own on a free TCP port (the machine's Redis is shared and must not be
    stopped), with this process publishing to it. Yields (url, start, stop)."""
    folder = Path(tempfile.mkdtemp(prefix="alabel-broker-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    state = {"process": embedded_redis.start(folder / "redis.sock", port=port, log_path=folder / "redis.log")}

    def reset_pools() -> None:
        # Drop this app's cached pools (kombu keeps one per broker URL and hands it out again: never close them)
        # so that it publishes to the broker now configured.
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    old_url = celery_app.conf.broker_url
    settings.CELERY_BROKER_URL = url  # pytest-django restores it
    monkeypatch.setenv("CELERY_BROKER_URL", url)  # Celery reads this variable before its own settings
    celery_app.conf.broker_url = url
    reset_pools()

    def stop() -> None:
        state["process"].terminate()
        state["process"].wait(timeout=10)

    def start() -> None:
        state["process"] = embedded_redis.start(folder / "redis.sock", port=port, log_path=folder / "redis.log")

    try:
        yield url, start, stop
    finally:
        if state["process"].poll() is None:
            stop()
        celery_app.conf.broker_url = old_url
        reset_pools()
        shutil.rmtree(folder, ignore_errors=True)


def test_answers_given_while_the_broker_is_down_are_saved_and_train_once_it_is_back(private_broker, settings, tmp_path):
    url, start_broker, stop_broker = private_broker
    env = service_env(url, settings, ALABEL_RECONCILE_SECONDS="2")
    worker = start_worker(env, tmp_path / "worker.log")
    beat = start_beat(env, tmp_path / "beat.log", tmp_path)
    try:
        _manager, annotator, base, project_id, gold = _setup(90, retrain_every=20)
        _wait_encoded(project_id)
        # The worker is idle when the broker goes (kombu 5.6 cannot restore an in-flight acks_late message over a
        # dead connection and the worker exits: docker-compose restarts it, docs/operations.md).
        wait_for(
            lambda: not Job.objects.filter(project_id=project_id, status__in=["PENDING", "RUNNING"]).exists(),
            timeout=120,
            what="the cold-start queue",
        )

        stop_broker()
        _label(annotator, base, gold, 30)  # every answer is accepted (201) with the broker down
        assert Annotation.objects.filter(project_id=project_id).count() == 30
        pending = Job.objects.get(project_id=project_id, kind="train")
        assert pending.status == "PENDING" and pending.dispatched_at is None  # could not be sent
        assert not ModelVersion.objects.filter(project_id=project_id).exists()

        start_broker()  # nothing else: beat's reconciler sends the pending run, the worker trains
        if worker.poll() is not None:
            # Beat sends the reconciler every 2 s here, so the worker may have been acknowledging one when the broker
            # went: kombu then cannot reconnect and the worker exits. In production docker-compose restarts it
            # (`restart: unless-stopped`, docs/operations.md); the test does what the restart policy does.
            print(f"--- the worker exited when the broker went (code {worker.poll()}); restarted like compose does")
            worker = start_worker(env, tmp_path / "worker-restarted.log")
        version = wait_for(
            lambda: ModelVersion.objects.filter(project_id=project_id).first(),
            timeout=300,
            what="a model version after the broker came back",
        )
        assert version.n_annotations == 30
        pending.refresh_from_db()
        assert pending.status == "SUCCEEDED" and pending.dispatched_at is not None
    finally:
        beat.stop()
        worker.stop()


def test_a_schedule_created_on_the_settings_page_fires(celery_worker, broker_url, settings, tmp_path):
    _manager, annotator, base, project_id, gold = _setup(40, retrain_every=10_000)
    _label(annotator, base, gold, 12)
    beat = start_beat(service_env(broker_url, settings), tmp_path / "beat.log", tmp_path)
    try:
        page = Client()
        page.force_login(get_user_model().objects.get(username="manager"))
        response = page.post(
            f"/projects/{project_id}/manage/schedule/",
            {
                "mode": "full",
                "kind": "interval",
                "every": "5",
                "unit": "seconds",
                "enabled": "on",
                "skip_unchanged": "on",
            },
        )
        assert response.status_code == 302
        schedule = TrainingSchedule.objects.get(project_id=project_id)
        assert schedule.periodic_task is not None and schedule.periodic_task.enabled
        job = wait_for(
            lambda: Job.objects.filter(project_id=project_id, kind="train", schedule=schedule).first(),
            timeout=120,
            what="the schedule to fire a training run",
        )
        assert job.mode == "full" and job.reason.startswith("schedule: full retrain every 5 seconds")
        version = wait_for(
            lambda: ModelVersion.objects.filter(project_id=project_id).first(),
            timeout=240,
            what="the scheduled run's model version",
        )
        assert version.config["mode"] == "full" and version.n_annotations == 12
        schedule.refresh_from_db()
        assert schedule.last_fired_at is not None
        page_html = page.get(f"/projects/{project_id}/").content.decode()
        assert "full retrain every 5 seconds" in page_html
    finally:
        beat.stop()
    purge_queues()
