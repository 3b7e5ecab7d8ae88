"""The training job: requests (coalesced), the choice between a full retrain and an incremental update, the run
that trains, measures on the evaluation set and publishes a new serving version, then asks for re-scoring.

It runs in Celery workers (never in a web request). It claims its job row first, so a duplicate delivery is a
no-op; model files are written to a fresh folder and published in one transaction.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from .. import ml
from ..exceptions import ProjectError
from ..models import Annotation, Job, ModelVersion, Project, TrainMode
from ..selectors import (
    annotations_new_since,
    document_texts,
    encoder_number,
    encoder_unseen,
    evaluation_labels,
    newest_encoder_path,
    serving_version,
    training_snapshot,
)
from .adaptation import adaptation_maybe_request
from .curves import learning_curve_refresh
from .encoding import encode_missing, label_prior
from .evaluation import evaluate_model, preannotations_compare, stop_decisions, stop_set_for
from .jobs import JOB_ERRORS, Heartbeat, JobCancelled, JobLiveness, job_abandon, job_claim, job_request
from .label_vectors import label_index_rebuild
from .registry import version_publish
from .savings import savings_maybe_request

logger = logging.getLogger(__name__)


def training_maybe_request(*, project: Project) -> Job | None:
    """Queues one training run when `retrain_every` annotations arrived since the newest model's data cutoff
    and none is queued or running (the newest, not the serving one: a rollback does not trigger a retrain). Returns
    the new job, or None."""
    if project.archived_at is not None:
        return None
    version = ModelVersion.objects.filter(project=project).order_by("-number").first()
    new = annotations_new_since(project=project, cutoff=version.data_cutoff if version else None)
    if new < project.retrain_every:
        return None
    job, created = job_request(project=project, kind=Job.Kind.TRAIN, reason=f"{new} new annotations")
    return job if created else None


def training_request(*, project: Project, user, mode: str = "") -> Job:
    """ "Train now": queues a training run (or returns the one already queued or running). `mode`: "full",
    "incremental", "auto", or empty for the project's `retrain_mode`."""
    if mode and mode not in TrainMode.values:
        raise ProjectError(f"mode must be one of {', '.join(TrainMode.values)}")
    if project.archived_at is not None:
        raise ProjectError("the project is archived: restore it to train", status=409)
    if not Annotation.objects.filter(project=project).exists():
        raise ProjectError("nothing to train on yet: label some documents first")
    job, _ = job_request(project=project, kind=Job.Kind.TRAIN, reason="requested", requested_by=user, mode=mode)
    return job


def _decide_mode(project: Project, job: Job, base: ModelVersion | None, n_labelled: int) -> tuple[str, str]:
    """(mode, why) of a training run: "full" or "incremental" (from `base`, the serving version). A model of
    another tier than the project's (Project.model_tier) is never updated: the run trains the project's tier."""
    asked = job.mode or project.retrain_mode
    if asked == "full":
        return "full", "a full retrain was asked for"
    if base is None:
        return "full", "no serving model to update"
    base_tier, base_config = ml.tier_config(base.config)
    if base_tier != project.model_tier:
        return "full", f"the model tier changed from {base_tier} to {project.model_tier} since the serving model"
    if base.config.get("encoder_fingerprint") != ml.fingerprint(newest_encoder_path(project=project)):
        return "full", "the encoder changed since the serving model"
    if project.model_tier == Project.Tier.FAST and (
        base.config.get("label_prior_enabled", bool(base.config.get("label_prior"))) != project.label_prior
    ):  # the full tier blends no prior: switching it changes nothing there
        return "full", "the label-name prior was switched " + ("on" if project.label_prior else "off")
    if base_config.get("loss", project.loss) != project.loss:
        return "full", "the loss changed since the serving model"
    if asked == "incremental":
        return "incremental", "an incremental update was asked for"
    changed = Annotation.objects.filter(project=project, updated_at__gt=base.data_cutoff).exists()
    if not changed:
        return "full", "nothing new to update the serving model with"
    last_full = base.config.get("full_base_annotations") or base.n_annotations
    growth = (n_labelled - last_full) / max(last_full, 1)
    if growth >= project.full_retrain_growth:
        return "full", f"the labelled set grew {growth:.0%} since the last full retrain"
    return "incremental", f"the labelled set grew {growth:.0%} since the last full retrain"


def training_run(*, job_id: int) -> None:
    """Trains on every labelled document (full retrain) or updates the serving model on the new answers plus a
    replay sample of the old ones (incremental), publishes a new serving ModelVersion atomically, queues
    re-scoring. A full retrain builds the project's tier (Project.model_tier): the fast tier, or the full tier
    (`ml.full_config`: the encoder fine-tuned with a flat or label-tree head). A cancelled run stops at its next
    progress report and leaves nothing behind."""
    job = job_claim(job_id=job_id)
    if job is None:
        return
    attempt = job.attempts
    folder: Path | None = None
    try:
        with JobLiveness(job.pk):
            project = Project.objects.get(pk=job.project_id)
            cutoff = timezone.now()
            started = time.monotonic()
            beat = Heartbeat(job.pk)
            doc_ids, labels, rows = training_snapshot(project)
            if len(doc_ids) < 2:
                raise ProjectError(f"need at least 2 labelled documents to train, have {len(doc_ids)}")
            if not labels:
                raise ProjectError("the project has no labels")
            base = serving_version(project=project)
            mode, why = _decide_mode(project, job, base, len(doc_ids))
            beat(0.0, f"{mode}: {why}")
            encoder_path = newest_encoder_path(project=project)  # the newest adapted encoder, else the base one
            encode_missing(project.pk, doc_ids, beat.sub(0.0, 0.3), encoder_path)
            label_ids = [label_id for label_id, _ in labels]
            names = [name for _, name in labels]
            Y = ml.multi_hot(rows, label_ids)  # (N, L)
            next_number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
            train_beat = beat.sub(0.3, 0.6)
            extra: dict
            if mode == "incremental" and base is not None:
                model, extra = _update_model(project, job, base, doc_ids, rows, label_ids, names, train_beat)
            elif project.model_tier == Project.Tier.FULL:  # the encoder fine-tuned with the head, on the texts
                model = ml.train(
                    texts=document_texts(doc_ids),
                    X=None,
                    Y=Y,
                    labels=names,
                    config=ml.full_config(loss=project.loss, seed=next_number, encoder_path=encoder_path),
                    on_progress=lambda fraction: train_beat(fraction, "fine-tuning the full tier (full retrain)"),
                )
                extra = {"full_base_annotations": len(doc_ids)}
            else:
                X = ml.embedding_store(project.pk, encoder_path).get(doc_ids)  # (N, D)
                model = ml.train(
                    texts=document_texts(doc_ids),
                    X=X,
                    Y=Y,
                    labels=names,
                    config=ml.fast_config(loss=project.loss, seed=next_number),
                    prior=label_prior(project.pk, encode=True, encoder_path=encoder_path),
                    evidence=encoder_unseen(project, encoder_path, doc_ids),
                    on_progress=lambda fraction: train_beat(fraction, "training (full retrain)"),
                )
                extra = {"full_base_annotations": len(doc_ids)}
            beat(0.9, "saving and measuring the model")
            relative = Path("projects") / str(project.pk) / "models" / f"job{job.pk}-{uuid.uuid4().hex[:8]}"
            folder = Path(settings.ARTIFACTS_DIR) / relative
            saved = ml.model_save(model, folder, encoder_path=encoder_path)
            seconds = time.monotonic() - started
            mean_cardinality = float(Y.sum()) / max(len(doc_ids), 1)
            eval_ids, eval_rows = evaluation_labels(project)
            evaluation = evaluate_model(
                model=model,
                project=project,
                doc_ids=eval_ids,
                rows=eval_rows,
                label_counts=np.asarray(Y.sum(axis=0)).ravel(),
                n_train=len(doc_ids),
            )
            comparison = preannotations_compare(model=model, project=project, doc_ids=eval_ids, rows=eval_rows)
            stop_ids = stop_set_for(project=project)
            stop_predictions = stop_decisions(model=model, project=project, doc_ids=stop_ids)
            previous = serving_version(project=project)
            agreement = (
                ml.agreement(previous.stop_predictions, stop_predictions)
                if previous is not None and len(previous.stop_predictions) == len(stop_predictions) > 0
                else None
            )
            beat(0.99, "publishing")
            version = version_publish(
                job_id=job.pk,
                attempt=attempt,
                project=project,
                relative=str(relative),
                metrics=saved["metrics"],
                evaluation={k: v for k, v in evaluation.items() if k != "per_label"},
                evaluation_per_label=evaluation.get("per_label", []),
                preannotation_comparison=comparison,
                stop_predictions=stop_predictions,
                agreement=agreement,
                config={
                    "mode": mode,
                    "mode_reason": why,
                    **extra,
                    "strategy": ml.resolve_strategy(project.strategy, len(labels))[0],
                    **saved["config"],
                    "mean_cardinality": mean_cardinality,
                    "encoder_fingerprint": ml.fingerprint(encoder_path),
                    "encoder_path": encoder_path,
                    "encoder_version": encoder_number(project=project, encoder_path=encoder_path),
                    "label_prior_enabled": project.label_prior,
                },
                n_annotations=len(doc_ids),
                n_labels=len(labels),
                cutoff=cutoff,
                seconds=seconds,
                device=saved["device"],
            )
    except JobCancelled:
        job_abandon(job_id=job_id, folder=folder, cancelled=True)
        return
    except JOB_ERRORS as exc:
        job_abandon(job_id=job_id, folder=folder, error=f"training failed: {exc}")
        return
    if version is None:  # another delivery took the job over, or it was cancelled; its result stands
        job_abandon(job_id=job_id, folder=folder)
        return
    learning_curve_refresh(project=project)
    try:  # label search's meaning rows follow the answers the model was trained on
        label_index_rebuild(project_id=project.pk, documents=(doc_ids, rows))  # the snapshot it trained on
    except JOB_ERRORS as exc:  # the previous index stays: search still works, the model is published
        logger.warning("project %s: label index not rebuilt after v%s: %s", project.pk, version.number, exc)
    job_request(
        project=project,
        kind=Job.Kind.SCORE,
        reason=f"model v{version.number} published",
        model_version=version,
    )
    training_maybe_request(project=project)
    savings_maybe_request(project=project)
    adaptation_maybe_request(project=project, n_documents=len(doc_ids))


def _update_model(
    project: Project,
    job: Job,
    base: ModelVersion,
    doc_ids: list[int],
    rows: list[list[int]],
    label_ids: list[int],
    names: list[str],
    beat: Heartbeat,
):
    """The serving model continued on the answers given (or changed) since its data cutoff plus a random replay
    of up to `project.replay_size` earlier ones. Returns (model, config extras)."""
    changed = set(
        Annotation.objects.filter(project=project, updated_at__gt=base.data_cutoff).values_list(
            "document_id", flat=True
        )
    )
    new_rows = [i for i, doc_id in enumerate(doc_ids) if doc_id in changed]
    old_rows = [i for i, doc_id in enumerate(doc_ids) if doc_id not in changed]
    if not new_rows:
        raise ProjectError("no new annotations since the serving model: nothing to update it with")
    rng = np.random.default_rng(job.pk)
    if len(old_rows) > project.replay_size:
        old_rows = sorted(rng.choice(old_rows, size=project.replay_size, replace=False).tolist())
    model = ml.load_model(str(Path(settings.ARTIFACTS_DIR) / base.artifact_path))
    store = ml.embedding_store(project.pk, ml.model_encoder(model))
    reads_texts, reads_embeddings = ml.model_reads(model)

    def part(indices: list[int]):
        ids = [doc_ids[i] for i in indices]
        texts = document_texts(ids) if reads_texts else None
        X = store.get(ids) if reads_embeddings else None
        return ml.inputs(texts=texts, X=X), ml.multi_hot([rows[i] for i in indices], label_ids)

    new_inputs, new_y = part(new_rows)
    replay = part(old_rows) if old_rows else None
    encoder_path = ml.model_encoder(model)
    prior = label_prior(project.pk, encode=True, encoder_path=encoder_path) if ml.model_has_prior(model) else None
    updated = ml.update(
        model,
        new_inputs,
        new_y,
        names,
        replay=replay,
        prior=prior,
        on_progress=lambda fraction: beat(fraction, f"incremental update on {len(new_rows)} new answers"),
    )
    return updated, {
        "base_version": base.number,
        "new_documents": len(new_rows),
        "replayed_documents": len(old_rows),
        "full_base_annotations": base.config.get("full_base_annotations") or base.n_annotations,
    }
