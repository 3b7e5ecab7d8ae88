"""The scoring job: the serving model scores the unlabelled pool with the project's strategy, and the best
documents, with the model's suggestions, become the queue (before the first model: cold-start picks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from django.conf import settings
from django.db.models import Exists, OuterRef, Q

from .. import ml
from ..exceptions import ProjectError
from ..models import Annotation, Document, Job, Label, ModelVersion, Project, QueueItem
from ..selectors import (
    column_labels,
    document_texts,
    effective_threshold,
    label_texts,
    resolved_answers,
    serving_version,
    training_label_counts,
    unlabelled_document_ids,
)
from . import chooser
from .curves import learning_curve_refresh
from .encoding import label_prior
from .evaluation import evaluation_refresh
from .jobs import (
    JOB_ERRORS,
    Heartbeat,
    JobCancelled,
    JobLiveness,
    job_claim,
    job_fail,
    job_mark_cancelled,
    job_request,
    job_succeed,
)
from .overlap import overlap_waiting
from .queue import QueueChunkPublisher, queue_replace, queue_statistics_refresh

SCORE_CELLS = 20_000_000  # documents x shortlisted labels held at once while scoring
SHORTLIST = 100  # labels per document the strategies see for large label sets
KEPT_SHORTLIST = 50  # labels per queued document kept with their scores: suggestions first, then search ranking


def _anchor_inputs(project: Project, encoder_path: str | None) -> tuple[np.ndarray, np.ndarray]:
    """What the `anchors` rule reads: the label-name vectors (L, D) of every project label (a label not embedded
    yet: a zero row, skipped) and the training documents' positives per label (L,), in label id order. Labels the
    serving model has never seen count too: they have no positive yet, so they come first."""
    labels = label_texts(project.pk)
    vectors = ml.label_vectors(project.pk, labels, encoder_path)
    if vectors is None:
        raise ProjectError(
            "the anchors strategy reads the labels' names as vectors and none is embedded yet: the encode job "
            "embeds them with the documents; until it has run, pick another strategy"
        )
    _, counts = training_label_counts(project, [name for name, _ in labels])
    return vectors, counts


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
                count = queue_replace(project, version, _cold_start_items(project, store, pool, job.pk))
            else:
                beat = Heartbeat(job.pk, span=0.9)
                evaluation = _evaluation_items(project, version, store)
                items = _model_items(
                    project, version, store, pool, beat, QueueChunkPublisher(project, version, evaluation)
                )
                count = None if items is None else queue_replace(project, version, items + evaluation)
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
    queue_statistics_refresh(count)
    job_succeed(job=job, message=f"queued {count} of {len(pool)} documents ({what})", model_version=version)


def _cold_start_items(project: Project, store, pool: list[int], seed: int) -> list[QueueItem]:
    """Before the first model: diverse, representative picks (k-means on the embeddings), each with the label-name
    prior's suggestions (zero-shot: the labels whose names are closest to the document) when label vectors exist."""
    n = min(project.queue_size, settings.ALABEL_COLD_START_SIZE)
    X = store.get(pool)  # (U, D)
    picks = ml.cold_start(X, n, seed=seed)
    suggestions: list[list] = [[] for _ in picks]
    prior = label_prior(project.pk, encode=False)
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
    publish: QueueChunkPublisher | None = None,
) -> list[QueueItem] | None:
    """The final queue of `version` over the pool (None when it stopped serving meanwhile). Scores the pool in
    chunks, keeping only each document's top-`kept` shortlist (never the documents x labels matrix); after each
    chunk its share of the queue, by score, goes to `publish`."""
    model = ml.load_model(str(Path(settings.ARTIFACTS_DIR) / version.artifact_path))
    names = ml.model_labels(model)
    column_label = column_labels(project, names)
    n_labels = len(names)
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
        doc_ids, rows = resolved_answers(project, evaluation=False)
        arm = chooser.auto_arm(project=project, doc_ids=doc_ids, rows=rows, n_labels=n_labels, seed=version.number)
        _, scorer, rule = ml.resolve_strategy(arm, n_labels)
    # The rule's per-label thresholds, unless the manager set one threshold for every label.
    per_label = ml.per_label_thresholds(model) if project.decision_threshold is None else None
    label_counts = None
    labelled_ids: list[int] = []
    reads_labelled = rule == "ranked" or ml.is_coverage_rule(rule)  # batch rules that avoid what is labelled
    if scorer in ("rarity", "positives") or reads_labelled:
        labelled_ids, label_counts = training_label_counts(project, names)
    kept = min(width, max(k, KEPT_SHORTLIST))
    scored = 0

    def on_chunk(ids: list[int], chunk_scores: np.ndarray, idx: np.ndarray, probs: np.ndarray) -> bool:
        nonlocal scored
        if publish is not None:
            share = min(len(ids), -(-project.queue_size * len(ids) // len(pool)))  # ceil
            best = np.argsort(-chunk_scores, kind="stable")[:share]
            provisional = [
                QueueItem(
                    document_id=ids[int(row)],
                    strategy=strategy,
                    score=float(chunk_scores[row]),
                    suggestions=_suggestions(column_label, idx[row], probs[row]),
                )
                for row in best
            ]
            if not publish(provisional):
                return False
        scored += len(ids)
        beat(scored / len(pool), f"scored {scored} of {len(pool)} documents")
        return True

    result = ml.score_pool(
        model,
        pool,
        arm,
        width=width,
        kept=kept,
        chunk=chunk,
        texts_for=document_texts,
        vectors_for=store.get,
        on_chunk=on_chunk,
        seed=version.number,
        threshold=threshold,
        mean_cardinality=mean_cardinality,
        label_counts=label_counts,
        per_label=per_label,
    )
    if result is None:
        return None
    scores, top_idx, top_p = result
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
    """Queue rows for the unlabelled evaluation documents and for the overlap documents waiting for further answers:
    the model's suggestions, so that they are served looking like every other document, and strategy "evaluation"
    or "overlap" (never picked by the active-learning order; services.queue serves them on their own turns)."""
    unanswered_evaluation = Q(is_evaluation=True) & ~Q(Exists(Annotation.objects.filter(document=OuterRef("pk"))))
    rows = list(
        Document.objects.filter(project=project)
        .filter(unanswered_evaluation | overlap_waiting())
        .order_by("id")
        .values_list("id", "answers_count")
    )
    kind = {doc_id: "overlap" if answered else "evaluation" for doc_id, answered in rows}
    doc_ids = [doc_id for doc_id, _ in rows]
    encoded = set(store.ids().tolist())
    doc_ids = [doc_id for doc_id in doc_ids if doc_id in encoded]
    if not doc_ids:
        return []
    model = ml.load_model(str(Path(settings.ARTIFACTS_DIR) / version.artifact_path))
    names = ml.model_labels(model)
    column_label = column_labels(project, names)
    kept = min(len(names), max(project.suggestions_k, KEPT_SHORTLIST))
    idx, probs = ml.pool_shortlists(model, doc_ids, kept, texts_for=document_texts, vectors_for=store.get)
    return [
        QueueItem(
            project=project,
            document_id=doc_id,
            model_version=version,
            strategy=kind[doc_id],
            score=-1.0,
            suggestions=_suggestions(column_label, idx[row], probs[row]),
        )
        for row, doc_id in enumerate(doc_ids)
    ]


def _encoded_only(store, doc_ids: list[int]) -> np.ndarray | None:
    """Embeddings (n, D) of those of `doc_ids` that are encoded (a document labelled since the last training may
    not be yet); None when there is none."""
    encoded = set(store.ids().tolist())
    kept = [doc_id for doc_id in doc_ids if doc_id in encoded]
    return store.get(kept) if kept else None
