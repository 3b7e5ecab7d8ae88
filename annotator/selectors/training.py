"""Reads for the jobs that train, adapt and measure: the resolved answers, label counts, texts, label names."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from ..models import (
    Adjudication,
    AdjudicationLabel,
    Annotation,
    AnnotationLabel,
    Document,
    EncoderVersion,
    Label,
    Project,
)

T = TypeVar("T", int, str)
TEXT_CHUNK = 5000  # document ids per query when loading texts


def resolved_answers(project: Project, *, evaluation: bool) -> tuple[list[int], list[list[int]]]:
    """One label set per answered document, of the training documents or of the evaluation set: document ids
    (sorted) and the label ids of each, by the rule (docs/operations.md, "Review and adjudication"):

    1. gold: a reviewer's adjudication, when the document has one (even without answers);
    2. else, with several answers, their strict majority: a label is in when more than half of the answers chose
       it; on an exact tie (two answers that disagree, two of four) the latest answer decides for that label;
    3. else the single answer (a revised answer replaces its annotator's earlier one).
    """
    answers: dict[int, list[int]] = {}  # document -> its answers, oldest first (the latest last)
    for annotation_id, document_id in (
        Annotation.objects.filter(project=project, document__is_evaluation=evaluation)
        .order_by("updated_at", "id")
        .values_list("id", "document_id")
    ):
        answers.setdefault(document_id, []).append(annotation_id)
    by_annotation: dict[int, list[int]] = {}
    for annotation_id, label_id in AnnotationLabel.objects.filter(
        annotation__project=project, annotation__document__is_evaluation=evaluation
    ).values_list("annotation_id", "label_id"):
        by_annotation.setdefault(annotation_id, []).append(label_id)
    gold: dict[int, list[int]] = {
        document_id: []
        for document_id in Adjudication.objects.filter(project=project, document__is_evaluation=evaluation).values_list(
            "document_id", flat=True
        )
    }
    for document_id, label_id in AdjudicationLabel.objects.filter(
        adjudication__project=project, adjudication__document__is_evaluation=evaluation
    ).values_list("adjudication__document_id", "label_id"):
        gold[document_id].append(label_id)
    doc_ids = sorted(set(answers) | set(gold))
    rows = []
    for doc_id in doc_ids:
        given = [by_annotation.get(annotation_id, []) for annotation_id in answers.get(doc_id, [])]
        rows.append(resolve_labels(gold.get(doc_id), given)[0])
    return doc_ids, rows


def resolve_labels(gold: Sequence[T] | None, answers: Sequence[Sequence[T]]) -> tuple[list[T], str]:
    """The rule of `resolved_answers` for one document: (labels, where from: "gold", "majority" or "single").
    `answers`: the label lists of its answers, oldest first."""
    if gold is not None:
        return sorted(gold), "gold"
    if len(answers) == 1:
        return sorted(answers[0]), "single"
    votes = Counter(label for given in answers for label in set(given))
    latest, n = set(answers[-1]), len(answers)
    return sorted(label for label, k in votes.items() if 2 * k > n or (2 * k == n and label in latest)), "majority"


def evaluation_labels(project: Project) -> tuple[list[int], list[list[int]]]:
    """The labelled evaluation documents and their label ids (`resolved_answers`: gold > majority > latest)."""
    return resolved_answers(project, evaluation=True)


def training_snapshot(project: Project) -> tuple[list[int], list[tuple[int, str]], list[list[int]]]:
    """One label set per answered document (`resolved_answers`: gold > majority > latest answer): document ids, the
    project's labels (id, name) and label ids per document.

    Documents of the evaluation set are left out: no model ever trains on them."""
    doc_ids, rows = resolved_answers(project, evaluation=False)
    labels = list(Label.objects.filter(project=project).order_by("id").values_list("id", "name"))
    return doc_ids, labels, rows


def training_label_counts(project: Project, model_labels: list[str]) -> tuple[list[int], np.ndarray]:
    """The training documents (ids) and, per model label (column), how many of them carry it: (L,) int64."""
    doc_ids, labels, rows = training_snapshot(project)
    position = {name: j for j, name in enumerate(model_labels)}
    column_of_label = {label_id: position.get(name, -1) for label_id, name in labels}
    counts = np.zeros(len(model_labels), dtype=np.int64)
    for row in rows:
        for label_id in row:
            if column_of_label.get(label_id, -1) >= 0:
                counts[column_of_label[label_id]] += 1
    return doc_ids, counts


def label_texts(project_id: int) -> list[tuple[str, str]]:
    """(name, description) of the project's labels, in id order: what the label-name prior embeds."""
    return list(Label.objects.filter(project_id=project_id).order_by("id").values_list("name", "description"))


def column_labels(project: Project, model_labels: list[str]) -> np.ndarray:
    """The project's label id of each model column (L,), -1 for a label the project no longer has."""
    label_ids_by_name = dict(Label.objects.filter(project=project).values_list("name", "id"))
    return np.array([label_ids_by_name.get(name, -1) for name in model_labels], dtype=np.int64)


def document_texts(doc_ids: list[int]) -> list[str]:
    """The texts of `doc_ids`, in their order."""
    texts: dict[int, str] = {}
    for start in range(0, len(doc_ids), TEXT_CHUNK):
        texts.update(Document.objects.filter(pk__in=doc_ids[start : start + TEXT_CHUNK]).values_list("id", "text"))
    return [texts[doc_id] for doc_id in doc_ids]


def encoder_unseen(project: Project, encoder_path: str | None, doc_ids: list[int]) -> np.ndarray | None:
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
