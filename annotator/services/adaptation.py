"""Encoder adaptation: the sentence encoder fine-tuned on the project's labelled documents (learner.adapt), every
document embedded again with it, then a full retrain on the new embeddings.

A run claims its ADAPT job (gpu queue), writes the adapted encoder into a fresh folder, re-embeds the project's
documents and label names under the new encoder's fingerprint (the old embeddings stay: the serving model keeps
reading them until a model trained on the new ones is published), and records an EncoderVersion in one transaction
with the job's success. The next training reads the newest encoder; each model version records the encoder it
reads, so scoring, evaluation and a rollback always embed with the right one.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from .. import ml
from ..exceptions import ProjectError
from ..models import Document, EncoderVersion, Job, Project
from ..selectors import adaptation_next_at, document_texts, label_texts, newest_encoder_path, training_snapshot
from .encoding import encode_missing, label_prior
from .jobs import JOB_ERRORS, Heartbeat, JobCancelled, JobLiveness, job_abandon, job_claim, job_request, job_succeed


def _check_enough(n_documents: int) -> None:
    minimum = settings.ALABEL_ADAPT_MIN_DOCUMENTS
    if n_documents < minimum:
        raise ProjectError(
            f"adapting the encoder needs at least {minimum} labelled documents (outside the evaluation set); "
            f"the project has {n_documents}"
        )


def adaptation_request(*, project: Project, user) -> Job:
    """ "Adapt the encoder": queues an adaptation run (or returns the one queued or running)."""
    doc_ids, _, _ = training_snapshot(project)
    _check_enough(len(doc_ids))
    job, _ = job_request(project=project, kind=Job.Kind.ADAPT, reason="requested", requested_by=user)
    return job


def adaptation_due(*, n_documents: int, last: dict, cuda: bool = True) -> str | None:
    """Why an automatic adaptation is due at `n_documents` labelled documents after the last run `last`
    (Project.adapt_last), or None: first at ALABEL_ADAPT_AUTO_DOCUMENTS, then once the labelled documents have
    doubled since the last run (adopted or not: one that did not pay is retried with twice the labels). Without
    `cuda`, never above ALABEL_ADAPT_AUTO_CPU_MAX_DOCUMENTS (the run would hold the gpu queue for too long)."""
    if not cuda and n_documents > settings.ALABEL_ADAPT_AUTO_CPU_MAX_DOCUMENTS:
        return None
    if n_documents < adaptation_next_at(last=last):
        return None
    before = int((last or {}).get("documents") or 0)
    if not before:
        return f"auto: {n_documents} labelled documents"
    return f"auto: {n_documents} labelled documents, twice the {before} of the last adaptation"


def adaptation_maybe_request(*, project: Project, n_documents: int) -> Job | None:
    """Queues an adaptation when it is due at `n_documents` labelled training documents (adaptation_due) for a
    project that adapts on its own (adapt_auto). Not after a failed or cancelled adaptation: a manager retries that
    one by hand."""
    project = Project.objects.only("id", "adapt_auto", "adapt_last").get(pk=project.pk)
    if not project.adapt_auto:
        return None
    newest = Job.objects.filter(project=project, kind=Job.Kind.ADAPT).order_by("-created_at", "-id").first()
    if newest is not None and newest.status in (Job.Status.FAILED, Job.Status.CANCELLED):
        return None
    reason = adaptation_due(n_documents=n_documents, last=project.adapt_last, cuda=ml.device() == "cuda")
    if reason is None:
        return None
    job, _ = job_request(project=project, kind=Job.Kind.ADAPT, reason=reason)
    return job


def adaptation_run(*, job_id: int) -> None:
    """Adapts the base encoder to most labelled training documents and checks it on the rest (learner.adapt's
    held-out check: the fast tier on the encoder in use against the adapted one). When the adapted encoder does at
    least ALABEL_ADAPT_MIN_GAIN better there (default: at least as well), it re-embeds the project, records the
    EncoderVersion and queues a full retrain; otherwise it is dropped and the project keeps its encoder. Either way
    ``Project.adapt_last`` records the run. A cancelled or failed run leaves nothing behind."""
    job = job_claim(job_id=job_id)
    if job is None:
        return
    attempt = job.attempts
    folder: Path | None = None
    try:
        with JobLiveness(job.pk):
            project = Project.objects.get(pk=job.project_id)
            beat = Heartbeat(job.pk)
            doc_ids, labels, rows = training_snapshot(project)
            _check_enough(len(doc_ids))
            Y = ml.multi_hot(rows, [label_id for label_id, _ in labels])  # (N, L)
            texts = document_texts(doc_ids)
            fit, check = ml.check_split(len(doc_ids), seed=job.pk)
            relative = Path("projects") / str(project.pk) / "encoders" / f"job{job.pk}-{uuid.uuid4().hex[:8]}"
            folder = Path(settings.ARTIFACTS_DIR) / relative
            adapt_beat = beat.sub(0.0, 0.55)
            stats = ml.adapt_encoder(
                texts=[texts[i] for i in fit],
                Y=Y[fit],
                out=folder,
                seed=job.pk,
                on_progress=lambda fraction: adapt_beat(fraction, f"adapting the encoder on {len(fit)} documents"),
            )
            in_use = newest_encoder_path(project=project)
            encode_missing(project.pk, doc_ids, beat.sub(0.55, 0.02), in_use)
            encode_missing(project.pk, doc_ids, beat.sub(0.57, 0.05), str(relative))
            label_rows = label_texts(project.pk)
            ml.encode_labels(project.pk, label_rows, str(relative))
            checked = None
            if len(check):
                beat(0.62, f"checking the adapted encoder on {len(check)} held-out documents")
                checked = ml.check_adaptation(
                    texts=texts,
                    base_X=ml.embedding_store(project.pk, in_use).get(doc_ids),
                    adapted_X=ml.embedding_store(project.pk, str(relative)).get(doc_ids),
                    Y=Y,
                    fit=fit,
                    check=check,
                    labels=[name for _, name in labels],
                    config=ml.fast_config(loss=project.loss, seed=job.pk),
                    priors=(
                        label_prior(project.pk, encode=True, encoder_path=in_use),
                        label_prior(project.pk, encode=False, encoder_path=str(relative)),
                    ),
                )
            record = {
                "documents": len(doc_ids),
                "held_out": len(check),
                "gain": checked["gain"] if checked else None,
                "check": checked,
                "adopted": checked is None or checked["gain"] >= settings.ALABEL_ADAPT_MIN_GAIN,
                "at": timezone.now().isoformat(timespec="seconds"),
            }
            if not record["adopted"]:
                _drop(project.pk, folder, str(relative))
                folder = None
                message = (
                    f"adapted on {len(fit)} documents but not adopted: micro-F1 on {len(check)} held-out documents "
                    f"{checked['adapted']['micro_f1']:.3f} against {checked['base']['micro_f1']:.3f} with the encoder "
                    "in use"
                )
                _finish(job_id=job.pk, attempt=attempt, project=project, record=record, message=message)
                return
            every = list(Document.objects.filter(project=project).order_by("id").values_list("id", flat=True))
            encode_missing(project.pk, every, beat.sub(0.7, 0.28), str(relative))
            beat(0.99, "publishing the encoder")
            stats["check"] = checked
            stats["adapted_document_ids"] = [doc_ids[i] for i in fit]
            version = _publish(
                job_id=job.pk, attempt=attempt, project=project, relative=str(relative), stats=stats, record=record
            )
    except JobCancelled:
        job_abandon(job_id=job_id, folder=folder, cancelled=True)
        return
    except JOB_ERRORS as exc:
        job_abandon(job_id=job_id, folder=folder, error=f"adaptation failed: {exc}")
        return
    if version is None:  # another delivery took the job over, or it was cancelled
        job_abandon(job_id=job_id, folder=folder)
        return
    job_request(project=project, kind=Job.Kind.TRAIN, reason=f"encoder e{version.number} adapted", mode="full")


def _drop(project_id: int, folder: Path, relative: str) -> None:
    """Removes an adapted encoder that is not adopted: its folder and the embeddings cached under its fingerprint."""
    ml.embeddings_drop(project_id, relative)
    shutil.rmtree(folder, ignore_errors=True)


def _finish(*, job_id: int, attempt: int, project: Project, record: dict, message: str) -> None:
    """One transaction: the project's record of the run and the job's success (nothing if the job was taken over)."""
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).get(pk=project.pk)
        job = Job.objects.select_for_update(no_key=True).get(pk=job_id)
        if job.status != Job.Status.RUNNING or job.attempts != attempt:
            return
        Project.objects.filter(pk=project.pk).update(adapt_last=record)
        job_succeed(job=job, message=message[:300])


def _publish(
    *, job_id: int, attempt: int, project: Project, relative: str, stats: dict, record: dict
) -> EncoderVersion | None:
    """One transaction: the EncoderVersion exists, the project records the run and the job SUCCEEDED, or nothing
    changes."""
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
            stats={
                key: stats.get(key)
                for key in ("n_pairs", "steps", "loss_first", "loss_last", "config", "check", "adapted_document_ids")
            },
        )
        Project.objects.filter(pk=project.pk).update(adapt_last={**record, "encoder": number})
        checked = stats.get("check")
        held = (
            f"; micro-F1 on {checked['documents']} held-out documents {checked['adapted']['micro_f1']:.3f} against "
            f"{checked['base']['micro_f1']:.3f}"
            if checked
            else ""
        )
        job_succeed(
            job=job,
            message=f"encoder e{number} adapted on {version.n_documents} documents in {version.seconds:.0f} s{held}"[
                :300
            ],
        )
    return version
