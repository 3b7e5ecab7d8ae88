"""Celery beat's scheduler: django-celery-beat's database scheduler, except that one entry it cannot load never
stops beat (and with it every project's schedules). Set in webapp/settings.py (CELERY_BEAT_SCHEDULER)."""

from __future__ import annotations

import logging

from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

# What loading or timing an entry raises when its schedule is beyond the dates Python can compute (an interval of
# 10^9 days: timedelta; of 3 * 10^6 days: the next run's datetime) or otherwise malformed.
UNLOADABLE = (OverflowError, ValueError, TypeError, ArithmeticError)


class SafeDatabaseScheduler(DatabaseScheduler):
    def all_as_schedule(self) -> dict:
        from annotator.services.schedules import schedule_unloadable

        entries = {}
        for model in self.enabled_models():
            try:
                entry = self.Entry(model, app=self.app)
                entry.is_due()  # computes the next run now, not in beat's loop where it would crash every tick
            except UNLOADABLE as exc:
                schedule_unloadable(periodic_task_id=model.pk, error=f"{type(exc).__name__}: {exc}")
                continue
            entries[model.name] = entry
        return entries
