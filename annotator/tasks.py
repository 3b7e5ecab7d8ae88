"""Celery tasks: thin and idempotent. They take ids, import the service lazily and call it.

Idempotency comes from the job row: `job_claim` lets exactly one delivery run a job, so `acks_late` (a task is
redelivered if its worker dies) never produces two model versions.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="annotator.tasks.encode_documents")
def encode_documents(job_id: int) -> None:
    from .services.encoding import encode_run

    encode_run(job_id=job_id)


@shared_task(name="annotator.tasks.train_model")
def train_model(job_id: int) -> None:
    from .services.training import training_run

    training_run(job_id=job_id)


@shared_task(name="annotator.tasks.adapt_encoder")
def adapt_encoder(job_id: int) -> None:
    from .services.adaptation import adaptation_run

    adaptation_run(job_id=job_id)


@shared_task(name="annotator.tasks.estimate_savings")  # default queue: CPU work, no encoder in the common case
def estimate_savings(job_id: int) -> None:
    from .services.savings import savings_run

    savings_run(job_id=job_id)


@shared_task(name="annotator.tasks.compute_agreement")  # default queue: numpy on the answers, seconds
def compute_agreement(job_id: int) -> None:
    from .services.agreement import agreement_run

    agreement_run(job_id=job_id)


@shared_task(name="annotator.tasks.score_pool")
def score_pool(job_id: int) -> None:
    from .services.scoring import scoring_run

    scoring_run(job_id=job_id)


# Periodic, quick and idempotent: acknowledged on receipt (a lost one is simply the next one), so they never hold an
# unacknowledged message, which kombu cannot restore when the broker connection dies (the worker would exit).
@shared_task(name="annotator.tasks.reconcile", acks_late=False)
def reconcile() -> None:
    from .services.reconcile import jobs_reconcile

    jobs_reconcile()


@shared_task(name="annotator.tasks.scheduled_training", acks_late=False)
def scheduled_training(schedule_id: int) -> None:
    from .services.schedules import training_scheduled

    training_scheduled(schedule_id=schedule_id)


# Default queue (CPU, one HTTP request). The service claims each attempt on the delivery row and re-dispatches the
# next one itself after its back-off: a delivered delivery is never sent again, and a second message for an attempt
# already made is put off until the next attempt is due.
@shared_task(name="annotator.tasks.deliver_webhook")
def deliver_webhook(delivery_id: int) -> None:
    from .services.webhooks import webhook_deliver

    webhook_deliver(delivery_id=delivery_id)
