"""Does active learning pay on this project? The labels its picks saved (or cost) against random picks.

The evaluation set is a uniform random sample of the pool, labelled blind by the same experts: a random control the
project already paid for. An ESTIMATE job (default queue) replays both arms with the project's learner
(learner.replay through ml.savings_estimate): the random arm cross-fitted on the labelled evaluation documents, the
picks arm on the documents the project's picks labelled, in their order. The result (the ratio of labels with a
95 % interval, the curves, the verdict and the strategy it favours) is stored as a SavingsEstimate in one
transaction with the job's success. One is queued after a published training run once the labelled set grew by
SAVINGS_GROWTH since the last estimate; managers ask for one on demand and may adopt the favoured strategy.
"""

from __future__ import annotations

from django.db import transaction

from .. import ml
from ..exceptions import ProjectError
from ..models import Activity, Job, Project, SavingsEstimate
from ..selectors import (
    document_texts,
    evaluation_labels,
    newest_encoder_path,
    savings_latest,
    savings_pick_ids,
    serving_version,
    training_snapshot,
)
from .budgets import activity_record
from .encoding import encode_missing, label_prior
from .jobs import Heartbeat, job_request, job_run_publishing, job_succeed
from .projects import project_update

SAVINGS_MIN_EVALUATION = 20  # labelled evaluation documents (half of them train the random arm)
SAVINGS_MIN_PICKS = 20
SAVINGS_GROWTH = 0.2  # a new estimate after a training run once picks + evaluation documents grew by this share
SAVINGS_ORDERS = 3  # random orders of the random arm
SAVINGS_BOOTSTRAP = 1000


def _counts(project: Project) -> tuple[int, int]:
    """(labelled picks, labelled evaluation documents)."""
    return len(savings_pick_ids(project=project)), len(evaluation_labels(project)[0])


def _missing(picks: int, evaluation: int) -> list[str]:
    missing = []
    if evaluation < SAVINGS_MIN_EVALUATION:
        missing.append(f"at least {SAVINGS_MIN_EVALUATION} labelled evaluation documents (has {evaluation})")
    if picks < SAVINGS_MIN_PICKS:
        missing.append(f"at least {SAVINGS_MIN_PICKS} labelled documents picked by the queue (has {picks})")
    return missing


def savings_request(*, project: Project, user) -> Job:
    """ "Re-estimate": queues an estimate (or returns the one queued or running). Raises ProjectError when the
    project has too few labelled evaluation documents or picks for one."""
    missing = _missing(*_counts(project))
    if missing:
        raise ProjectError("estimating the labels saved against random needs " + " and ".join(missing))
    job, _ = job_request(project=project, kind=Job.Kind.ESTIMATE, reason="requested", requested_by=user)
    return job


def savings_maybe_request(*, project: Project) -> Job | None:
    """After a published training run: queues an estimate when there is enough data and the labelled picks and
    evaluation documents grew by SAVINGS_GROWTH since the last estimate (or there is none). A failed estimate is
    not retried here: the next one waits for a manager (the reconciler retries a lost worker's). Returns the new
    job, or None."""
    picks, evaluation = _counts(project)
    if _missing(picks, evaluation):
        return None
    newest_job = Job.objects.filter(project=project, kind=Job.Kind.ESTIMATE).order_by("-id").first()
    if newest_job is not None and newest_job.status == Job.Status.FAILED:
        return None
    latest = savings_latest(project=project)
    if latest is not None:
        before = latest.picks + latest.evaluation_documents
        if picks + evaluation < (1 + SAVINGS_GROWTH) * before:
            return None
        reason = f"the labelled set grew from {before} to {picks + evaluation}"
    else:
        reason = f"{picks} picks and {evaluation} evaluation documents labelled"
    job, created = job_request(project=project, kind=Job.Kind.ESTIMATE, reason=reason)
    return job if created else None


def savings_run(*, job_id: int) -> None:
    """Replays the picks against random picks on the project's data and stores the estimate with the job's
    success. A cancelled or failed run stores nothing."""

    def work(job: Job, project: Project, beat: Heartbeat) -> SavingsEstimate | None:
        beat(0.0, "gathering the picks and the evaluation documents")
        train_ids, labels, train_rows = training_snapshot(project)
        if not labels:
            raise ProjectError("the project has no labels")
        rows_of = dict(zip(train_ids, train_rows, strict=True))
        pick_ids = [doc_id for doc_id in savings_pick_ids(project=project) if doc_id in rows_of]
        eval_ids, eval_rows = evaluation_labels(project)
        encoder_path = newest_encoder_path(project=project)  # what the next training reads
        encode_missing(project.pk, pick_ids + eval_ids, beat.sub(0.0, 0.1), encoder_path)
        store = ml.embedding_store(project.pk, encoder_path)
        label_ids = [label_id for label_id, _ in labels]
        estimate_beat = beat.sub(0.1, 0.89)
        result = ml.savings_estimate(
            picks_texts=document_texts(pick_ids),
            picks_X=store.get(pick_ids),
            Y_picks=ml.multi_hot([rows_of[doc_id] for doc_id in pick_ids], label_ids),  # (P, L)
            eval_texts=document_texts(eval_ids),
            eval_X=store.get(eval_ids),
            Y_eval=ml.multi_hot(eval_rows, label_ids),  # (E, L)
            labels=[name for _, name in labels],
            config=ml.fast_config(loss=project.loss, seed=0),
            prior=label_prior(project.pk, encode=True, encoder_path=encoder_path),
            strategy=project.strategy,
            seed=project.pk,
            min_evaluation=SAVINGS_MIN_EVALUATION,
            min_picks=SAVINGS_MIN_PICKS,
            orders=SAVINGS_ORDERS,
            n_boot=SAVINGS_BOOTSTRAP,
            on_progress=lambda fraction: estimate_beat(fraction, "training both arms"),
        )
        beat(0.99, "saving the estimate")
        return _publish(job_id=job.pk, attempt=job.attempts, project=project, result=result)

    job_run_publishing(job_id=job_id, what="estimate", work=work)


def _publish(*, job_id: int, attempt: int, project: Project, result: dict) -> SavingsEstimate | None:
    """One transaction: the estimate is stored and the job SUCCEEDED, or nothing changes."""
    with transaction.atomic():
        job = Job.objects.select_for_update(no_key=True).get(pk=job_id)
        if job.status != Job.Status.RUNNING or job.attempts != attempt:
            return None
        estimate = SavingsEstimate.objects.create(
            project=project,
            job=job,
            model_version=serving_version(project=project),
            picks=int(result["picks"]),
            evaluation_documents=int(result["evaluation_documents"]),
            result=result,
        )
        seconds = float(result.get("seconds", 0.0))
        job_succeed(job=job, message=f"{result['headline']} ({seconds:.0f} s)")
    return estimate


@transaction.atomic
def savings_adopt(*, project: Project, user) -> Project:
    """Sets the project's strategy to the one the newest estimate favours (the queue is re-scored with it) and
    records it in the activity feed. Raises ProjectError when there is no estimate or it favours none."""
    Project.objects.select_for_update(no_key=True).get(pk=project.pk)
    latest = savings_latest(project=project)
    if latest is None:
        raise ProjectError("there is no estimate of the labels saved against random yet")
    favoured = latest.result.get("favoured")
    if not favoured:
        raise ProjectError(
            f"the newest estimate favours no strategy ({latest.result.get('headline', 'no verdict').lower()})"
        )
    if favoured == project.strategy:
        return project
    previous = project.strategy
    project = project_update(project=project, strategy=favoured, record=False)  # its own line, with the evidence
    who = f" by {user.get_username()}" if user is not None else ""
    activity_record(
        project=project,
        kind=Activity.Kind.MODEL,
        message=f"Strategy set to {favoured} (was {previous}){who}: the savings estimate of "
        f"{latest.created_at:%Y-%m-%d} favours it.",
        data={"strategy": favoured, "previous": previous, "estimate": latest.pk},
    )
    return project
