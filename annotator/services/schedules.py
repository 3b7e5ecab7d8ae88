"""Training schedules: a project's periodic runs ("full retrain nightly at 02:00"), kept as django-celery-beat
PeriodicTask rows that beat reads from the database, so that a change on the settings page takes effect within
seconds without restarting anything."""

from __future__ import annotations

import json
import logging
import zoneinfo
from datetime import time as dtime
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..exceptions import ProjectError
from ..models import Annotation, Job, ModelVersion, Project, TrainingSchedule, TrainMode
from .jobs import job_request

logger = logging.getLogger(__name__)

TASK = "annotator.tasks.scheduled_training"
UNIT_PERIODS = {"seconds": "seconds", "minutes": "minutes", "hours": "hours", "days": "days"}
UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
MIN_INTERVAL_SECONDS = 5
MAX_INTERVAL_DAYS = 366  # a schedule runs at least once a year: beat computes dates with it, and they must exist


def timezone_validate(name: str) -> str:
    name = (name or "").strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ProjectError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC") from exc
    return name


def _cron_fields(expression: str) -> list[str]:
    from celery.schedules import crontab

    fields = expression.split()
    if len(fields) != 5:
        raise ProjectError(f'cron expression {expression!r} needs 5 fields: "minute hour day month weekday"')
    try:
        minute, hour, day, month, weekday = fields
        crontab(minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday)
    except (ValueError, KeyError) as exc:
        raise ProjectError(f"cron expression {expression!r} is not valid: {exc}") from exc
    return fields


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    """Validates a schedule's fields (form or API); raises ProjectError naming what is wrong."""
    mode = str(data.get("mode") or TrainMode.FULL)
    if mode not in TrainMode.values:
        raise ProjectError(f"mode must be one of {', '.join(TrainMode.values)}")
    kind = str(data.get("kind") or "")
    cleaned: dict[str, Any] = {"mode": mode, "kind": kind, "every": None, "unit": "", "at": None, "cron": ""}
    if kind == TrainingSchedule.Kind.INTERVAL:
        every = data.get("every") or 0
        if isinstance(every, bool) or not isinstance(every, int | str) or not str(every).strip().isdigit():
            raise ProjectError("every must be a whole number")
        every = int(str(every).strip())
        unit = str(data.get("unit") or "")
        if unit not in UNIT_PERIODS:
            raise ProjectError(f"unit must be one of {', '.join(UNIT_PERIODS)}")
        seconds = every * UNIT_SECONDS[unit]
        if seconds < MIN_INTERVAL_SECONDS:
            raise ProjectError(f"a schedule runs at most every {MIN_INTERVAL_SECONDS} seconds")
        if seconds > MAX_INTERVAL_DAYS * UNIT_SECONDS["days"]:
            limit = MAX_INTERVAL_DAYS * UNIT_SECONDS["days"] // UNIT_SECONDS[unit]
            raise ProjectError(f"a schedule runs at least once a year: every must be at most {limit:,} {unit}")
        cleaned.update(every=every, unit=unit)
    elif kind == TrainingSchedule.Kind.DAILY:
        at = data.get("at")
        if isinstance(at, str):
            try:
                at = dtime.fromisoformat(at.strip())
            except ValueError as exc:
                raise ProjectError(f"time {at!r} is not HH:MM") from exc
        if not isinstance(at, dtime):
            raise ProjectError("a daily schedule needs a time (HH:MM)")
        cleaned["at"] = at.replace(second=0, microsecond=0)
    elif kind == TrainingSchedule.Kind.CRON:
        cron = " ".join(str(data.get("cron") or "").split())
        _cron_fields(cron)
        cleaned["cron"] = cron
    else:
        raise ProjectError(f"kind must be one of {', '.join(TrainingSchedule.Kind.values)}")
    cleaned["enabled"] = bool(data.get("enabled", True))
    cleaned["skip_unchanged"] = bool(data.get("skip_unchanged", True))
    return cleaned


def _sync_periodic_task(schedule: TrainingSchedule) -> None:
    """Creates or updates the beat entry of `schedule` (interval or crontab in the project's time zone)."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    fields: dict[str, Any] = {"interval": None, "crontab": None}
    if schedule.kind == TrainingSchedule.Kind.INTERVAL:
        fields["interval"], _ = IntervalSchedule.objects.get_or_create(
            every=schedule.every, period=UNIT_PERIODS[schedule.unit]
        )
    else:
        if schedule.kind == TrainingSchedule.Kind.DAILY:
            assert schedule.at is not None
            minute, hour, dom, month, dow = str(schedule.at.minute), str(schedule.at.hour), "*", "*", "*"
        else:
            minute, hour, dom, month, dow = _cron_fields(schedule.cron)
        fields["crontab"], _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=dom,
            month_of_year=month,
            day_of_week=dow,
            timezone=zoneinfo.ZoneInfo(schedule.project.timezone),
        )
    values = {
        "name": f"alabel: project {schedule.project_id} schedule {schedule.pk}",
        "task": TASK,
        "kwargs": json.dumps({"schedule_id": schedule.pk}),
        "queue": "default",
        "enabled": schedule.enabled,
        "description": describe(schedule),
        **fields,
    }
    task = schedule.periodic_task
    if task is None:
        task = PeriodicTask.objects.create(**values)
        schedule.periodic_task = task
        schedule.save(update_fields=["periodic_task"])
    else:
        for name, value in values.items():
            setattr(task, name, value)
        task.save()


@transaction.atomic
def schedule_save(
    *, project: Project, data: dict[str, Any], user=None, schedule: TrainingSchedule | None = None
) -> TrainingSchedule:
    """Creates (or, given `schedule`, changes) a training schedule and its beat entry."""
    cleaned = _clean(data)
    if schedule is None:
        schedule = TrainingSchedule(project=project, created_by=user)
    elif schedule.project_id != project.pk:
        raise ProjectError("that schedule belongs to another project")
    for name, value in cleaned.items():
        setattr(schedule, name, value)
    schedule.error = ""  # saved again (and valid): beat loads it afresh
    schedule.save()
    _sync_periodic_task(schedule)
    return schedule


def schedule_unloadable(*, periodic_task_id: int, error: str) -> None:
    """Beat could not load a beat entry (e.g. an interval beyond the dates it can compute, saved before the
    limits existed): the entry is switched off, and when it is a project's schedule, the schedule too, with the
    reason for its manager (the settings page and the API show it). Beat itself goes on with the others."""
    from django_celery_beat.models import PeriodicTask

    PeriodicTask.objects.filter(pk=periodic_task_id).update(enabled=False)
    message = f"beat could not load this schedule and switched it off ({error[:300]}); change it to switch it on"
    found = TrainingSchedule.objects.filter(periodic_task_id=periodic_task_id).update(enabled=False, error=message)
    logger.error("beat entry %s switched off: %s%s", periodic_task_id, error, "" if found else " (no project schedule)")


@transaction.atomic
def schedule_delete(*, schedule: TrainingSchedule) -> None:
    task = schedule.periodic_task
    schedule.delete()
    if task is not None:
        task.delete()


def schedules_retime(*, project: Project) -> None:
    """After the project's time zone changed: its daily and cron schedules follow it."""
    for schedule in project.schedules.exclude(kind=TrainingSchedule.Kind.INTERVAL).select_related("periodic_task"):
        _sync_periodic_task(schedule)


def describe(schedule: TrainingSchedule) -> str:
    what = {"full": "full retrain", "incremental": "incremental update", "auto": "training run"}[schedule.mode]
    if schedule.kind == TrainingSchedule.Kind.INTERVAL:
        return f"{what} every {schedule.every} {schedule.unit}"
    if schedule.kind == TrainingSchedule.Kind.DAILY and schedule.at is not None:
        return f"{what} daily at {schedule.at:%H:%M} ({schedule.project.timezone})"
    return f"{what} at cron '{schedule.cron}' ({schedule.project.timezone})"


def training_scheduled(*, schedule_id: int) -> Job | None:
    """Beat fired a schedule: queues its training run (coalesced with any queued or running one). Skips when the
    schedule is gone or disabled, when nothing is labelled, or (skip_unchanged) when no answer arrived since the
    newest version built the same way (a full retrain still runs if only incremental updates happened since)."""
    schedule = TrainingSchedule.objects.select_related("project").filter(pk=schedule_id).first()
    if schedule is None or not schedule.enabled:
        return None
    project = schedule.project
    TrainingSchedule.objects.filter(pk=schedule.pk).update(last_fired_at=timezone.now())
    if project.archived_at is not None:
        logger.info("schedule %s: the project is archived", schedule.pk)
        return None
    answers = Annotation.objects.filter(project=project)
    if not answers.exists():
        logger.info("schedule %s: nothing labelled yet", schedule.pk)
        return None
    if schedule.skip_unchanged:
        versions = ModelVersion.objects.filter(project=project).order_by("-number")
        if schedule.mode == TrainMode.FULL:
            versions = versions.filter(config__mode="full")
        newest = versions.first()
        if newest is not None and not answers.filter(updated_at__gt=newest.data_cutoff).exists():
            logger.info("schedule %s: no new answers since v%s", schedule.pk, newest.number)
            return None
    job, _ = job_request(
        project=project,
        kind=Job.Kind.TRAIN,
        reason=f"schedule: {describe(schedule)}",
        mode=schedule.mode,
        schedule=schedule,
    )
    return job
