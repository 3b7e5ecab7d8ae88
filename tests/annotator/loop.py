"""Steps of the learning loop that many annotator tests take in-process: encode, label, train, run a job."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from annotator import services
from annotator.models import Annotation, Job, ModelVersion, QueueItem

GOLD = [["joy"], ["anger"], ["sadness", "fear"], [], ["surprise"], ["joy", "surprise"]]  # with an empty answer
ANSWERS = [["joy"], ["anger"], ["sadness", "fear"], ["surprise"], ["joy", "surprise"]]  # every answer ticks a label


def encode_all(project) -> None:
    """Runs the encode job the import queued, and drops the scoring job it asks for."""
    services.encode_run(job_id=Job.objects.get(project=project, kind="encode", status="PENDING").pk)
    Job.objects.filter(project=project, kind="score", status="PENDING").delete()


def label_some(project, user, documents, n: int = 12) -> None:
    """The first `n` documents answered with GOLD in turn."""
    for i, doc in enumerate(documents[:n]):
        services.annotation_submit(project=project, user=user, document_id=doc.pk, labels=GOLD[i % len(GOLD)])


def label(project, user, documents, start: int, n: int) -> None:
    """Documents start .. start + n - 1 answered with ANSWERS in turn (from the first)."""
    for i, doc in enumerate(documents[start : start + n]):
        services.annotation_submit(project=project, user=user, document_id=doc.pk, labels=ANSWERS[i % len(ANSWERS)])


def train(project, manager, mode: str = "") -> ModelVersion:
    """A training run asked for now (queued runs dropped); it must succeed. Returns its version."""
    Job.objects.filter(project=project, kind="train", status="PENDING").delete()
    job = services.training_request(project=project, user=manager, mode=mode)
    services.training_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED", job.error
    assert job.device == "cpu" and job.worker and job.started_at <= job.finished_at  # what the jobs table shows
    return job.model_version


def run(kind: str, project, runner) -> Job:
    """A job of `kind` requested and run in-process by `runner`; returns it finished."""
    job, _ = services.job_request(project=project, kind=kind, reason="test")
    runner(job_id=job.pk)
    job.refresh_from_db()
    return job


def answer_served(project, user, document_id: int, labels: list[str]) -> Annotation:
    """The user's answer to a document as if `next` had served it to them (a lease on its queue row): the way
    evaluation documents are answered (they are labelled blind, never picked)."""
    item, _ = QueueItem.objects.get_or_create(
        project=project,
        document_id=document_id,
        model_version=None,
        defaults={"strategy": "evaluation", "score": -1.0, "suggestions": []},
    )
    QueueItem.objects.filter(pk=item.pk).update(leased_to=user, lease_expires_at=timezone.now() + timedelta(minutes=10))
    return services.annotation_submit(project=project, user=user, document_id=document_id, labels=labels)
