"""State changes (writes). Views, tasks and commands call these; each validates first and raises ProjectError."""

from .adaptation import adaptation_due, adaptation_maybe_request, adaptation_request, adaptation_run
from .adjudication import adjudication_delete, adjudication_save
from .agreement import agreement_maybe_request, agreement_request, agreement_run
from .annotations import annotation_submit, document_skip, labels_recount, version_decisions_refresh
from .documents import ImportResult, documents_import
from .encoding import encode_run
from .jobs import job_cancel, job_claim, job_dispatch, job_request
from .preannotations import DEFAULT_SOURCE as DEFAULT_PREDICTION_SOURCE
from .preannotations import preannotations_delete, preannotations_store
from .projects import (
    labels_add,
    member_add,
    member_remove,
    project_archive,
    project_create,
    project_delete,
    project_rename,
    project_update,
)
from .queue import NothingToServe, Served, lease_renew, queue_lease_next, queue_release
from .reconcile import jobs_reconcile
from .registry import version_promote
from .savings import savings_adopt, savings_maybe_request, savings_request, savings_run
from .schedules import schedule_delete, schedule_save, training_scheduled
from .scoring import scoring_run
from .taxonomy import label_deprecate, label_merge, label_update, labels_import, project_create_with_taxonomy
from .tokens import token_create, token_revoke
from .training import training_maybe_request, training_request, training_run
from .webhooks import (
    webhook_create,
    webhook_delete,
    webhook_deliver,
    webhook_emit,
    webhook_emit_export,
    webhook_send_test,
    webhook_update,
    webhooks_redispatch,
)

__all__ = [
    "DEFAULT_PREDICTION_SOURCE",
    "ImportResult",
    "NothingToServe",
    "Served",
    "adaptation_due",
    "adaptation_maybe_request",
    "adaptation_request",
    "adaptation_run",
    "adjudication_delete",
    "adjudication_save",
    "agreement_maybe_request",
    "agreement_request",
    "agreement_run",
    "annotation_submit",
    "document_skip",
    "documents_import",
    "encode_run",
    "job_cancel",
    "job_claim",
    "job_dispatch",
    "job_request",
    "jobs_reconcile",
    "label_deprecate",
    "label_merge",
    "label_update",
    "labels_add",
    "labels_import",
    "labels_recount",
    "lease_renew",
    "member_add",
    "member_remove",
    "preannotations_delete",
    "preannotations_store",
    "project_archive",
    "project_create",
    "project_create_with_taxonomy",
    "project_delete",
    "project_rename",
    "project_update",
    "queue_lease_next",
    "queue_release",
    "savings_adopt",
    "savings_maybe_request",
    "savings_request",
    "savings_run",
    "schedule_delete",
    "schedule_save",
    "scoring_run",
    "token_create",
    "token_revoke",
    "training_maybe_request",
    "training_request",
    "training_run",
    "training_scheduled",
    "version_decisions_refresh",
    "version_promote",
    "webhook_create",
    "webhook_delete",
    "webhook_deliver",
    "webhook_emit",
    "webhook_emit_export",
    "webhook_send_test",
    "webhook_update",
    "webhooks_redispatch",
]
