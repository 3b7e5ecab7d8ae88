"""Tests of annotator.services.jobs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from annotator import ml, services
from annotator.exceptions import ProjectError
from annotator.models import Job, ModelVersion

from .conftest import client_for
from .loop import label

pytestmark = pytest.mark.usefixtures("tiny_encoder")


def test_a_stale_running_job_can_be_claimed_again_but_a_live_one_cannot(project, settings):
    job = Job.objects.create(project=project, kind="score", status="RUNNING", heartbeat_at=timezone.now())
    assert services.job_claim(job_id=job.pk) is None
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    claimed = services.job_claim(job_id=job.pk)
    assert claimed is not None and claimed.attempts == 1


# --- cancel ----------------------------------------------------------------------------------------------------------
def test_a_queued_job_is_cancelled_at_once_and_never_runs(project, manager, annotator_user, documents):
    label(project, annotator_user, documents, 0, 6)
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
    label(project, annotator_user, documents, 0, 6)
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
    label(project, annotator_user, documents, 0, 6)
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
