"""Tests of annotator.tasks: every job kind reaches a registered task on the right queue, and a task delivered twice
runs its job once."""

from __future__ import annotations

import pytest

from annotator import tasks
from annotator.models import Job
from annotator.services.jobs import TASKS

GPU_KINDS = {Job.Kind.ENCODE, Job.Kind.TRAIN, Job.Kind.ADAPT}  # they load the encoder or train: the gpu worker


def test_every_job_kind_is_sent_to_a_registered_task_on_its_queue():
    from webapp.celery import app

    assert set(TASKS) == set(Job.Kind.values)
    for kind, name in TASKS.items():
        assert name in app.tasks, f"{kind} jobs are sent to {name}, which no worker knows"
        queue = app.amqp.router.route({}, name)["queue"].name
        assert queue == ("gpu" if kind in GPU_KINDS else "default"), (kind, queue)


@pytest.mark.usefixtures("tiny_encoder")
def test_a_task_delivered_twice_runs_its_job_once(project, documents):
    job = Job.objects.get(project=project, kind="encode", status="PENDING")  # queued by the import
    tasks.encode_documents(job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED" and job.message.startswith(f"encoded {len(documents)} documents")
    finished = job.finished_at
    tasks.encode_documents(job.pk)  # redelivered (e.g. after a worker lost its connection)
    job.refresh_from_db()
    assert job.finished_at == finished
    assert Job.objects.filter(project=project, kind="score").count() == 1  # one follow-up scoring run, not two
