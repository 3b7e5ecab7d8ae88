"""Tests of annotator.services.reconcile."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotator import services
from annotator.models import Job

from .conftest import records

pytestmark = pytest.mark.usefixtures("tiny_encoder")


def test_reconcile_fails_jobs_whose_worker_died_and_retries_them(project, documents, settings):
    Job.objects.all().delete()
    stale = Job.objects.create(
        project=project,
        kind="encode",
        status="RUNNING",
        heartbeat_at=timezone.now() - timedelta(seconds=settings.ALABEL_JOB_STALE_SECONDS + 5),
    )
    counts = services.jobs_reconcile()
    stale.refresh_from_db()
    assert stale.status == "FAILED" and "stopped reporting" in stale.error
    assert counts["failed_stale"] == 1
    assert Job.objects.filter(kind="encode", status="PENDING").count() == 1


def test_reconcile_requests_training_that_is_due(project, manager, annotator_user):
    services.documents_import(project=project, user=manager, records=records(6, labels=[["joy"]] * 6))
    Job.objects.filter(kind="train").delete()
    assert services.jobs_reconcile()["training_requested"] == 1
    assert Job.objects.filter(kind="train", status="PENDING").count() == 1


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
