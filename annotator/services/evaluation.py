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
from ..models import Annotation, Document, Label, ModelVersion, Project, QueueItem
from ..selectors import document_texts, evaluation_labels, training_label_counts
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


def evaluation_refresh(*, project: Project) -> int:
    """Measures again the latest versions whose evaluation is on fewer labelled evaluation documents than the set
    now has (by REEVALUATE_GROWTH), so the learning curve compares versions on (nearly) the same documents.
    Returns how many versions were measured."""
    doc_ids, rows = evaluation_labels(project)
    if not doc_ids:
        return 0
    stale = [
        version
        for version in ModelVersion.objects.filter(project=project).order_by("-number")[:REEVALUATE_VERSIONS]
        if version.evaluation.get("n_documents", 0) * REEVALUATE_GROWTH < len(doc_ids)
        or (version.evaluation.get("n_documents", 0) < len(doc_ids) and version.is_serving)
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
        ModelVersion.objects.filter(pk=version.pk).update(evaluation=result, evaluation_per_label=per_label)
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
