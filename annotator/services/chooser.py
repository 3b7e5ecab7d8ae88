"""The `auto` strategy's memory between scoring runs: which strategy (arm) it runs, and what that arm's picks earned.

`auto` (the default up to 1,000 labels, `learner.strategies.AUTO`) covers the pool with ProbCover until the project
has `learner.chooser.switch_at(labels)` labelled training documents, then lets a Thompson-sampling chooser pick
among `learner.strategies.AUTO_ARMS`. Each scoring run first pays the previous arm: the documents it queued that have
been answered since are its batch, and the reward is TAILOR's class-diversity reward of their labels against the
positives of the other training documents (`learner.chooser.reward`: labels with few positives earn more). Then it
asks for the next arm and remembers it with the documents it queues (`Project.chooser_state`). Queue items and
answers keep the strategy name `auto`; the arm of the latest run is in the state, and so is ProbCover's delta
(`probcover_delta`), which reads only the pool's embeddings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from .. import ml
from ..models import Annotation, Project

MAX_REMEMBERED = 5000  # queued documents remembered per run (the queue holds `queue_size` <= this)
DELTA_POOL_CHANGE = 0.1  # ProbCover's delta is computed again once the pool's size moved by more than this share


def auto_arm(*, project: Project, doc_ids: list[int], rows: list[list[int]], n_labels: int, seed: int) -> str:
    """Pays the previous arm with the answers its picks got since, then returns the arm to run now.

    `doc_ids` / `rows`: the training documents and their label ids (the latest answer of each)."""
    state = dict(project.chooser_state or {})
    chooser = state.get("chooser")
    arm, picked, since = state.get("arm"), state.get("picked") or [], state.get("since")
    if arm and picked and since:
        answered = set(
            Annotation.objects.filter(
                project=project, document_id__in=picked, created_at__gt=since, document__is_evaluation=False
            ).values_list("document_id", flat=True)
        )
        if answered:
            label_ids = sorted({label for row in rows for label in row})
            column = {label: j for j, label in enumerate(label_ids)}
            batch = np.zeros((len(answered), max(len(label_ids), 1)))
            before = np.zeros(max(len(label_ids), 1))
            i = 0
            for doc_id, row in zip(doc_ids, rows, strict=True):
                if doc_id in answered:
                    batch[i, [column[label] for label in row]] = 1.0
                    i += 1
                else:
                    before[[column[label] for label in row]] += 1.0
            chooser = ml.chooser_update(chooser, arm, batch[:i], before)
            picked = []  # paid: the next run starts a new batch
    next_arm = ml.auto_arm(chooser, len(doc_ids), n_labels, seed)
    state.update(chooser=chooser, arm=next_arm, picked=picked)
    _save(project, state)
    return next_arm


def auto_record(*, project: Project, arm: str, doc_ids: list[int]) -> None:
    """Remembers the documents this run of `arm` queued: their answers will be its reward."""
    state = dict(Project.objects.get(pk=project.pk).chooser_state or {})
    if state.get("arm") != arm:
        return
    state.update(picked=[int(d) for d in doc_ids[:MAX_REMEMBERED]], since=timezone.now().isoformat())
    _save(project, state)


def probcover_delta(*, project: Project, encoder: str, embeddings: np.ndarray, n_labels: int, seed: int) -> float:
    """ProbCover's delta for the pool (`embeddings`), kept in the project's selection memory: computed again only
    when the encoder or the label count changed or the pool's size moved by more than `DELTA_POOL_CHANGE`. The
    delta rule reads only the embeddings and costs more than the picks."""
    state = dict(Project.objects.get(pk=project.pk).chooser_state or {})
    kept = state.get("probcover_delta") or {}
    size = len(embeddings)
    if (
        kept.get("encoder") == encoder
        and kept.get("labels") == n_labels
        and abs(size - int(kept.get("documents", 0))) <= DELTA_POOL_CHANGE * int(kept.get("documents", 0))
    ):
        return float(kept["delta"])
    delta = ml.probcover_delta(embeddings, n_labels, seed)
    state["probcover_delta"] = {"delta": delta, "encoder": encoder, "labels": n_labels, "documents": size}
    _save(project, state)
    return delta


def _save(project: Project, state: dict[str, Any]) -> None:
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(chooser_state=state)
    project.chooser_state = state
