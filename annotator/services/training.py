"""The learning loop's work: encode documents, train and publish a model version, score the pool into the queue.

These run in Celery workers (never in a web request). Each claims its job row first, so a duplicate delivery is a
no-op; model files are written to a fresh folder and published in one transaction.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from .. import ml
from ..exceptions import ProjectError
from ..models import (
    Annotation,
    AnnotationLabel,
    Document,
    EncoderVersion,
    Job,
    Label,
    ModelVersion,
    Project,
    QueueItem,
    TrainMode,
)
from ..selectors import (
    annotations_new_since,
    effective_threshold,
    encoder_number,
    newest_encoder_path,
    serving_version,
    unlabelled_document_ids,
)
from . import chooser
from .curves import learning_curve_refresh
from .evaluation import evaluate_model, evaluation_labels, evaluation_refresh, stop_decisions, stop_set_for
from .jobs import (
    Heartbeat,
    JobCancelled,
    JobLiveness,
    job_claim,
    job_dispatch,
    job_fail,
    job_mark_cancelled,
    job_request,
    job_retry_depth,
    job_succeed,
)

logger = logging.getLogger(__name__)

# Errors a job reports as FAILED with its message (bad data, model errors, disk). Anything else is a bug: it
# propagates, and the reconciler marks the job failed when its heartbeat stops.
JOB_ERRORS = (ValueError, RuntimeError, OSError, ProjectError, KeyError)
ENCODE_CHUNK = 4096  # documents per cache write (each write rewrites the cache file: keep writes few)
SCORE_CELLS = 20_000_000  # documents x shortlisted labels held at once while scoring
SHORTLIST = 100  # labels per document the strategies see for large label sets
KEPT_SHORTLIST = 50  # labels per queued document kept with their scores: suggestions first, then search ranking


# --- requests --------------------------------------------------------------------------------------------------------
def training_maybe_request(*, project: Project) -> Job | None:
    """Queues one training run when `retrain_every` annotations arrived since the newest model's data cutoff
    and none is queued or running (the newest, not the serving one: a rollback does not trigger a retrain). Returns
    the new job, or None."""
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
    if not Annotation.objects.filter(project=project).exists():
        raise ProjectError("nothing to train on yet: label some documents first")
    job, _ = job_request(project=project, kind=Job.Kind.TRAIN, reason="requested", requested_by=user, mode=mode)
    return job


# --- encode ----------------------------------------------------------------------------------------------------------
def _encode_missing(project_id: int, doc_ids: list[int], beat: Heartbeat, encoder_path: str | None = None) -> int:
    """Embeds the documents the encoder (`encoder_path`: an adapted one, None: the base) has no vector for yet."""
    store = ml.embedding_store(project_id, encoder_path)
    missing = store.missing(doc_ids)
    for start in range(0, len(missing), ENCODE_CHUNK):
        part = missing[start : start + ENCODE_CHUNK]
        texts = dict(Document.objects.filter(pk__in=part).values_list("id", "text"))
        present = [doc_id for doc_id in part if doc_id in texts]

        def report(done: int, _total: int, start: int = start) -> None:
            beat((start + done) / len(missing), f"encoded {start + done} of {len(missing)} documents")

        ml.encode_into_store(
            store, present, [texts[doc_id] for doc_id in present], on_progress=report, encoder_path=encoder_path
        )
    return len(missing)


def encoders_in_use(project: Project) -> list[str | None]:
    """The encoders whose embeddings the project needs: the one the next training reads (the newest adapted one,
    else the base) and the one the serving model reads (scoring), first the former."""
    paths = [newest_encoder_path(project=project)]
    serving = serving_version(project=project)
    if serving is not None:
        paths.append(serving.config.get("encoder_path") or None)
    return list(dict.fromkeys(paths))


def encode_run(*, job_id: int) -> None:
    """Encodes every document of the project that has no cached embedding, then queues a scoring run."""
    job = job_claim(job_id=job_id)
    if job is None:
        return
    try:
        total = 0
        paths = encoders_in_use(job.project)
        for _ in range(10):  # documents imported while encoding are picked up by the next pass
            doc_ids = list(Document.objects.filter(project_id=job.project_id).values_list("id", flat=True))
            done = sum(_encode_missing(job.project_id, doc_ids, Heartbeat(job.pk), path) for path in paths)
            total += done
            if done == 0:
                break
        labels_done = sum(ml.encode_labels(job.project_id, _label_texts(job.project_id), path) for path in paths)
    except JOB_ERRORS as exc:
        job_fail(job_id=job.pk, error=f"encoding failed: {exc}")
        return
    message = f"encoded {total} documents" + (f" and {labels_done} label names" if labels_done else "")
    job_succeed(job=job, message=message)
    job_request(project=job.project, kind=Job.Kind.SCORE, reason="documents encoded")
    if labels_done and _labels_unknown_to_serving(job.project):
        # Labels added after the model: the next version knows them and blends their names' prior at once
        # (suggested before their first positive), instead of waiting for the next scheduled retrain.
        job_request(project=job.project, kind=Job.Kind.TRAIN, reason="labels added: their names join the model")


def _labels_unknown_to_serving(project: Project) -> bool:
    """Whether the project uses the label prior and has labels its serving model was not trained with."""
    serving = ModelVersion.objects.filter(project=project, is_serving=True).only("n_labels").first()
    if serving is None or not project.label_prior:
        return False
    return Label.objects.filter(project=project).count() > serving.n_labels


# --- train -----------------------------------------------------------------------------------------------------------
def latest_answers(project: Project, *, evaluation: bool) -> tuple[list[int], list[list[int]]]:
    """The latest answer per document, of the training documents or of the evaluation set: document ids (sorted)
    and the label ids of each."""
    latest: dict[int, int] = {}
    for annotation_id, document_id in (
        Annotation.objects.filter(project=project, document__is_evaluation=evaluation)
        .order_by("updated_at", "id")
        .values_list("id", "document_id")
    ):
        latest[document_id] = annotation_id
    by_annotation: dict[int, list[int]] = {}
    for annotation_id, label_id in AnnotationLabel.objects.filter(
        annotation__project=project, annotation__document__is_evaluation=evaluation
    ).values_list("annotation_id", "label_id"):
        by_annotation.setdefault(annotation_id, []).append(label_id)
    doc_ids = sorted(latest)
    return doc_ids, [by_annotation.get(latest[doc_id], []) for doc_id in doc_ids]


def training_label_counts(project: Project, model_labels: list[str]) -> tuple[list[int], np.ndarray]:
    """The training documents (ids) and, per model label (column), how many of them carry it: (L,) int64."""
    doc_ids, labels, rows = _training_snapshot(project)
    position = {name: j for j, name in enumerate(model_labels)}
    column_of_label = {label_id: position.get(name, -1) for label_id, name in labels}
    counts = np.zeros(len(model_labels), dtype=np.int64)
    for row in rows:
        for label_id in row:
            if column_of_label.get(label_id, -1) >= 0:
                counts[column_of_label[label_id]] += 1
    return doc_ids, counts


def _training_snapshot(project: Project) -> tuple[list[int], list[tuple[int, str]], list[list[int]]]:
    """The latest answer per document: document ids, the project's labels (id, name) and label ids per document.

    Documents of the evaluation set are left out: no model ever trains on them."""
    doc_ids, rows = latest_answers(project, evaluation=False)
    labels = list(Label.objects.filter(project=project).order_by("id").values_list("id", "name"))
    return doc_ids, labels, rows


def _label_texts(project_id: int) -> list[tuple[str, str]]:
    """(name, description) of the project's labels, in id order: what the label-name prior embeds."""
    return list(Label.objects.filter(project_id=project_id).order_by("id").values_list("name", "description"))


def _prior(project_id: int, *, encode: bool, encoder_path: str | None = None):
    """The label-name prior over the project's labels, embedded by `encoder_path` (labels not embedded yet are
    embedded first when `encode`, on the worker that holds the encoder); None when the project switched it off or
    no label vector exists."""
    if not Project.objects.filter(pk=project_id, label_prior=True).exists():
        return None
    labels = _label_texts(project_id)
    if encode:
        ml.encode_labels(project_id, labels, encoder_path)
    return ml.label_prior(project_id, labels, encoder_path)


def _anchor_inputs(project: Project, encoder_path: str | None) -> tuple[np.ndarray, np.ndarray]:
    """What the `anchors` rule reads: the label-name vectors (L, D) of every project label (a label not embedded
    yet: a zero row, skipped) and the training documents' positives per label (L,), in label id order. Labels the
    serving model has never seen count too: they have no positive yet, so they come first."""
    labels = _label_texts(project.pk)
    prior = ml.label_prior(project.pk, labels, encoder_path)
    if prior is None:
        raise ProjectError(
            "the anchors strategy reads the labels' names as vectors and none is embedded yet: the encode job "
            "embeds them with the documents; until it has run, pick another strategy"
        )
    _, counts = training_label_counts(project, [name for name, _ in labels])
    return prior.vectors, counts


def _unseen(project: Project, encoder_path: str | None, doc_ids: list[int]) -> np.ndarray | None:
    """(N,) which of the training documents the adapted encoder `encoder_path` was not adapted on: only their
    out-of-fold predictions are honest pre-tick evidence. None for the base encoder (every document counts)."""
    if not encoder_path:
        return None
    stats = (
        EncoderVersion.objects.filter(project=project, artifact_path=encoder_path)
        .values_list("stats", flat=True)
        .first()
    )
    seen = set((stats or {}).get("adapted_document_ids") or [])
    if not seen:
        return None  # an encoder adapted before the held-out check existed: nothing to tell apart
    return np.array([doc_id not in seen for doc_id in doc_ids], dtype=bool)


def _texts(doc_ids: list[int]) -> list[str]:
    texts: dict[int, str] = {}
    for start in range(0, len(doc_ids), 5000):
        texts.update(Document.objects.filter(pk__in=doc_ids[start : start + 5000]).values_list("id", "text"))
    return [texts[doc_id] for doc_id in doc_ids]


def _multi_hot(rows: list[list[int]], label_ids: list[int]):
    from scipy.sparse import csr_matrix

    column = {label_id: j for j, label_id in enumerate(label_ids)}
    indptr, indices = [0], []
    for row in rows:
        indices.extend(sorted(column[label_id] for label_id in row))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    return csr_matrix((data, np.array(indices, dtype=np.int64), np.array(indptr)), shape=(len(rows), len(label_ids)))


def _decide_mode(project: Project, job: Job, base: ModelVersion | None, n_labelled: int) -> tuple[str, str]:
    """(mode, why) of a training run: "full" or "incremental" (from `base`, the serving version)."""
    asked = job.mode or project.retrain_mode
    if asked == "full":
        return "full", "a full retrain was asked for"
    if base is None:
        return "full", "no serving model to update"
    if base.config.get("encoder_fingerprint") != ml.fingerprint(newest_encoder_path(project=project)):
        return "full", "the encoder changed since the serving model"
    if base.config.get("label_prior_enabled", bool(base.config.get("label_prior"))) != project.label_prior:
        return "full", "the label-name prior was switched " + ("on" if project.label_prior else "off")
    if base.config.get("fast_tier", {}).get("loss", project.loss) != project.loss:
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
    re-scoring. A cancelled run stops at its next progress report and leaves nothing behind."""
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
            doc_ids, labels, rows = _training_snapshot(project)
            if len(doc_ids) < 2:
                raise ProjectError(f"need at least 2 labelled documents to train, have {len(doc_ids)}")
            if not labels:
                raise ProjectError("the project has no labels")
            base = serving_version(project=project)
            mode, why = _decide_mode(project, job, base, len(doc_ids))
            beat(0.0, f"{mode}: {why}")
            encoder_path = newest_encoder_path(project=project)  # the newest adapted encoder, else the base one
            _encode_missing(project.pk, doc_ids, beat.sub(0.0, 0.3), encoder_path)
            label_ids = [label_id for label_id, _ in labels]
            names = [name for _, name in labels]
            Y = _multi_hot(rows, label_ids)  # (N, L)
            next_number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
            train_beat = beat.sub(0.3, 0.6)
            extra: dict
            if mode == "incremental" and base is not None:
                model, extra = _update_model(project, job, base, doc_ids, rows, label_ids, names, train_beat)
            else:
                X = ml.embedding_store(project.pk, encoder_path).get(doc_ids)  # (N, D)
                model = ml.train(
                    texts=_texts(doc_ids),
                    X=X,
                    Y=Y,
                    labels=names,
                    config=ml.fast_config(loss=project.loss, seed=next_number),
                    prior=_prior(project.pk, encode=True, encoder_path=encoder_path),
                    evidence=_unseen(project, encoder_path, doc_ids),
                    on_progress=lambda fraction: train_beat(fraction, "training (full retrain)"),
                )
                extra = {"full_base_annotations": len(doc_ids)}
            beat(0.9, "saving and measuring the model")
            relative = Path("projects") / str(project.pk) / "models" / f"job{job.pk}-{uuid.uuid4().hex[:8]}"
            folder = Path(settings.ARTIFACTS_DIR) / relative
            ml.set_model_encoder(model, encoder_path)
            model.save(folder)
            seconds = time.monotonic() - started
            mean_cardinality = float(Y.sum()) / max(len(doc_ids), 1)
            rule = model.rules["micro_f1"]
            eval_ids, eval_rows = evaluation_labels(project)
            evaluation = evaluate_model(
                model=model,
                project=project,
                doc_ids=eval_ids,
                rows=eval_rows,
                label_counts=np.asarray(Y.sum(axis=0)).ravel(),
                n_train=len(doc_ids),
            )
            stop_ids = stop_set_for(project=project)
            stop_predictions = stop_decisions(model=model, project=project, doc_ids=stop_ids)
            previous = serving_version(project=project)
            agreement = (
                ml.agreement(previous.stop_predictions, stop_predictions)
                if previous is not None and len(previous.stop_predictions) == len(stop_predictions) > 0
                else None
            )
            beat(0.99, "publishing")
            version = _publish(
                job_id=job.pk,
                attempt=attempt,
                project=project,
                relative=str(relative),
                metrics=ml.model_metrics(model),
                evaluation={k: v for k, v in evaluation.items() if k != "per_label"},
                evaluation_per_label=evaluation.get("per_label", []),
                stop_predictions=stop_predictions,
                agreement=agreement,
                config={
                    "mode": mode,
                    "mode_reason": why,
                    **extra,
                    "strategy": ml.resolve_strategy(project.strategy, len(labels))[0],
                    "fast_tier": model.config.to_dict(),
                    "threshold": rule.threshold,
                    "tick_curve": ml.tick_curve(model),  # pre-ticks: selectors.pretick_rule
                    "at_least_one": rule.at_least_one,
                    "platt": list(model.platt),
                    "mean_cardinality": mean_cardinality,
                    "encoder_fingerprint": ml.fingerprint(encoder_path),
                    "encoder_path": encoder_path,
                    "encoder_version": encoder_number(project=project, encoder_path=encoder_path),
                    "label_prior": ml.prior_info(model),  # None: no prior blended (switched off, or a tree)
                    "label_prior_enabled": project.label_prior,
                },
                n_annotations=len(doc_ids),
                n_labels=len(labels),
                cutoff=cutoff,
                seconds=seconds,
                device=str(model.train_info.get("device", "")),
            )
    except JobCancelled:
        abandon(job_id=job_id, folder=folder, cancelled=True)
        return
    except JOB_ERRORS as exc:
        abandon(job_id=job_id, folder=folder, error=f"training failed: {exc}")
        return
    if version is None:  # another delivery took the job over, or it was cancelled; its result stands
        abandon(job_id=job_id, folder=folder)
        return
    learning_curve_refresh(project=project)
    job_request(
        project=project,
        kind=Job.Kind.SCORE,
        reason=f"model v{version.number} published",
        model_version=version,
    )
    training_maybe_request(project=project)
    from .savings import savings_maybe_request  # it reads its data through this module's helpers

    savings_maybe_request(project=project)
    from .adaptation import adaptation_maybe_request  # it reads its data through this module's helpers

    adaptation_maybe_request(project=project, n_documents=len(doc_ids))


def abandon(*, job_id: int, folder: Path | None, error: str | None = None, cancelled: bool = False) -> None:
    """A run that publishes nothing: the folder it wrote is removed; its job FAILED with `error`, or CANCELLED when
    it stopped on a cancel request (`cancelled`, or one found after another delivery took the job over)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    if error is not None:
        job_fail(job_id=job_id, error=error)
    elif cancelled or Job.objects.filter(pk=job_id, cancel_requested=True).exists():
        job_mark_cancelled(job_id=job_id)


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

    def part(indices: list[int]):
        ids = [doc_ids[i] for i in indices]
        texts = _texts(ids) if model.uses_texts else None
        X = store.get(ids) if model.uses_embeddings else None
        return ml.inputs(texts=texts, X=X), _multi_hot([rows[i] for i in indices], label_ids)

    new_inputs, new_y = part(new_rows)
    replay = part(old_rows) if old_rows else None
    prior = _prior(project.pk, encode=True, encoder_path=ml.model_encoder(model)) if model.prior is not None else None
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


def _publish(
    *,
    job_id: int,
    attempt: int,
    project: Project,
    relative: str,
    metrics: dict,
    evaluation: dict,
    evaluation_per_label: list,
    stop_predictions: list,
    agreement: float | None,
    config: dict,
    n_annotations: int,
    n_labels: int,
    cutoff,
    seconds: float,
    device: str,
) -> ModelVersion | None:
    """One transaction: the new version becomes the serving one and the job SUCCEEDED, or nothing changes."""
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).get(pk=project.pk)  # serialises version numbering per project
        job = Job.objects.select_for_update(no_key=True).get(pk=job_id)
        if job.status != Job.Status.RUNNING or job.attempts != attempt:
            return None
        number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
        ModelVersion.objects.filter(project=project, is_serving=True).update(is_serving=False)
        version = ModelVersion.objects.create(
            project=project,
            number=number,
            is_serving=True,
            artifact_path=relative,
            metrics=metrics,
            evaluation=evaluation,
            evaluation_per_label=evaluation_per_label,
            stop_predictions=stop_predictions,
            agreement=agreement,
            config=config,
            n_annotations=n_annotations,
            n_labels=n_labels,
            data_cutoff=cutoff,
            train_seconds=round(seconds, 3),
            device=device,
        )
        job_succeed(job=job, message=f"model v{number} trained on {n_annotations} documents", model_version=version)
    return version


# --- score -----------------------------------------------------------------------------------------------------------
def _lock_if_serving(project: Project, version: ModelVersion | None) -> bool:
    """Inside a transaction: locks the project row (serialises queue writes with publishing and promoting) and
    says whether `version` (None: no model yet) still serves."""
    Project.objects.select_for_update(no_key=True).get(pk=project.pk)
    current = serving_version(project=project)
    return (current.pk if current else None) == (version.pk if version else None)


def _live_leases(project: Project):
    """Queue rows someone holds now (their holders are working on them)."""
    return QueueItem.objects.filter(project=project, leased_to__isnull=False, lease_expires_at__gt=timezone.now())


def _queue_replace(project: Project, version: ModelVersion | None, items: list[QueueItem]) -> int | None:
    """Swaps the project's queue for `items` in one transaction, keeping live leases (their holders are working).

    Returns None and changes nothing when `version` is no longer the serving one (a newer model was published
    while scoring): its queue must not replace the newer model's.
    """
    with transaction.atomic():
        if not _lock_if_serving(project, version):
            return None
        held = {item.document_id: item for item in _live_leases(project)}
        QueueItem.objects.filter(project=project).exclude(pk__in=[item.pk for item in held.values()]).delete()
        fresh = [item for item in items if item.document_id not in held]
        # A row another writer queued for the same document meanwhile (e.g. the evaluation set's) stays as it is:
        # a scoring run never fails on it (a crash left the job RUNNING until the reconciler noticed).
        QueueItem.objects.bulk_create(fresh, batch_size=1000, ignore_conflicts=True)
        # A document someone is working on keeps its lease but takes the new version's suggestions and provenance.
        renewed = []
        for item in items:
            current_item = held.get(item.document_id)
            if current_item is not None:
                current_item.model_version = item.model_version
                current_item.strategy = item.strategy
                current_item.score = item.score
                current_item.suggestions = item.suggestions
                renewed.append(current_item)
        QueueItem.objects.bulk_update(renewed, ["model_version", "strategy", "score", "suggestions"], batch_size=1000)
    return len(fresh) + len(renewed)


def scoring_run(*, job_id: int) -> None:
    """Scores unlabelled, encoded documents with the serving model and the project's strategy; keeps the best
    `queue_size` with their top-k suggestions. Without a model: cold-start picks (k-means on embeddings).

    With a model the queue fills while scoring runs: after each chunk its best documents join the queue as items
    of the new version (the first chunk also retires the previous version's queue, which serves until then), and
    the final batch rule over the whole pool replaces them at the end."""
    job = job_claim(job_id=job_id)
    if job is None:
        return
    try:
        with JobLiveness(job.pk):
            project = Project.objects.get(pk=job.project_id)
            version = serving_version(project=project)
            store = ml.embedding_store(project.pk, version.config.get("encoder_path") if version else None)
            encoded = set(store.ids().tolist())
            unlabelled = unlabelled_document_ids(project=project)  # the evaluation set is not in the pool
            pool = [doc_id for doc_id in unlabelled if doc_id in encoded]
            if len(pool) < len(unlabelled):  # documents not encoded yet: encoding queues another scoring run after
                job_request(project=project, kind=Job.Kind.ENCODE, reason="unencoded documents found while scoring")
            if not pool:
                job_succeed(job=job, message="no encoded unlabelled documents to score")
                return
            count: int | None
            if version is None:
                count = _queue_replace(project, version, _cold_start_items(project, store, pool, job.pk))
            else:
                beat = Heartbeat(job.pk, span=0.9)
                evaluation = _evaluation_items(project, version, store)
                items = _model_items(project, version, store, pool, beat, _ChunkPublisher(project, version, evaluation))
                count = None if items is None else _queue_replace(project, version, items + evaluation)
            if count is not None and version is not None and evaluation_refresh(project=project):
                learning_curve_refresh(project=project)
    except JobCancelled:
        job_mark_cancelled(job_id=job_id)
        return
    except JOB_ERRORS as exc:
        job_fail(job_id=job_id, error=f"scoring failed: {exc}")
        return
    what = f"v{version.number}" if version else "cold start"
    if count is None:  # a newer version was published meanwhile: score again with it
        job_succeed(job=job, message=f"discarded: {what} was replaced while scoring", model_version=version)
        job_request(project=project, kind=Job.Kind.SCORE, reason="a newer model was published while scoring")
        return
    _refresh_statistics(count)
    job_succeed(job=job, message=f"queued {count} of {len(pool)} documents ({what})", model_version=version)


class _ChunkPublisher:
    """Adds each scored chunk's best documents to the queue as items of `version` while scoring goes on, so that
    `next` serves the new version's best documents found so far. The first chunk (with the evaluation documents'
    suggestions) also removes the previous versions' queue, except documents someone holds."""

    def __init__(self, project: Project, version: ModelVersion, evaluation: list[QueueItem]) -> None:
        self.project = project
        self.version = version
        self.evaluation = evaluation
        self.first = True

    def __call__(self, items: list[QueueItem]) -> bool:
        """Returns False (and changes nothing) when `version` no longer serves."""
        with transaction.atomic():
            if not _lock_if_serving(self.project, self.version):
                return False
            live = {item.document_id: item.pk for item in _live_leases(self.project)}
            held = set(live)
            if self.first:
                QueueItem.objects.filter(project=self.project).exclude(model_version=self.version).exclude(
                    pk__in=list(live.values())
                ).delete()
                items = items + self.evaluation
            fresh = [
                QueueItem(
                    project=self.project,
                    document_id=item.document_id,
                    model_version=self.version,
                    strategy=item.strategy,
                    score=item.score,
                    suggestions=item.suggestions,
                )
                for item in items
                if item.document_id not in held
            ]
            QueueItem.objects.bulk_create(fresh, batch_size=1000, ignore_conflicts=True)
        self.first = False
        return True


def _refresh_statistics(inserted: int) -> None:
    """After a large queue swap the planner's statistics are stale (PostgreSQL: a sequential sort of the new
    queue until autovacuum runs; SQLite: none at all), and `next` slows down several-fold. Refresh them."""
    if inserted < 1000:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE annotator_queueitem")
        elif connection.vendor == "sqlite":
            cursor.execute("PRAGMA optimize")


def _cold_start_items(project: Project, store, pool: list[int], seed: int) -> list[QueueItem]:
    """Before the first model: diverse, representative picks (k-means on the embeddings), each with the label-name
    prior's suggestions (zero-shot: the labels whose names are closest to the document) when label vectors exist."""
    n = min(project.queue_size, settings.ALABEL_COLD_START_SIZE)
    X = store.get(pool)  # (U, D)
    picks = ml.cold_start(X, n, seed=seed)
    suggestions: list[list] = [[] for _ in picks]
    prior = _prior(project.pk, encode=False)
    if prior is not None and len(picks):
        label_ids = np.array(list(Label.objects.filter(project=project).order_by("id").values_list("id", flat=True)))
        kept = min(len(label_ids), max(project.suggestions_k, KEPT_SHORTLIST))
        idx, probs = ml.prior_shortlists(prior, X[np.asarray(picks)], kept)  # (n, kept) each
        suggestions = [_suggestions(label_ids, idx[row], probs[row]) for row in range(len(picks))]
    return [
        QueueItem(
            project=project,
            document_id=pool[int(index)],
            model_version=None,
            strategy="cold_start",
            score=float(len(picks) - rank),
            suggestions=suggestions[rank],
        )
        for rank, index in enumerate(picks)
    ]


def _column_labels(project: Project, model) -> np.ndarray:
    """The project's label id of each model column (L,), -1 for a label the project no longer has."""
    label_ids_by_name = dict(Label.objects.filter(project=project).values_list("name", "id"))
    return np.array([label_ids_by_name.get(name, -1) for name in model.labels], dtype=np.int64)


def _suggestions(column_label: np.ndarray, idx: np.ndarray, probs: np.ndarray) -> list[list]:
    """[[label_id, probability], ...] of one document's shortlist (model columns -> label ids), best first; padding
    (column -1) and labels the project no longer has are left out."""
    return [
        [int(column_label[j]), round(float(p), 4)]
        for j, p in zip(idx, probs, strict=True)
        if j >= 0 and column_label[j] >= 0
    ]


def _model_items(
    project: Project,
    version: ModelVersion,
    store,
    pool: list[int],
    beat: Heartbeat,
    publish: _ChunkPublisher | None = None,
) -> list[QueueItem] | None:
    """The final queue of `version` over the pool (None when it stopped serving meanwhile). Scores the pool in
    chunks, keeping only each document's top-`kept` shortlist (never the documents x labels matrix); after each
    chunk its share of the queue, by score, goes to `publish`."""
    model = ml.load_model(str(Path(settings.ARTIFACTS_DIR) / version.artifact_path))
    column_label = _column_labels(project, model)
    n_labels = len(model.labels)
    k = min(project.suggestions_k, n_labels)
    # Strategies read each document's shortlist of the model's best labels: every label for flat heads, the top
    # SHORTLIST for trees (the rest have probabilities near 0 and add nothing to uncertainty).
    width = min(n_labels, max(k, SHORTLIST))
    chunk = int(max(64, min(4096, SCORE_CELLS // max(width, 1))))
    mean_cardinality = float(version.config.get("mean_cardinality", 1.0))
    threshold = effective_threshold(project=project, version=version)
    strategy, scorer, rule = ml.resolve_strategy(project.strategy, n_labels)
    arm = strategy  # what scores and picks: the strategy, or the arm `auto` runs this time
    if ml.is_auto(strategy):
        doc_ids, rows = latest_answers(project, evaluation=False)
        arm = chooser.auto_arm(project=project, doc_ids=doc_ids, rows=rows, n_labels=n_labels, seed=version.number)
        _, scorer, rule = ml.resolve_strategy(arm, n_labels)
    # The rule's per-label thresholds, unless the manager set one threshold for every label.
    per_label = ml.per_label_thresholds(model) if project.decision_threshold is None else None
    label_counts = None
    labelled_ids: list[int] = []
    reads_labelled = rule == "ranked" or ml.is_coverage_rule(rule)  # batch rules that avoid what is labelled
    if scorer in ("rarity", "positives") or reads_labelled:
        labelled_ids, label_counts = training_label_counts(project, list(model.labels))
    scores = np.empty(len(pool), dtype=np.float64)  # (U,)
    kept = min(width, max(k, KEPT_SHORTLIST))
    top_idx = np.empty((len(pool), kept), dtype=np.int32)  # (U, kept)
    top_p = np.empty((len(pool), kept), dtype=np.float32)  # (U, kept)
    for start in range(0, len(pool), chunk):
        ids = pool[start : start + chunk]
        idx, probs = ml.shortlists(
            model,
            texts=_texts(ids) if model.uses_texts else None,
            X=store.get(ids) if model.uses_embeddings else None,
            k=width,
        )  # (C, width) each, best first
        scores[start : start + len(ids)] = ml.score_strategy(
            arm,
            probs,
            idx=idx,
            threshold=threshold,
            mean_cardinality=mean_cardinality,
            label_counts=label_counts,
            per_label=per_label,
            seed=version.number * 7919 + start,
        )
        top_idx[start : start + len(ids)] = idx[:, :kept]
        top_p[start : start + len(ids)] = probs[:, :kept]
        if publish is not None:
            chunk_scores = scores[start : start + len(ids)]
            share = min(len(ids), -(-project.queue_size * len(ids) // len(pool)))  # ceil
            best = np.argsort(-chunk_scores, kind="stable")[:share]
            provisional = [
                QueueItem(
                    document_id=ids[int(row)],
                    strategy=strategy,
                    score=float(chunk_scores[row]),
                    suggestions=_suggestions(column_label, idx[row, :kept], probs[row, :kept]),
                )
                for row in best
            ]
            if not publish(provisional):
                return None
        beat((start + len(ids)) / len(pool), f"scored {start + len(ids)} of {len(pool)} documents")
    # The batch rule runs once on the whole pool: the best scores, or a diverse batch among the best.
    embeddings = store.get(pool) if rule != "top" else None
    anchors = _anchor_inputs(project, ml.model_encoder(model)) if rule == "anchors" else (None, None)
    delta = None  # ProbCover's, kept per encoder and pool size in the project's selection memory
    if rule == "probcover" and embeddings is not None:
        delta = chooser.probcover_delta(
            project=project, encoder=store.fingerprint, embeddings=embeddings, n_labels=n_labels, seed=version.number
        )
    chosen = ml.select_batch(
        arm,
        scores,
        project.queue_size,
        embeddings=embeddings,
        labelled_embeddings=_encoded_only(store, labelled_ids) if reads_labelled else None,
        idx=top_idx,
        probs=top_p,
        threshold=threshold,
        per_label=per_label,
        n_labels=n_labels,
        delta=delta,
        label_vectors=anchors[0],
        label_counts=anchors[1],
        seed=version.number,
    )
    if arm != strategy:  # auto: its picks' answers will be this arm's reward
        chooser.auto_record(project=project, arm=arm, doc_ids=[pool[int(index)] for index in chosen])
    items = []
    for rank, index in enumerate(chosen):
        index = int(index)
        suggestions = _suggestions(column_label, top_idx[index], top_p[index])
        items.append(
            QueueItem(
                project=project,
                document_id=pool[index],
                model_version=version,
                strategy=strategy,
                score=float(scores[index]) if rule == "top" else float(len(chosen) - rank),  # served best first
                suggestions=suggestions,
            )
        )
    return items


def _evaluation_items(project: Project, version: ModelVersion, store) -> list[QueueItem]:
    """Queue rows for the unlabelled evaluation documents: the model's suggestions, so that they are served looking
    like every other document, and strategy "evaluation" (never picked by the active-learning order)."""
    doc_ids = list(
        Document.objects.filter(project=project, is_evaluation=True)
        .filter(~Exists(Annotation.objects.filter(document=OuterRef("pk"))))
        .order_by("id")
        .values_list("id", flat=True)
    )
    encoded = set(store.ids().tolist())
    doc_ids = [doc_id for doc_id in doc_ids if doc_id in encoded]
    if not doc_ids:
        return []
    model = ml.load_model(str(Path(settings.ARTIFACTS_DIR) / version.artifact_path))
    column_label = _column_labels(project, model)
    kept = min(len(model.labels), max(project.suggestions_k, KEPT_SHORTLIST))
    items = []
    for start in range(0, len(doc_ids), 1024):
        ids = doc_ids[start : start + 1024]
        idx, probs = ml.shortlists(
            model,
            texts=_texts(ids) if model.uses_texts else None,
            X=store.get(ids) if model.uses_embeddings else None,
            k=kept,
        )
        for row, doc_id in enumerate(ids):
            items.append(
                QueueItem(
                    project=project,
                    document_id=doc_id,
                    model_version=version,
                    strategy="evaluation",
                    score=-1.0,
                    suggestions=_suggestions(column_label, idx[row], probs[row]),
                )
            )
    return items


def _encoded_only(store, doc_ids: list[int]) -> np.ndarray | None:
    """Embeddings (n, D) of those of `doc_ids` that are encoded (a document labelled since the last training may
    not be yet); None when there is none."""
    encoded = set(store.ids().tolist())
    kept = [doc_id for doc_id in doc_ids if doc_id in encoded]
    return store.get(kept) if kept else None


# --- reconcile -------------------------------------------------------------------------------------------------------
def jobs_reconcile() -> dict[str, int]:
    """Run by celery beat every ALABEL_RECONCILE_SECONDS: the safety net that makes the loop survive lost messages
    and dead workers.

    - RUNNING jobs whose heartbeat stopped (their worker process died: SIGKILL, out of memory, host lost) are
      marked FAILED with the reason and retried as a new job (`retry_of`), at most ALABEL_JOB_MAX_RETRIES times in
      a row; a cancelled one is marked CANCELLED;
    - PENDING jobs never sent (broker was down) or sent long ago without starting are sent again (a duplicate
      delivery is harmless: only one claims the job);
    - projects due for training without a queued run get one;
    - model folders no version refers to (left by a killed run) are removed after an hour.
    """
    now = timezone.now()
    counts = {"failed_stale": 0, "retried": 0, "redispatched": 0, "training_requested": 0, "orphans_removed": 0}
    stale = now - timedelta(seconds=settings.ALABEL_JOB_STALE_SECONDS)
    for job in Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=stale).select_related("project"):
        if job.cancel_requested:
            job_mark_cancelled(job_id=job.pk)
            continue
        job_fail(
            job_id=job.pk,
            error=f"worker lost: {job.worker or 'its worker'} stopped reporting for more than "
            f"{settings.ALABEL_JOB_STALE_SECONDS} s (process killed, out of memory or host down)",
        )
        counts["failed_stale"] += 1
        if job_retry_depth(job) < settings.ALABEL_JOB_MAX_RETRIES:
            _, created = job_request(
                project=job.project,
                kind=job.kind,
                reason=f"retry of job {job.pk} (worker lost)",
                model_version=job.model_version,
                mode=job.mode,
                schedule=job.schedule,
                retry_of=job,
            )
            counts["retried"] += int(created)
    resend_before = now - timedelta(seconds=max(settings.ALABEL_JOB_STALE_SECONDS, 60))
    for job in Job.objects.filter(status=Job.Status.PENDING).exclude(dispatched_at__gte=resend_before):
        if job.dispatched_at is None and job.created_at > now - timedelta(seconds=10):
            continue  # just created: its on-commit dispatch is under way
        if job_dispatch(job_id=job.pk):
            counts["redispatched"] += 1
    for project in Project.objects.all():
        if training_maybe_request(project=project) is not None:
            counts["training_requested"] += 1
    counts["orphans_removed"] = artifacts_sweep()
    if connection.vendor == "sqlite":  # SQLite keeps no planner statistics unless asked to
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA optimize")
    if any(counts.values()):
        logger.info("reconcile: %s", counts)
    return counts


def artifacts_sweep(*, older_than: float = 3600.0) -> int:
    """Removes model and encoder folders that no version refers to and no active job is writing (a run killed
    between saving and publishing leaves one), once they are `older_than` seconds old. Returns how many."""
    root = Path(settings.ARTIFACTS_DIR) / "projects"
    if not root.is_dir():
        return 0
    known = set(ModelVersion.objects.values_list("artifact_path", flat=True))
    known |= set(EncoderVersion.objects.values_list("artifact_path", flat=True))
    active = {f"job{pk}-" for pk in Job.objects.filter(status__in=Job.ACTIVE).values_list("pk", flat=True)}
    removed = 0
    for folder in [*root.glob("*/models/*"), *root.glob("*/encoders/*")]:
        relative = str(folder.relative_to(Path(settings.ARTIFACTS_DIR)))
        if relative in known or any(folder.name.lstrip(".").startswith(prefix) for prefix in active):
            continue
        try:
            if time.time() - folder.stat().st_mtime < older_than:
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed
