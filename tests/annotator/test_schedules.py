"""Tests of annotator.services.schedules."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from annotator import services
from annotator.exceptions import ProjectError
from annotator.models import Job, TrainingSchedule
from annotator.services.schedules import training_scheduled

from .conftest import client_for
from .loop import encode_all, label, train

pytestmark = pytest.mark.usefixtures("tiny_encoder")


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
        ({"kind": "interval", "every": 1_000_000_000, "unit": "days"}, "at most 366 days"),
        ({"kind": "interval", "every": 3_000_000, "unit": "days"}, "at most 366 days"),
        ({"kind": "interval", "every": 10**12, "unit": "seconds"}, "at most 31,622,400 seconds"),
        ({"kind": "interval", "every": -5, "unit": "hours"}, "whole number"),
        ({"kind": "interval", "every": True, "unit": "hours"}, "whole number"),
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
    encode_all(project)
    schedule = services.schedule_save(project=project, data={"kind": "interval", "every": 1, "unit": "hours"})
    assert training_scheduled(schedule_id=schedule.pk) is None  # nothing labelled
    label(project, annotator_user, documents, 0, 4)  # below retrain_every (5): no run of its own
    job = training_scheduled(schedule_id=schedule.pk)
    assert job is not None and job.schedule_id == schedule.pk and job.mode == "full"
    services.training_run(job_id=job.pk)
    assert training_scheduled(schedule_id=schedule.pk) is None  # nothing new since that full retrain
    label(project, annotator_user, documents, 4, 1)
    Job.objects.filter(kind="train", status="PENDING").delete()  # the 5th answer queued one: not this test's
    v2 = train(project, manager, mode="incremental")
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
        f"{url}manage/retraining/",
        {
            "retrain_every": "50",
            "retrain_mode": "incremental",
            "full_retrain_growth": "0.5",
            "replay_size": "2000",
            "timezone": "Europe/Berlin",
            "model_tier": "fast",
        },
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.retrain_every, project.retrain_mode, project.timezone) == (50, "incremental", "Europe/Berlin")
    page.post(f"{url}manage/schedule/", {"mode": "full", "kind": "daily", "at": "02:00", "enabled": "on"})
    schedule = TrainingSchedule.objects.get(project=project)
    assert str(schedule.periodic_task.crontab.timezone) == "Europe/Berlin"
    html = page.get(url).content.decode()
    assert "full retrain daily at 02:00 (Europe/Berlin)" in html
    page.post(f"{url}manage/schedule/", {"schedule": str(schedule.pk), "mode": "full", "kind": "cron", "cron": "bad"})
    schedule.refresh_from_db()
    assert schedule.kind == "daily"  # refused, unchanged
    page.post(f"{url}manage/schedule-delete/", {"schedule": str(schedule.pk)})
    assert not TrainingSchedule.objects.exists()


def test_the_api_refuses_the_schedule_that_stopped_beat(project, manager):
    """Issue 16: {"every": 1000000000, "unit": "days"} was accepted (201) and beat then exited at every start."""
    response = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/schedules/",
        {"kind": "interval", "every": 1000000000, "unit": "days", "enabled": True},
        format="json",
    )
    assert response.status_code == 400
    assert "at least once a year" in response.json()["detail"]
    assert not TrainingSchedule.objects.exists()


@pytest.mark.parametrize("days", [1_000_000_000, 3_000_000])
def test_beat_switches_off_a_schedule_it_cannot_load_and_keeps_the_others(project, manager, days):
    """A schedule saved before the limits existed (written to the database directly here) never stops beat: the
    scheduler switches it off, says why on the settings page and in the API, and loads every other entry."""
    from django_celery_beat.models import IntervalSchedule

    from annotator.beat import SafeDatabaseScheduler
    from webapp.celery import app

    good = services.schedule_save(project=project, data={"kind": "interval", "every": 2, "unit": "hours"})
    bad = services.schedule_save(project=project, data={"kind": "interval", "every": 1, "unit": "days"})
    huge = IntervalSchedule.objects.create(every=days, period="days")
    PeriodicTask.objects.filter(pk=bad.periodic_task_id).update(interval=huge)
    TrainingSchedule.objects.filter(pk=bad.pk).update(every=days)

    entries = SafeDatabaseScheduler(app=app, lazy=True).all_as_schedule()

    assert good.periodic_task.name in entries and bad.periodic_task.name not in entries
    bad.refresh_from_db()
    assert not bad.enabled and "beat could not load this schedule" in bad.error
    assert not PeriodicTask.objects.get(pk=bad.periodic_task_id).enabled
    page = client_for(manager).get(f"/projects/{project.pk}/").content.decode()
    assert "beat could not load this schedule" in page
    listed = client_for(manager).get(f"/api/v1/projects/{project.pk}/schedules/").json()
    assert {s["id"]: bool(s["error"]) for s in listed} == {good.pk: False, bad.pk: True}
    services.schedule_save(project=project, schedule=bad, data={"kind": "interval", "every": 2, "unit": "days"})
    bad.refresh_from_db()
    assert bad.enabled and bad.error == ""  # fixed by its manager: on again
