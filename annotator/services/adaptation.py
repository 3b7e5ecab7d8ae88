"""Encoder adaptation: the sentence encoder fine-tuned on the project's labelled documents (learner.adapt), every
document embedded again with it, then a full retrain on the new embeddings.

A run claims its ADAPT job (gpu queue), writes the adapted encoder into a fresh folder, re-embeds the project's
documents and label names under the new encoder's fingerprint (the old embeddings stay: the serving model keeps
reading them until a model trained on the new ones is published), and records an EncoderVersion in one transaction
with the job's success. The next training reads the newest encoder; each model version records the encoder it
reads, so scoring, evaluation and a rollback always embed with the right one.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from .. import ml
from ..exceptions import ProjectError
from ..models import Document, EncoderVersion, Job, Project
from .jobs import (
    Heartbeat,
    JobCancelled,
    JobLiveness,
    job_claim,
    job_request,
    job_succeed,
)
from .training import JOB_ERRORS, _encode_missing, _label_texts, _multi_hot, _texts, _training_snapshot, abandon


def _check_enough(n_documents: int) -> None:
    minimum = settings.ALABEL_ADAPT_MIN_DOCUMENTS
    if n_documents < minimum:
        raise ProjectError(
            f"adapting the encoder needs at least {minimum} labelled documents (outside the evaluation set); "
            f"the project has {n_documents}"
        )


def adaptation_request(*, project: Project, user) -> Job:
    """ "Adapt the encoder": queues an adaptation run (or returns the one queued or running)."""
    doc_ids, _, _ = _training_snapshot(project)
    _check_enough(len(doc_ids))
    job, _ = job_request(project=project, kind=Job.Kind.ADAPT, reason="requested", requested_by=user)
    return job


def adaptation_run(*, job_id: int) -> None:
    """Adapts the base encoder to every labelled training document, re-embeds the project with it, records the
    EncoderVersion and queues a full retrain. A cancelled or failed run leaves nothing behind."""
    job = job_claim(job_id=job_id)
    if job is None:
        return
    attempt = job.attempts
    folder: Path | None = None
    try:
        with JobLiveness(job.pk):
            project = Project.objects.get(pk=job.project_id)
            beat = Heartbeat(job.pk)
            doc_ids, labels, rows = _training_snapshot(project)
            _check_enough(len(doc_ids))
            Y = _multi_hot(rows, [label_id for label_id, _ in labels])  # (N, L)
            relative = Path("projects") / str(project.pk) / "encoders" / f"job{job.pk}-{uuid.uuid4().hex[:8]}"
            folder = Path(settings.ARTIFACTS_DIR) / relative
            adapt_beat = beat.sub(0.0, 0.6)
            stats = ml.adapt_encoder(
                texts=_texts(doc_ids),
                Y=Y,
                out=folder,
                seed=job.pk,
                on_progress=lambda fraction: adapt_beat(fraction, f"adapting the encoder on {len(doc_ids)} documents"),
            )
            every = list(Document.objects.filter(project=project).order_by("id").values_list("id", flat=True))
            _encode_missing(project.pk, every, beat.sub(0.6, 0.38), str(relative))
            ml.encode_labels(project.pk, _label_texts(project.pk), str(relative))
            beat(0.99, "publishing the encoder")
            version = _publish(job_id=job.pk, attempt=attempt, project=project, relative=str(relative), stats=stats)
    except JobCancelled:
        abandon(job_id=job_id, folder=folder, cancelled=True)
        return
    except JOB_ERRORS as exc:
        abandon(job_id=job_id, folder=folder, error=f"adaptation failed: {exc}")
        return
    if version is None:  # another delivery took the job over, or it was cancelled
        abandon(job_id=job_id, folder=folder)
        return
    job_request(project=project, kind=Job.Kind.TRAIN, reason=f"encoder e{version.number} adapted", mode="full")


def _publish(*, job_id: int, attempt: int, project: Project, relative: str, stats: dict) -> EncoderVersion | None:
    """One transaction: the EncoderVersion exists and the job SUCCEEDED, or nothing changes."""
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).get(pk=project.pk)
        job = Job.objects.select_for_update(no_key=True).get(pk=job_id)
        if job.status != Job.Status.RUNNING or job.attempts != attempt:
            return None
        number = (EncoderVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
        version = EncoderVersion.objects.create(
            project=project,
            number=number,
            artifact_path=relative,
            fingerprint=ml.fingerprint(relative),
            base_fingerprint=str(stats.get("base_fingerprint", "")),
            n_documents=int(stats.get("n_documents", 0)),
            seconds=float(stats.get("seconds", 0.0)),
            device=str(stats.get("device", "")),
            stats={key: stats.get(key) for key in ("n_pairs", "steps", "loss_first", "loss_last", "config")},
        )
        job_succeed(
            job=job, message=f"encoder e{number} adapted on {version.n_documents} documents in {version.seconds:.0f} s"
        )
    return version
