"""The model registry: publish a trained version (it serves), promote any version (a rollback, and back), sweep
model and encoder folders no version refers to."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from ..exceptions import ProjectError
from ..models import Activity, EncoderVersion, Job, ModelVersion, Project
from ..validation import whole_number
from .budgets import activity_record
from .jobs import job_request, job_succeed


@transaction.atomic
def version_promote(*, project: Project, number: object, user=None) -> ModelVersion:
    """Makes version `number` the serving one; the queue is re-scored with it (until then `next` serves the random
    fallback, never another version's picks). A later training run publishes a newer version, which serves."""
    parsed = whole_number(number)
    if parsed is None:
        raise ProjectError("the version must be a version number")
    Project.objects.select_for_update(no_key=True).get(pk=project.pk)  # serialises with publishing
    version = ModelVersion.objects.filter(project=project, number=parsed).first()
    if version is None:
        raise ProjectError(f"project {project.pk} has no model version {number}", status=404)
    previous = ModelVersion.objects.filter(project=project, is_serving=True).first()
    if previous is not None and previous.pk == version.pk:
        return version
    ModelVersion.objects.filter(project=project, is_serving=True).update(is_serving=False)
    ModelVersion.objects.filter(pk=version.pk).update(is_serving=True)
    version.refresh_from_db()
    who = f" by {user.get_username()}" if user is not None else ""
    was = f" (was v{previous.number})" if previous is not None else ""
    activity_record(
        project=project,
        kind=Activity.Kind.MODEL,
        message=f"v{version.number} promoted to serving{was}{who}.",
        data={"version": version.number, "previous": previous.number if previous else None},
    )
    job_request(project=project, kind=Job.Kind.SCORE, reason=f"v{version.number} promoted", model_version=version)
    return version


def version_publish(
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
    preannotation_comparison: dict | None = None,
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
            preannotation_comparison=preannotation_comparison or {},
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
        from .webhooks import webhook_emit

        micro_f1 = (evaluation.get("metrics") or {}).get("micro_f1")  # {value, low, high} on the evaluation set
        webhook_emit(
            project=project,
            event="model.published",
            payload={
                "version": number,
                "n_annotations": n_annotations,
                "n_labels": n_labels,
                "job": job_id,
                "evaluation": {"documents": evaluation.get("n_documents", 0), "micro_f1": micro_f1}
                if micro_f1
                else None,
            },
        )
    return version


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
