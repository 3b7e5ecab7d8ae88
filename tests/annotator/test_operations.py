"""Retraining operations in-process: cancelling, the full/incremental policy, schedules, serving while re-scoring,
the reconciler's retries and sweeps, /healthz. Real worker and beat processes: tests/integration/test_operations.py.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from annotator import ml, services
from annotator.exceptions import ProjectError
from annotator.models import Job, ModelVersion, QueueItem, TrainingSchedule, WorkerHeartbeat
from annotator.services import training
from annotator.services.schedules import training_scheduled
from annotator.services.training import artifacts_sweep

from .conftest import client_for, make_user

pytestmark = pytest.mark.usefixtures("tiny_encoder")

GOLD = [["joy"], ["anger"], ["sadness", "fear"], ["surprise"], ["joy", "surprise"]]


def _encode_all(project) -> None:
    services.encode_run(job_id=Job.objects.get(project=project, kind="encode", status="PENDING").pk)
    Job.objects.filter(project=project, kind="score", status="PENDING").delete()


def _label(project, user, documents, start: int, n: int) -> None:
    for i, doc in enumerate(documents[start : start + n]):
        services.annotation_submit(project=project, user=user, document_id=doc.pk, labels=GOLD[i % len(GOLD)])


def _train(project, manager, mode: str = "") -> ModelVersion:
    Job.objects.filter(project=project, kind="train", status="PENDING").delete()
    job = services.training_request(project=project, user=manager, mode=mode)
    services.training_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED", job.error
    assert job.device == "cpu" and job.worker and job.started_at <= job.finished_at  # what the jobs table shows
    return job.model_version


# --- cancel ----------------------------------------------------------------------------------------------------------
def test_a_queued_job_is_cancelled_at_once_and_never_runs(project, manager, annotator_user, documents):
    _label(project, annotator_user, documents, 0, 6)
    job = Job.objects.get(project=project, kind="train", status="PENDING")
    services.job_cancel(job=job, user=manager)
    job.refresh_from_db()
    assert job.status == "CANCELLED" and job.finished_at is not None
    services.training_run(job_id=job.pk)  # the message still arrives
    assert not ModelVersion.objects.exists()
    with pytest.raises(ProjectError, match="already finished"):
        services.job_cancel(job=job, user=manager)


def test_a_running_training_run_stops_at_its_next_report_and_leaves_nothing(
    project, manager, annotator_user, documents, monkeypatch
):
    _label(project, annotator_user, documents, 0, 6)
    job = Job.objects.get(project=project, kind="train", status="PENDING")
    real_train = ml.train

    def cancelled_while_training(**kwargs):
        services.job_cancel(job=Job.objects.get(pk=job.pk), user=manager)  # the manager clicks Cancel
        assert Job.objects.get(pk=job.pk).cancel_requested
        return real_train(**kwargs)  # its first progress report stops it

    monkeypatch.setattr(ml, "train", cancelled_while_training)
    services.training_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "CANCELLED"
    assert not ModelVersion.objects.exists()
    models = Path(settings.ARTIFACTS_DIR) / "projects" / str(project.pk) / "models"
    assert not models.exists() or not any(models.iterdir())


def test_cancel_needs_a_manager_and_an_existing_job(project, manager, annotator_user, documents):
    _label(project, annotator_user, documents, 0, 6)
    job = Job.objects.get(project=project, kind="train", status="PENDING")
    base = f"/api/v1/projects/{project.pk}/jobs"
    assert client_for(annotator_user).post(f"{base}/{job.pk}/cancel/").status_code == 403
    assert client_for(manager).post(f"{base}/999999/cancel/").status_code == 404
    job.refresh_from_db()
    assert job.status == "PENDING"
    response = client_for(manager).post(f"{base}/{job.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "CANCELLED"
    detail = client_for(manager).get(f"{base}/{job.pk}/").json()
    assert detail["status"] == "CANCELLED" and detail["mode"] == "auto"
    assert client_for(manager).post(f"{base}/{job.pk}/cancel/").status_code == 400


# --- full or incremental -------------------------------------------------------------------------------------------
def test_the_automatic_policy_updates_incrementally_until_the_labelled_set_grew_enough(
    project, manager, annotator_user, documents
):
    _encode_all(project)
    _label(project, annotator_user, documents, 0, 10)
    v1 = _train(project, manager)
    assert v1.config["mode"] == "full" and v1.config["mode_reason"] == "no serving model to update"

    _label(project, annotator_user, documents, 10, 3)  # +30 %: below full_retrain_growth (50 %)
    v2 = _train(project, manager)
    assert v2.config["mode"] == "incremental"
    assert v2.config["base_version"] == 1 and v2.config["new_documents"] == 3 and v2.config["replayed_documents"] == 10
    assert v2.n_annotations == 13 and v2.is_serving
    assert ml.load_model(str(Path(settings.ARTIFACTS_DIR) / v2.artifact_path)).labels  # a complete model folder

    _label(project, annotator_user, documents, 13, 3)  # 16 documents: +60 % since the last full retrain
    v3 = _train(project, manager)
    assert v3.config["mode"] == "full" and "grew 60%" in v3.config["mode_reason"]

    _label(project, annotator_user, documents, 16, 1)
    assert _train(project, manager, mode="full").config["mode"] == "full"  # asked for
    _label(project, annotator_user, documents, 17, 1)
    services.project_update(project=project, retrain_mode="incremental", replay_size=5)
    v5 = _train(project, manager)
    assert v5.config["mode"] == "incremental" and v5.config["replayed_documents"] == 5


def test_an_incremental_update_with_nothing_new_fails_with_a_reason(project, manager, annotator_user, documents):
    _encode_all(project)
    _label(project, annotator_user, documents, 0, 8)
    _train(project, manager)
    job = services.training_request(project=project, user=manager, mode="incremental")
    services.training_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "FAILED" and "no new annotations since the serving model" in job.error
    with pytest.raises(ProjectError, match="mode must be one of"):
        services.training_request(project=project, user=manager, mode="sometimes")


def test_a_full_request_upgrades_a_queued_automatic_run(project, manager, annotator_user, documents):
    _label(project, annotator_user, documents, 0, 6)
    queued = Job.objects.get(project=project, kind="train", status="PENDING")
    assert queued.mode == "auto"
    assert services.training_request(project=project, user=manager, mode="full").pk == queued.pk
    queued.refresh_from_db()
    assert queued.mode == "full"


# --- re-scoring without staleness -------------------------------------------------------------------------------
def test_next_serves_the_old_queue_until_the_first_chunk_then_the_new_versions_best(
    project, manager, annotator_user, documents, monkeypatch
):
    _encode_all(project)
    _label(project, annotator_user, documents, 0, 6)
    v1 = _train(project, manager)
    services.scoring_run(job_id=Job.objects.get(kind="score", status="PENDING").pk)
    _label(project, annotator_user, documents, 6, 2)
    v2 = _train(project, manager, mode="full")
    other = make_user("second")
    services.member_add(project=project, username="second", role="annotator")

    served = services.queue_lease_next(project=project, user=other)  # v2 has not scored anything yet
    assert served.item.model_version_id == v1.pk and served.item.strategy != "random"
    services.queue_release(project=project, user=other)

    seen = []
    real_publish = training._ChunkPublisher.__call__

    def publish_then_serve(self, items):
        ok = real_publish(self, items)
        served = services.queue_lease_next(project=project, user=other)  # mid-scoring, after this chunk
        seen.append((served.item.model_version_id, served.item.strategy))
        services.queue_release(project=project, user=other)
        return ok

    monkeypatch.setattr(training._ChunkPublisher, "__call__", publish_then_serve)
    scoring = Job.objects.get(kind="score", status="PENDING", model_version=v2)
    services.scoring_run(job_id=scoring.pk)
    assert seen and seen[0][0] == v2.pk and seen[0][1] not in ("random", "evaluation")
    assert set(QueueItem.objects.filter(project=project).values_list("model_version_id", flat=True)) == {v2.pk}
    scoring.refresh_from_db()
    assert scoring.status == "SUCCEEDED"


# --- schedules -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"kind": "cron", "cron": "0 2 * *"}, "needs 5 fields"),
        ({"kind": "cron", "cron": "61 2 * * *"}, "not valid"),
        ({"kind": "interval", "every": 2, "unit": "seconds"}, "at most every 5 seconds"),
        ({"kind": "interval", "every": 2, "unit": "fortnights"}, "unit must be"),
        ({"kind": "daily"}, "needs a time"),
        ({"kind": "weekly"}, "kind must be"),
        ({"kind": "daily", "at": "02:00", "mode": "sometimes"}, "mode must be"),
    ],
)
def test_a_bad_schedule_is_refused_and_nothing_is_created(project, data, problem):
    with pytest.raises(ProjectError, match=problem):
        services.schedule_save(project=project, data=data)
    assert not TrainingSchedule.objects.exists() and not PeriodicTask.objects.filter(name__startswith="alabel").exists()


def test_a_nightly_schedule_runs_in_the_projects_time_zone_and_follows_it(project):
    services.project_update(project=project, timezone="Europe/Berlin")
    schedule = services.schedule_save(project=project, data={"kind": "daily", "at": "02:00", "mode": "full"})
    task = schedule.periodic_task
    assert task.task == "annotator.tasks.scheduled_training" and task.enabled
    assert (task.crontab.hour, task.crontab.minute) == ("2", "0")
    assert str(task.crontab.timezone) == "Europe/Berlin"
    services.project_update(project=project, timezone="America/New_York")
    task.refresh_from_db()
    assert str(task.crontab.timezone) == "America/New_York"
    with pytest.raises(ProjectError, match="unknown time zone"):
        services.project_update(project=project, timezone="Mars/Olympus")

    schedule = services.schedule_save(
        project=project,
        data={"kind": "interval", "every": 6, "unit": "hours", "mode": "incremental"},
        schedule=schedule,
    )
    task.refresh_from_db()
    assert task.crontab is None and (task.interval.every, task.interval.period) == (6, "hours")
    assert PeriodicTask.objects.filter(name__startswith="alabel").count() == 1
    services.schedule_delete(schedule=schedule)
    assert not PeriodicTask.objects.filter(name__startswith="alabel").exists()


def test_a_schedule_fires_a_run_only_when_there_is_something_new(project, manager, annotator_user, documents):
    _encode_all(project)
    schedule = services.schedule_save(project=project, data={"kind": "interval", "every": 1, "unit": "hours"})
    assert training_scheduled(schedule_id=schedule.pk) is None  # nothing labelled
    _label(project, annotator_user, documents, 0, 4)  # below retrain_every (5): no run of its own
    job = training_scheduled(schedule_id=schedule.pk)
    assert job is not None and job.schedule_id == schedule.pk and job.mode == "full"
    services.training_run(job_id=job.pk)
    assert training_scheduled(schedule_id=schedule.pk) is None  # nothing new since that full retrain
    _label(project, annotator_user, documents, 4, 1)
    Job.objects.filter(kind="train", status="PENDING").delete()  # the 5th answer queued one: not this test's
    v2 = _train(project, manager, mode="incremental")
    assert v2.config["mode"] == "incremental"
    assert training_scheduled(schedule_id=schedule.pk) is not None  # only an incremental update since: full is due
    schedule.refresh_from_db()
    assert schedule.last_fired_at is not None
    hourly_off = {"kind": "interval", "every": 1, "unit": "hours", "enabled": False}
    services.schedule_save(project=project, data=hourly_off, schedule=schedule)
    Job.objects.filter(kind="train", status="PENDING").delete()
    assert training_scheduled(schedule_id=schedule.pk) is None  # disabled


def test_schedules_through_the_api(project, manager, annotator_user):
    base = f"/api/v1/projects/{project.pk}/schedules/"
    assert client_for(annotator_user).get(base).status_code == 403
    client = client_for(manager)
    bad = client.post(base, {"kind": "cron", "cron": "every night"}, format="json")
    assert bad.status_code == 400 and "5 fields" in bad.json()["detail"]
    created = client.post(base, {"kind": "daily", "at": "02:00", "mode": "full"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["description"].startswith("full retrain daily at 02:00")
    changed = client.patch(f"{base}{body['id']}/", {"at": "03:30"}, format="json").json()
    assert changed["at"] == "03:30:00"
    assert PeriodicTask.objects.get(name__startswith="alabel").crontab.hour == "3"
    assert client.delete(f"{base}{body['id']}/").status_code == 204
    assert client.get(base).json() == []


def test_the_settings_page_saves_the_policy_and_schedules(project, manager):
    from django.test import Client

    page = Client()
    page.force_login(manager)
    url = f"/projects/{project.pk}/"
    response = page.post(
        url,
        {
            "action": "retraining",
            "retrain_every": "50",
            "retrain_mode": "incremental",
            "full_retrain_growth": "0.5",
            "replay_size": "2000",
            "timezone": "Europe/Berlin",
        },
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.retrain_every, project.retrain_mode, project.timezone) == (50, "incremental", "Europe/Berlin")
    page.post(url, {"action": "schedule", "mode": "full", "kind": "daily", "at": "02:00", "enabled": "on"})
    schedule = TrainingSchedule.objects.get(project=project)
    assert str(schedule.periodic_task.crontab.timezone) == "Europe/Berlin"
    html = page.get(url).content.decode()
    assert "full retrain daily at 02:00 (Europe/Berlin)" in html
    page.post(url, {"action": "schedule", "schedule": str(schedule.pk), "mode": "full", "kind": "cron", "cron": "bad"})
    schedule.refresh_from_db()
    assert schedule.kind == "daily"  # refused, unchanged
    page.post(url, {"action": "schedule-delete", "schedule": str(schedule.pk)})
    assert not TrainingSchedule.objects.exists()


# --- the reconciler ----------------------------------------------------------------------------------------------
def test_a_lost_training_run_is_retried_a_limited_number_of_times(project, settings):
    settings.ALABEL_JOB_MAX_RETRIES = 2
    Job.objects.all().delete()
    long_ago = timezone.now() - timedelta(seconds=settings.ALABEL_JOB_STALE_SECONDS + 5)
    job = Job.objects.create(project=project, kind="train", mode="full", status="RUNNING", heartbeat_at=long_ago)
    chain = [job]
    for _ in range(3):
        services.jobs_reconcile()
        chain[-1].refresh_from_db()
        assert chain[-1].status == "FAILED" and "worker lost" in chain[-1].error
        retry = Job.objects.filter(retry_of=chain[-1]).first()
        if retry is None:
            break
        assert retry.mode == "full"
        Job.objects.filter(pk=retry.pk).update(status="RUNNING", heartbeat_at=long_ago)
        chain.append(retry)
    assert len(chain) == 3  # the first run and two retries; then it stays failed


def test_the_sweep_removes_only_old_model_folders_nobody_refers_to(project, manager, annotator_user, documents):
    _encode_all(project)
    _label(project, annotator_user, documents, 0, 6)
    version = _train(project, manager)
    models = Path(settings.ARTIFACTS_DIR) / "projects" / str(project.pk) / "models"
    orphan, fresh = models / "job999-deadbeef", models / "job998-cafecafe"
    for folder in (orphan, fresh):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    os.utime(Path(settings.ARTIFACTS_DIR) / version.artifact_path, (old, old))
    assert artifacts_sweep() == 1
    assert not orphan.exists() and fresh.exists() and (Path(settings.ARTIFACTS_DIR) / version.artifact_path).exists()


# --- health ----------------------------------------------------------------------------------------------------------
def test_healthz_counts_live_workers_per_queue(client, db, settings):
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="gpu@a", queues="gpu", device="cuda", started_at=now, seen_at=now)
    WorkerHeartbeat.objects.create(hostname="default@b", queues="default", started_at=now, seen_at=now)
    WorkerHeartbeat.objects.create(
        hostname="default@gone", queues="default", started_at=now, seen_at=now - timedelta(minutes=10)
    )
    WorkerHeartbeat.objects.create(
        hostname="default@stopped", queues="default", started_at=now, seen_at=now, stopped_at=now
    )
    body = client.get("/healthz").json()
    assert body["workers"]["queues"] == {"default": {"alive": 1}, "gpu": {"alive": 1}}
    assert "workers" not in body["workers"]  # host names are for staff only
    WorkerHeartbeat.objects.filter(hostname="gpu@a").update(seen_at=now - timedelta(minutes=10))
    body = client.get("/healthz").json()
    assert body["workers"]["queues"]["gpu"] == {"alive": 0}
    if body["broker"] == "ok":
        assert body["status"] == "degraded"
    staff = make_user("root")
    staff.is_staff = True
    staff.save()
    client.force_login(staff)
    assert [w["hostname"] for w in client.get("/healthz").json()["workers"]["workers"]] == ["default@b"]
