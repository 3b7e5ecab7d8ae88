"""The model registry: which version serves. Promote any version (a rollback, and back)."""

from __future__ import annotations

from django.db import transaction

from ..exceptions import ProjectError
from ..models import Activity, Job, ModelVersion, Project
from .budgets import activity_record
from .jobs import job_request


@transaction.atomic
def version_promote(*, project: Project, number: object, user=None) -> ModelVersion:
    """Makes version `number` the serving one; the queue is re-scored with it (until then `next` serves the random
    fallback, never another version's picks). A later training run publishes a newer version, which serves."""
    if isinstance(number, bool) or not str(number).isdigit():
        raise ProjectError("the version must be a version number")
    Project.objects.select_for_update(no_key=True).get(pk=project.pk)  # serialises with publishing
    version = ModelVersion.objects.filter(project=project, number=int(number)).first()
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
