"""The unbiased evaluation set: a fixed uniform sample of the pool, labelled through the same page as the
active-learning picks (interleaved, unmarked), never trained on, on which every model version is measured."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q

from .. import ml
from ..models import Annotation, Document, Label, ModelVersion, PreAnnotation, Project, QueueItem
from ..selectors import (
    DECISION_SCORE,
    MODEL_BETTER_MIN_DOCUMENTS,
    document_texts,
    evaluation_labels,
    training_label_counts,
)
from .encoding import encode_missing

logger = logging.getLogger(__name__)

EVAL_BOOTSTRAP = 1000  # resamples behind each interval
REEVALUATE_GROWTH = 1.1  # older versions are measured again once the labelled set grew by 10 %
REEVALUATE_VERSIONS = 20  # at most this many of the latest versions each time


MAX_SHARE_BY_SIZE = 0.1  # `eval_size` takes at most a tenth of the documents; `eval_fraction` may take more


def evaluation_target(project: Project, n_documents: int) -> int:
    """`eval_fraction` of the documents when set, else `eval_size` but never more than a tenth of them (a small
    project keeps most documents for training)."""
    if project.eval_fraction is not None:
        return round(project.eval_fraction * n_documents)
    return min(project.eval_size, int(n_documents * MAX_SHARE_BY_SIZE))


def evaluation_turn(*, project: Project) -> bool:
    """Whether the next document served should come from the evaluation set: it does whenever fewer than
    `eval_share` of the documents labelled so far (this one counted) are evaluation documents, so with a share of
    0.2 every fifth document is one, as long as unlabelled ones remain. Deterministic: the mix is exact."""
    if project.eval_share <= 0 or (project.eval_size == 0 and not project.eval_fraction):
        return False  # no evaluation set: nothing to serve from it (and no query to find that out)
    counts = (
        Annotation.objects.filter(project=project)
        .exclude(source=Annotation.Source.IMPORT)
        .aggregate(
            total=Count("document", distinct=True),
            evaluation=Count("document", distinct=True, filter=Q(document__is_evaluation=True)),
        )
    )
    return counts["evaluation"] < int(project.eval_share * (counts["total"] + 1) + 1e-9)


@transaction.atomic
def evaluation_set_sync(*, project: Project) -> int:
    """Brings the evaluation set to its target size (`eval_size` documents, or `eval_fraction` of them).

    New members are drawn uniformly at random among the documents nobody has labelled yet (at import time that is
    the whole pool, so the set is a uniform sample of it); labelled members stay members for good, so what was
    measured stays comparable. Shrinking releases unlabelled members, chosen at random. Returns the set's size.
    """
    Project.objects.select_for_update(no_key=True).get(pk=project.pk)
    documents = Document.objects.filter(project=project)
    target = evaluation_target(project, documents.count())
    members = documents.filter(is_evaluation=True)
    size = members.count()
    rng = random.SystemRandom()
    unlabelled = ~Exists(Annotation.objects.filter(document=OuterRef("pk")))
    if size < target:
        candidates = list(documents.filter(is_evaluation=False).filter(unlabelled).values_list("id", flat=True))
        chosen = rng.sample(candidates, min(target - size, len(candidates)))
        for start in range(0, len(chosen), 2000):
            part = chosen[start : start + 2000]
            Document.objects.filter(pk__in=part).update(is_evaluation=True)
            # They leave the active-learning queue (an evaluation document is served as one, never as a pick).
            QueueItem.objects.filter(document_id__in=part).exclude(strategy="evaluation").filter(
                leased_to__isnull=True
            ).delete()
        size += len(chosen)
    elif size > target:
        releasable = list(members.filter(unlabelled).values_list("id", flat=True))
        released = rng.sample(releasable, min(size - target, len(releasable)))
        Document.objects.filter(pk__in=released).update(is_evaluation=False)
        QueueItem.objects.filter(document_id__in=released, strategy="evaluation").delete()
        size -= len(released)
    from .overlap import overlap_apply

    overlap_apply(project=project)  # new documents and evaluation members take the overlap settings
    return size


def _model_inputs(model, project: Project, doc_ids: list[int]) -> tuple[list[str] | None, np.ndarray | None]:
    """What `model` reads for these documents: their texts and/or embeddings (encoding any not encoded yet)."""
    X = None
    reads_texts, reads_embeddings = ml.model_reads(model)
    if reads_embeddings:
        encode_missing(project.pk, doc_ids, lambda *_: None, ml.model_encoder(model))
        X = ml.embedding_store(project.pk, ml.model_encoder(model)).get(doc_ids)
    return (document_texts(doc_ids) if reads_texts else None), X


def evaluate_model(
    *, model, project: Project, doc_ids: list[int], rows: list[list[int]], label_counts: np.ndarray, n_train: int
) -> dict:
    """`model` measured on the labelled evaluation documents: learner.evaluation's values and intervals."""
    if not doc_ids:
        return {}
    names = dict(Label.objects.filter(project=project).values_list("id", "name"))
    column = {name: j for j, name in enumerate(ml.model_labels(model))}
    n_labels = len(column)
    indptr, indices = [0], []
    for row in rows:
        indices.extend(sorted({column[names[label_id]] for label_id in row if names.get(label_id) in column}))
        indptr.append(len(indices))
    texts, X = _model_inputs(model, project, doc_ids)
    return ml.evaluate(
        model,
        texts=texts,
        X=X,
        indptr=indptr,
        indices=indices,
        n_labels=n_labels,
        label_counts=label_counts,
        n_train=n_train,
        n_boot=EVAL_BOOTSTRAP,
    )


def _source_predictions(project: Project, doc_ids: list[int]) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """The pre-annotations of these documents: {source: {document id: [(label id, score), ...] best first}}."""
    found: dict[str, dict[int, list[tuple[int, float]]]] = {}
    for start in range(0, len(doc_ids), 2000):
        for document_id, source, label_id, score in (
            PreAnnotation.objects.filter(project=project, document_id__in=doc_ids[start : start + 2000])
            .order_by("document_id", "-score", "label_id")
            .values_list("document_id", "source", "label_id", "score")
        ):
            found.setdefault(source, {}).setdefault(document_id, []).append((label_id, score))
    return found


def _compare_source(
    true: list[list[int]], model: list[list[int]], model_top: list[int], scored: list[list[tuple[int, float]]]
) -> dict:
    """One source against the model on the documents it covers (label ids per document; `scored` the source's
    labels with scores, best first): micro-F1, macro-F1, precision and P@1 of each (the source decides a label at
    DECISION_SCORE), and whether the model is better."""
    source = [sorted({label for label, score in row if score >= DECISION_SCORE}) for row in scored]
    source_top = [row[0][0] if row else -1 for row in scored]
    named = {label for rows in (true, model, source) for row in rows for label in row}
    ids = sorted(named | set(model_top) | set(source_top))
    column = {label_id: j for j, label_id in enumerate(i for i in ids if i >= 0)}

    def columns(rows: list[list[int]]) -> list[list[int]]:
        return [sorted({column[label] for label in row}) for row in rows]

    def best(labels: list[int]) -> list[int]:
        return [column[label] if label >= 0 else -1 for label in labels]

    n_labels = max(len(column), 1)
    truth = columns(true)
    model_scores = ml.decision_scores(truth, columns(model), best(model_top), n_labels)
    source_scores = ml.decision_scores(truth, columns(source), best(source_top), n_labels)
    n = len(true)
    result: dict = {"n_documents": n, "model": model_scores, "source": source_scores, "model_better": False}
    if n < MODEL_BETTER_MIN_DOCUMENTS:
        result["reason"] = (
            f"the source covers {n} labelled evaluation document(s); the comparison needs {MODEL_BETTER_MIN_DOCUMENTS}"
        )
    elif model_scores["micro_f1"] > source_scores["micro_f1"]:
        result["model_better"] = True
    else:
        result["reason"] = (
            f"the model's micro-F1 ({model_scores['micro_f1']}) is not above the source's ({source_scores['micro_f1']})"
        )
    return result


def preannotations_compare(*, model, project: Project, doc_ids: list[int], rows: list[list[int]]) -> dict:
    """`model` against each pre-annotation source on the labelled evaluation documents the source covers
    (`ModelVersion.preannotation_comparison`): {source: {"n_documents", "model": {...}, "source": {...},
    "model_better", "reason"?}} with micro_f1, macro_f1, precision and p_at_1 each (`_compare_source`). The model
    is better when its micro-F1 is above the source's on at least MODEL_BETTER_MIN_DOCUMENTS covered documents.
    Empty when the project has no pre-annotations (no query)."""
    project.refresh_from_db(fields=["preannotation_sources"])
    if not project.preannotation_sources:
        return {}
    predictions = _source_predictions(project, doc_ids) if doc_ids else {}
    gold = {doc_id: sorted(set(row)) for doc_id, row in zip(doc_ids, rows, strict=True)}
    covered = sorted({doc_id for by_doc in predictions.values() for doc_id in by_doc})
    decided: dict[int, tuple[list[int], int]] = {}
    if covered:
        label_ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
        names = ml.model_labels(model)
        texts, X = _model_inputs(model, project, covered)
        columns, top = ml.decisions_with_top(model, texts=texts, X=X)
        for doc_id, row, best in zip(covered, columns, top, strict=True):
            decisions = sorted({label_ids[names[j]] for j in row if names[j] in label_ids})
            decided[doc_id] = (decisions, label_ids.get(names[best], -1) if best >= 0 else -1)
    comparison: dict = {}
    for source in project.preannotation_sources:
        by_doc = predictions.get(source, {})
        docs = sorted(by_doc)
        if not docs:
            comparison[source] = {
                "n_documents": 0,
                "model_better": False,
                "reason": "the source covers no labelled evaluation document yet",
            }
            continue
        comparison[source] = _compare_source(
            [gold[doc] for doc in docs],
            [decided[doc][0] for doc in docs],
            [decided[doc][1] for doc in docs],
            [by_doc[doc] for doc in docs],
        )
    return comparison


def evaluation_refresh(*, project: Project) -> int:
    """Measures again the latest versions whose evaluation is on fewer labelled evaluation documents than the set
    now has (by REEVALUATE_GROWTH), so the learning curve compares versions on (nearly) the same documents, and
    the serving version when it was not compared with a pre-annotation source the project has now. Returns how
    many versions were measured."""
    doc_ids, rows = evaluation_labels(project)
    if not doc_ids:
        return 0
    sources = set(project.preannotation_sources or [])
    stale = [
        version
        for version in ModelVersion.objects.filter(project=project).order_by("-number")[:REEVALUATE_VERSIONS]
        if version.evaluation.get("n_documents", 0) * REEVALUATE_GROWTH < len(doc_ids)
        or (version.evaluation.get("n_documents", 0) < len(doc_ids) and version.is_serving)
        or (version.is_serving and not sources <= set(version.preannotation_comparison or {}))
    ]
    done = 0
    counts: tuple[int, np.ndarray] | None = None  # (training documents, positives per model label)
    for version in stale:
        path = Path(settings.ARTIFACTS_DIR) / version.artifact_path
        if not path.exists():
            continue
        model = ml.load_model(str(path))
        names = ml.model_labels(model)
        if counts is None or len(counts[1]) != len(names):
            train_ids, train_counts = training_label_counts(project, names)
            counts = (len(train_ids), train_counts)
        result = evaluate_model(
            model=model, project=project, doc_ids=doc_ids, rows=rows, label_counts=counts[1], n_train=counts[0]
        )
        per_label = result.pop("per_label", [])
        comparison = preannotations_compare(model=model, project=project, doc_ids=doc_ids, rows=rows)
        ModelVersion.objects.filter(pk=version.pk).update(
            evaluation=result, evaluation_per_label=per_label, preannotation_comparison=comparison
        )
        done += 1
    return done


STOP_SET_SIZE = 500  # documents on which successive models' decisions are compared


def stop_set_for(*, project: Project) -> list[int]:
    """The project's stop set: fixed at the first training, a uniform sample of up to STOP_SET_SIZE documents outside
    the evaluation set (labelled or not: the models' decisions are compared, not their accuracy)."""
    if project.stop_set:
        return list(project.stop_set)
    ids = list(Document.objects.filter(project=project, is_evaluation=False).values_list("id", flat=True))
    chosen = sorted(random.SystemRandom().sample(ids, min(STOP_SET_SIZE, len(ids))))
    Project.objects.filter(pk=project.pk, stop_set=[]).update(stop_set=chosen)
    project.refresh_from_db(fields=["stop_set"])
    return list(project.stop_set)


def stop_decisions(*, model, project: Project, doc_ids: list[int]) -> list[list[int]]:
    """The model's decisions (label ids) on the stop set documents, in order."""
    if not doc_ids:
        return []
    label_ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
    texts, X = _model_inputs(model, project, doc_ids)
    columns = ml.label_decisions(model, texts=texts, X=X)
    names = ml.model_labels(model)
    return [sorted(label_ids[names[j]] for j in row if names[j] in label_ids) for row in columns]
