"""Projects, labels and memberships."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from ..exceptions import ProjectError
from ..importing import LABEL_SEPARATOR, MAX_LABELS
from ..models import (
    Activity,
    AdjudicationLabel,
    Annotation,
    AnnotationLabel,
    AuditEntry,
    Job,
    Label,
    Membership,
    Project,
    QueueItem,
    SuggestionDecision,
    TrainMode,
    strategy_choices,
)
from ..text import fold
from ..validation import INT_MAX, text_problem
from .audit import audit_record

logger = logging.getLogger(__name__)
MAX_LABEL_LENGTH = 255

PROJECT_SETTINGS = (
    "guidelines",
    "label_budget",
    "budget_mode",
    "cost_per_document",
    "currency",
    "budget_alerts",
    "retrain_every",
    "retrain_mode",
    "full_retrain_growth",
    "replay_size",
    "timezone",
    "strategy",
    "loss",
    "model_tier",
    "decision_threshold",
    "pretick_floor",
    "preticks_enabled",
    "label_prior",
    "adapt_auto",
    "suggestions_k",
    "lease_seconds",
    "queue_size",
    "eval_size",
    "eval_fraction",
    "eval_share",
    "stop_min_gain",
    "overlap_share",
    "overlap_k",
    "overlap_evaluation",
)
OVERLAP_SETTINGS = ("overlap_share", "overlap_k", "overlap_evaluation")


def _clean_settings(values: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(values) - set(PROJECT_SETTINGS))
    if unknown:
        raise ProjectError(f"unknown project setting(s): {', '.join(unknown)}")
    cleaned = dict(values)
    problems: list[str] = []

    def positive_int(name: str, minimum: int = 1, maximum: int = INT_MAX, allow_none: bool = False) -> None:
        if name not in cleaned:
            return
        value = cleaned[name]
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            problems.append(f"{name} must be an integer >= {minimum}")
        elif value > maximum:
            problems.append(f"{name} must be at most {maximum}")

    positive_int("label_budget", allow_none=True)
    positive_int("retrain_every")
    positive_int("suggestions_k", maximum=100)
    positive_int("lease_seconds", minimum=10)
    positive_int("queue_size", maximum=100_000)
    if "decision_threshold" in cleaned and cleaned["decision_threshold"] is not None:
        value = cleaned["decision_threshold"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < float(value) < 1:
            problems.append(
                "decision_threshold must be empty (the model's tuned threshold) or strictly between 0 and 1"
            )
    if "pretick_floor" in cleaned:
        value = cleaned["pretick_floor"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < float(value) < 1:
            problems.append(
                "pretick_floor must be a share strictly between 0 and 1 (0.7: pre-tick where ticks were right 70 % "
                "of the time)"
            )
    if "preticks_enabled" in cleaned and not isinstance(cleaned["preticks_enabled"], bool):
        problems.append("preticks_enabled must be true or false")
    if "label_prior" in cleaned and not isinstance(cleaned["label_prior"], bool):
        problems.append("label_prior must be true or false")
    if "adapt_auto" in cleaned and not isinstance(cleaned["adapt_auto"], bool):
        problems.append("adapt_auto must be true or false")
    valid_strategies = [name for name, _ in strategy_choices()]
    if "strategy" in cleaned and cleaned["strategy"] not in valid_strategies:
        problems.append(f"strategy must be one of {', '.join(valid_strategies)}")
    if "loss" in cleaned and cleaned["loss"] not in Project.Loss.values:
        problems.append(f"loss must be one of {', '.join(Project.Loss.values)}")
    if "model_tier" in cleaned and cleaned["model_tier"] not in Project.Tier.values:
        problems.append(f"model_tier must be one of {', '.join(Project.Tier.values)}")
    if "budget_mode" in cleaned and cleaned["budget_mode"] not in Project.BudgetMode.values:
        problems.append(f"budget_mode must be one of {', '.join(Project.BudgetMode.values)}")
    if "cost_per_document" in cleaned and cleaned["cost_per_document"] is not None:
        try:
            cost = Decimal(str(cleaned["cost_per_document"]))
        except (InvalidOperation, ValueError):
            cost = Decimal(-1)
        if isinstance(cleaned["cost_per_document"], bool) or not cost.is_finite() or cost < 0 or cost >= 10**8:
            problems.append("cost_per_document must be empty or a number >= 0")
        else:
            cleaned["cost_per_document"] = cost.quantize(Decimal("0.0001"))
    if "currency" in cleaned and (
        not isinstance(cleaned["currency"], str)
        or not (cleaned["currency"] == "" or (len(cleaned["currency"]) == 3 and cleaned["currency"].isalpha()))
    ):
        problems.append("currency must be a three-letter code such as EUR, or empty")
    elif "currency" in cleaned:
        cleaned["currency"] = cleaned["currency"].upper()
    if "budget_alerts" in cleaned:
        alerts = cleaned["budget_alerts"]
        if not isinstance(alerts, list | tuple) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 1000 for p in alerts
        ):
            problems.append("budget_alerts must be a list of percentages between 1 and 1000")
        else:
            cleaned["budget_alerts"] = sorted(set(alerts))
    positive_int("eval_size", minimum=0, maximum=1_000_000)
    for name, low_open in (("eval_fraction", True), ("eval_share", False)):
        if name not in cleaned or (cleaned[name] is None and name == "eval_fraction"):
            continue
        value = cleaned[name]
        ok = not isinstance(value, bool) and isinstance(value, int | float)
        ok = ok and (0 < float(value) < 1 if low_open else 0 <= float(value) <= 1)
        if not ok:
            problems.append(
                "eval_fraction must be empty (use eval_size) or strictly between 0 and 1"
                if low_open
                else "eval_share must be between 0 and 1"
            )
    if "stop_min_gain" in cleaned and (
        isinstance(cleaned["stop_min_gain"], bool)
        or not isinstance(cleaned["stop_min_gain"], int | float)
        or not 0 <= float(cleaned["stop_min_gain"]) <= 1
    ):
        problems.append("stop_min_gain must be a number between 0 and 1 (micro-F1 per 100 labels)")
    if "overlap_share" in cleaned and (
        isinstance(cleaned["overlap_share"], bool)
        or not isinstance(cleaned["overlap_share"], int | float)
        or not 0 <= float(cleaned["overlap_share"]) <= 1
    ):
        problems.append("overlap_share must be a share between 0 and 1 (0.1: every tenth document)")
    positive_int("overlap_k", minimum=2, maximum=10)
    if "overlap_evaluation" in cleaned and not isinstance(cleaned["overlap_evaluation"], bool):
        problems.append("overlap_evaluation must be true or false")
    if "guidelines" in cleaned and not isinstance(cleaned["guidelines"], str):
        problems.append("guidelines must be text")
    if "retrain_mode" in cleaned and cleaned["retrain_mode"] not in TrainMode.values:
        problems.append(f"retrain_mode must be one of {', '.join(TrainMode.values)}")
    if "full_retrain_growth" in cleaned and (
        isinstance(cleaned["full_retrain_growth"], bool)
        or not isinstance(cleaned["full_retrain_growth"], int | float)
        or not 0 < float(cleaned["full_retrain_growth"]) <= 100
    ):
        problems.append("full_retrain_growth must be a number above 0 (0.5: after the labelled set grew by half)")
    positive_int("replay_size", minimum=0, maximum=10_000_000)
    if "timezone" in cleaned:
        from .schedules import timezone_validate

        try:
            cleaned["timezone"] = timezone_validate(str(cleaned["timezone"]))
        except ProjectError as exc:
            problems.append(exc.message)
    if problems:
        raise ProjectError("invalid project settings: " + "; ".join(problems), errors=problems)
    return cleaned


def _clean_labels(labels: Iterable[Any]) -> list[tuple[str, str]]:
    """Accepts names or {"name", "description"} objects; returns (name, description) pairs, validated. (Alternative
    names, external ids and parents come with a label file: `services.taxonomy.labels_import`.)"""
    cleaned: list[tuple[str, str]] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(labels, start=1):
        if isinstance(item, str):
            name, description = item, ""
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            name, description = item["name"], item.get("description") or ""
            if not isinstance(description, str):
                problems.append(f"label {index}: description must be text")
                continue
        else:
            problems.append(f'label {index}: expected a name or an object with "name"')
            continue
        name = name.strip()
        name_problem, description_problem = text_problem(name), text_problem(description)
        if name_problem:
            problems.append(f"label {index}: the name {name_problem}")
        elif description_problem:
            problems.append(f"label {index}: the description {description_problem}")
        elif not name:
            problems.append(f"label {index}: the name is empty")
        elif len(name) > MAX_LABEL_LENGTH:
            problems.append(f"label {index}: the name is longer than {MAX_LABEL_LENGTH} characters")
        elif LABEL_SEPARATOR in name:
            problems.append(f"label {index} ({name!r}): names cannot contain {LABEL_SEPARATOR!r}")
        elif name in seen:
            problems.append(f"label {index} ({name!r}): listed twice")
        else:
            seen.add(name)
            cleaned.append((name, description.strip()))
    if len(cleaned) > MAX_LABELS:
        problems.append(f"at most {MAX_LABELS} labels per project")
    if problems:
        raise ProjectError(f"invalid labels: {len(problems)} problem(s)", errors=problems[:200])
    return cleaned


def _clean_name(name: object) -> str:
    """A project's name, stripped: 1-200 characters of text."""
    cleaned = name.strip() if isinstance(name, str) else ""
    if not cleaned:
        raise ProjectError("a project needs a name")
    if len(cleaned) > 200:
        raise ProjectError("the project name is longer than 200 characters")
    problem = text_problem(cleaned)
    if problem:
        raise ProjectError(f"the project name {problem}")
    return cleaned


@transaction.atomic
def project_create(*, user, name: str, labels: Sequence[Any] = (), **project_settings: Any) -> Project:
    """Creates a project with its labels (names or {"name", "description"} objects); the creator becomes its manager.
    With a taxonomy (alternative names, external ids, parents): `taxonomy.project_create_with_taxonomy`."""
    if not user.has_perm("annotator.add_project"):
        raise ProjectError("you may not create projects; ask an administrator for the permission", status=403)
    name = _clean_name(name)
    values = _clean_settings(project_settings)
    cleaned_labels = _clean_labels(labels)
    project = Project.objects.create(name=name, created_by=user, **values)
    Membership.objects.create(project=project, user=user, role=Membership.Role.MANAGER)
    _labels_insert(project, cleaned_labels)
    return project


@transaction.atomic
def project_update(*, project: Project, user=None, record: bool = True, **project_settings: Any) -> Project:
    """Change settings; a new strategy (or queue size, or more suggestions than the queue keeps) re-scores the queue
    with the serving model; a new model tier queues a full retrain once a model exists. Each setting that changed is
    a line in the activity feed (before and after), naming `user` (unless `record` is off: a caller that writes its
    own line)."""
    from .jobs import job_request
    from .scoring import KEPT_SHORTLIST

    values = _clean_settings(project_settings)
    rescore = any(key in values and values[key] != getattr(project, key) for key in ("strategy", "queue_size"))
    # The queue keeps the model's KEPT_SHORTLIST best labels per document; showing more needs a re-score.
    rescore |= values.get("suggestions_k", 0) > max(project.suggestions_k, KEPT_SHORTLIST)
    budget_changed = "label_budget" in values and values["label_budget"] != project.label_budget
    prior_changed = "label_prior" in values and values["label_prior"] != project.label_prior
    tier_changed = "model_tier" in values and values["model_tier"] != project.model_tier
    changed = {key: [getattr(project, key), value] for key, value in values.items() if getattr(project, key) != value}
    for key, value in values.items():
        setattr(project, key, value)
    project.save()
    if changed and record:
        shown = ", ".join(f"{key} {_shown(before)} -> {_shown(after)}" for key, (before, after) in changed.items())
        _admin_record(project, user, f"settings changed: {shown}"[:250], changed=_jsonable(changed))
    if changed:
        audit_record(
            project=project,
            user=user,
            target=AuditEntry.Target.SETTINGS,
            action=AuditEntry.Action.UPDATE,
            object_ref=", ".join(changed),
            before={key: pair[0] for key, pair in changed.items()},
            after={key: pair[1] for key, pair in changed.items()},
        )
    if any(key in values for key in ("eval_size", "eval_fraction")):
        from .evaluation import evaluation_set_sync

        evaluation_set_sync(project=project)  # applies the overlap settings too
    elif any(key in changed for key in OVERLAP_SETTINGS):
        from .overlap import overlap_apply

        overlap_apply(project=project)
    if budget_changed or "budget_alerts" in values:
        from .budgets import budget_alerts_check, budget_alerts_reset

        budget_alerts_reset(project=project)
        budget_alerts_check(project=project)
    if "timezone" in values:
        from .schedules import schedules_retime

        schedules_retime(project=project)
    if rescore and project.model_versions.filter(is_serving=True).exists():
        job_request(project=project, kind=Job.Kind.SCORE, reason="the strategy, queue size or suggestions changed")
    if tier_changed and project.model_versions.exists():  # the serving model is of the other tier: replace it
        job_request(
            project=project,
            kind=Job.Kind.TRAIN,
            reason=f"the model tier was switched to {project.model_tier}",
            mode="full",
        )
    if prior_changed:  # before the first model the cold-start suggestions change; after it, the next full retrain
        if project.model_versions.exists():
            if project.model_tier == Project.Tier.FAST:  # the full tier blends no prior
                job_request(
                    project=project, kind=Job.Kind.TRAIN, reason="the label-name prior was switched", mode="full"
                )
        elif project.documents.exists():
            job_request(project=project, kind=Job.Kind.SCORE, reason="the label-name prior was switched")
    return project


def _labels_insert(project: Project, labels: list[tuple[str, str]]) -> list[Label]:
    return Label.objects.bulk_create(
        [
            Label(project=project, name=name, search_key=fold(name)[:255], description=description)
            for name, description in labels
        ],
        batch_size=2000,
    )


@transaction.atomic
def labels_add(*, project: Project, labels: Sequence[Any], user=None) -> list[Label]:
    """Adds labels; a name the project already has is an error (nothing is added). One audit row names them."""
    cleaned = _clean_labels(labels)
    names = [name for name, _ in cleaned]
    existing: set[str] = set()
    for start in range(0, len(names), 2000):
        existing.update(
            Label.objects.filter(project=project, name__in=names[start : start + 2000]).values_list("name", flat=True)
        )
    if existing:
        shown = ", ".join(sorted(existing)[:20])
        raise ProjectError(f"{len(existing)} label(s) already exist in this project: {shown}")
    created = _labels_insert(project, cleaned)
    audit_record(
        project=project,
        user=user,
        target=AuditEntry.Target.LABEL,
        action=AuditEntry.Action.CREATE,
        object_ref=f"{len(created)} label(s)",
        after={"count": len(created), "labels": [label.name for label in created[:100]]},
    )
    if project.documents.exists():  # the encode run embeds the new names (their prior), then re-scores
        from .jobs import job_request

        job_request(project=project, kind=Job.Kind.ENCODE, reason=f"{len(created)} label(s) added")
    return created


_UNCHANGED: Any = object()


def _shown(value: Any) -> str:
    text = "none" if value is None or value == "" else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _jsonable(changed: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {
        key: [v if isinstance(v, (int, float, bool, str, list, type(None))) else str(v) for v in pair]
        for key, pair in changed.items()
    }


def _admin_record(project: Project, user, message: str, **data: Any) -> None:
    """An administration line in the project's activity feed, naming who did it."""
    from .budgets import activity_record_by

    activity_record_by(project=project, kind=Activity.Kind.ADMIN, user=user, message=message, data=data)


@transaction.atomic
def member_add(
    *, project: Project, username: str, role: str | None = None, quota: Any = _UNCHANGED, user=None
) -> Membership:
    """Adds a user to the project with a role (default: annotator), or changes the role (when given) and the quota
    (when given) of a member. `quota`: documents the member may label in the project (None: no limit). `user`: who
    does it, named in the activity feed."""
    if role is not None and role not in Membership.Role.values:
        raise ProjectError(f"role must be one of {', '.join(Membership.Role.values)}")
    if (
        quota is not _UNCHANGED
        and quota is not None
        and (isinstance(quota, bool) or not isinstance(quota, int) or not 1 <= quota <= INT_MAX)
    ):
        raise ProjectError(f"quota must be empty (no limit) or an integer from 1 to {INT_MAX}")
    member = get_user_model().objects.filter(username=username).first()
    if member is None:
        raise ProjectError(f"there is no user {username!r}")
    membership, created = Membership.objects.get_or_create(
        project=project, user=member, defaults={"role": role or Membership.Role.ANNOTATOR}
    )
    before_state = None if created else {"role": membership.role, "quota": membership.quota}
    if created:
        _admin_record(project, user, f"{username} added as {membership.role}", member=username, role=membership.role)
    elif role is not None and membership.role != role:
        if membership.role == Membership.Role.MANAGER and role != Membership.Role.MANAGER:
            _keep_a_manager(project)
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        _admin_record(project, user, f"{username} is now {role} (was {before})", member=username, role=[before, role])
    if quota is not _UNCHANGED and membership.quota != quota:
        before_quota = membership.quota
        membership.quota = quota
        membership.save(update_fields=["quota"])
        _admin_record(
            project,
            user,
            f"quota of {username} set to {quota if quota is not None else 'no limit'}",
            member=username,
            quota=[before_quota, quota],
        )
    after_state = {"role": membership.role, "quota": membership.quota}
    audit_record(
        project=project,
        user=user,
        target=AuditEntry.Target.MEMBER,
        action=AuditEntry.Action.CREATE if created else AuditEntry.Action.UPDATE,
        object_ref=username,
        before=before_state,
        after=after_state,
    )
    return membership


def _keep_a_manager(project: Project) -> None:
    """Refuses a change that would leave the project without a manager (the rows are locked while counting)."""
    managers = list(
        Membership.objects.select_for_update()
        .filter(project=project, role=Membership.Role.MANAGER)
        .values_list("id", flat=True)
    )
    if len(managers) <= 1:
        raise ProjectError("a project must keep at least one manager", status=409)


@transaction.atomic
def member_remove(*, project: Project, username: str, user=None) -> None:
    """Removes a member: they no longer see the project; their answers stay, attributed to them; documents they hold
    are released at once. The last manager cannot be removed (409)."""
    membership = Membership.objects.select_for_update().filter(project=project, user__username=username).first()
    if membership is None:
        raise ProjectError(f"{username!r} is not a member of this project", status=404)
    if membership.role == Membership.Role.MANAGER:
        _keep_a_manager(project)
    released = QueueItem.objects.filter(project=project, leased_to=membership.user_id).update(
        leased_to=None, lease_expires_at=None
    )
    answers = Annotation.objects.filter(project=project, annotator=membership.user_id).count()
    audit_record(
        project=project,
        user=user,
        target=AuditEntry.Target.MEMBER,
        action=AuditEntry.Action.DELETE,
        object_ref=username,
        before={"role": membership.role, "quota": membership.quota},
        after={"answers_kept": answers},
    )
    membership.delete()
    _admin_record(
        project,
        user,
        f"{username} removed ({answers} answer(s) kept"
        + (f", {released} document(s) released" if released else "")
        + ")",
        member=username,
        answers=answers,
    )


@transaction.atomic
def project_rename(*, project: Project, name: object, user=None) -> Project:
    """Renames the project (the rules of `_clean_name`)."""
    cleaned = _clean_name(name)
    before = project.name
    if cleaned != before:
        Project.objects.filter(pk=project.pk).update(name=cleaned)
        project.name = cleaned
        _admin_record(project, user, f"project renamed from {before!r} to {cleaned!r}", name=[before, cleaned])
        audit_record(
            project=project,
            user=user,
            target=AuditEntry.Target.PROJECT,
            action=AuditEntry.Action.UPDATE,
            object_ref="name",
            before={"name": before},
            after={"name": cleaned},
        )
    return project


@transaction.atomic
def project_archive(*, project: Project, user=None, archived: bool = True) -> Project:
    """Archives the project (nothing is served or trained; answers, models and exports stay) or restores it."""
    locked = Project.objects.select_for_update().get(pk=project.pk)
    was_archived = locked.archived_at is not None
    if archived and locked.archived_at is None:
        locked.archived_at = timezone.now()
        _admin_record(locked, user, "project archived")
    elif not archived and locked.archived_at is not None:
        locked.archived_at = None
        _admin_record(locked, user, "project restored from the archive")
    Project.objects.filter(pk=locked.pk).update(archived_at=locked.archived_at)
    audit_record(
        project=project,
        user=user,
        target=AuditEntry.Target.PROJECT,
        action=AuditEntry.Action.UPDATE,
        object_ref="archived",
        before={"archived": was_archived},
        after={"archived": locked.archived_at is not None},
    )
    project.archived_at = locked.archived_at
    return project


def project_delete(*, project: Project, user, confirm: object) -> None:
    """Deletes the project with everything in it (documents, answers, labels, models, jobs) and its files.

    Managers only; `confirm` must repeat the project's name exactly. The files (models, embeddings, the label index)
    go after the rows are gone; the deletion is logged on the server (the project's feed goes with it)."""
    if Membership.objects.filter(project=project, user=user, role=Membership.Role.MANAGER).count() == 0:
        raise ProjectError("only a manager of the project may delete it", status=403)
    if not isinstance(confirm, str) or confirm != project.name:
        raise ProjectError("to delete the project, type its name exactly as confirmation")
    from .. import ml

    folder = ml.project_dir(project.pk)
    project_id, name = project.pk, project.name
    with transaction.atomic():
        # Answers' label links and suggestion decisions protect their labels (a label is never deleted under an
        # answer by accident): here everything goes, so they go first.
        AnnotationLabel.objects.filter(annotation__project_id=project_id).delete()
        AdjudicationLabel.objects.filter(adjudication__project_id=project_id).delete()
        SuggestionDecision.objects.filter(annotation__project_id=project_id).delete()
        Project.objects.filter(pk=project_id).delete()
        transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))
    logger.warning("project %s (%r) deleted by %s", project_id, name, getattr(user, "username", "?"))
