"""Browser pages (Django templates). Thin: parse the form, check permission, call one service, render.

The manager's page is one GET view (`project_manage`) and one POST view per thing it changes
(`projects/<id>/manage/<action>/`, made by `manager_action`), each going back to the page with a message.
The annotate page and the live job status talk to the REST API from vendored JavaScript in static/annotator/.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import selectors, services
from .charts import learning_curve_svg, savings_svg
from .exceptions import NotFound, ProjectError
from .forms import (
    AnnotationSettingsForm,
    BudgetForm,
    DeleteForm,
    ImportForm,
    MemberForm,
    ProjectForm,
    RenameForm,
    RetrainingForm,
    ScheduleForm,
    StrategyForm,
    TrainForm,
    WebhookForm,
)
from .importing import import_notes, parse_label_upload, parse_upload
from .models import Job, Membership, Project, TrainingSchedule
from .selectors.webhooks import webhook_get, webhooks_overview
from .services.adjudication import adjudication_save
from .services.savings import SAVINGS_MIN_EVALUATION, SAVINGS_MIN_PICKS
from .services.schedules import describe as describe_schedule
from .validation import text_problem

PageView = Callable[[HttpRequest, int], HttpResponse]
# What `manager_action` wraps: (request, project, the form's cleaned data) -> the message shown when it is done.
ManagerAction = Callable[[HttpRequest, Project, dict[str, Any]], str]


def _date_param(request: HttpRequest, name: str) -> date | None:
    try:
        return date.fromisoformat(request.GET.get(name, "")) if request.GET.get(name) else None
    except ValueError:
        messages.error(request, f"{name} must be a date as YYYY-MM-DD; ignored.")
        return None


def _project_or_404(request: HttpRequest, project_id: int, *, manager: bool = False) -> tuple[Project, str]:
    try:
        return selectors.project_get_for(project_id=project_id, user=request.user, manager=manager)
    except NotFound as exc:
        raise Http404(exc.message) from exc


@login_required
def project_list(request: HttpRequest) -> HttpResponse:
    projects = list(selectors.projects_for_user(user=request.user))
    roles = dict(Membership.objects.filter(user=request.user).values_list("project_id", "role"))
    rows = [{"project": p, "role": roles.get(p.pk)} for p in projects]
    return render(
        request,
        "annotator/project_list.html",
        {
            "rows": rows,
            "archived": [row for row in rows if row["project"].archived_at],
            "can_create": request.user.has_perm("annotator.add_project"),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("annotator.add_project"):
        return render(request, "annotator/error.html", {"message": "You may not create projects."}, status=403)
    form = ProjectForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        labels = [line.strip() for line in data.pop("labels").splitlines() if line.strip()]
        upload = data.pop("label_file")
        try:
            label_file = parse_label_upload(upload) if upload else None
            project = services.project_create_with_taxonomy(
                user=request.user, labels=labels, label_file=label_file, **data
            )
        except ProjectError as exc:
            form.add_error(None, exc.message)
            for problem in exc.errors[:20]:
                form.add_error(None, problem)
        else:
            messages.success(request, f"Project “{project.name}” created.")
            return redirect("project-manage", project_id=project.pk)
    return render(request, "annotator/project_new.html", {"form": form})


@login_required
@require_GET
def project_manage(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = _project_or_404(request, project_id)
    if role != Membership.Role.MANAGER:
        return redirect("annotate", project_id=project.pk)
    return _manage_page(request, project)


def manager_action(
    form_class: type[forms.Form] | None = None, *, inline: str | None = None, invalid: str | None = None
) -> Callable[[ManagerAction], PageView]:
    """Makes a POST view of the manager's page: signed in, managers only (others go to the annotate page).
    `form_class` is bound to the POST and must validate first: if not, it is shown with its errors as the page's
    form `inline`, else as the message `invalid`, else as one message per field. A ProjectError from the action
    becomes messages on the page; an action that succeeds goes back to the page with the message it returns."""

    def decorate(action: ManagerAction) -> PageView:
        @login_required
        @require_POST
        @wraps(action)
        def view(request: HttpRequest, project_id: int) -> HttpResponse:
            project, role = _project_or_404(request, project_id)
            if role != Membership.Role.MANAGER:
                return redirect("annotate", project_id=project.pk)
            form = form_class(request.POST, request.FILES) if form_class else None
            try:
                if form is None or form.is_valid():
                    messages.success(request, action(request, project, dict(form.cleaned_data) if form else {}))
                    return redirect("project-manage", project_id=project.pk)
                if inline is None:
                    for message in [invalid] if invalid else _field_errors(form):
                        messages.error(request, message)
            except ProjectError as exc:
                for message in [exc.message, *exc.errors[:20]]:
                    messages.error(request, message)
            return _manage_page(request, project, **({inline: form} if inline else {}))

        return view

    return decorate


def _field_errors(form: forms.Form) -> list[str]:
    return [f"{field}: {' '.join(problems)}" for field, problems in form.errors.items()]


@manager_action(ImportForm, inline="import_form")
def project_import(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    records, errors = parse_upload(data["file"])
    result = services.documents_import(
        project=project,
        user=request.user,
        records=records,
        parse_errors=errors,
        create_labels=data["create_labels"],
        prediction_source=data.get("prediction_source") or services.DEFAULT_PREDICTION_SOURCE,
    )
    notes = "".join(f" {note}." for note in import_notes(records))
    stored = f" {result.preannotations} pre-annotation(s) stored." if result.preannotations else ""
    return f"Imported {result.documents} documents with {result.annotations} seed annotations.{stored}{notes}"


@manager_action(MemberForm, inline="member_form")
def project_member_add(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    services.member_add(project=project, user=request.user, **data)
    return f"{data['username']} added."


@manager_action()
def project_member_remove(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    username = request.POST.get("username", "")
    services.member_remove(project=project, username=username, user=request.user)
    return f"{username} removed; their answers stay."


@manager_action(RenameForm)
def project_rename(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    services.project_rename(project=project, name=data["name"], user=request.user)
    return f"Project renamed to “{project.name}”."


@manager_action()
def project_archive(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    archived = request.POST.get("archived", "1") != "0"
    services.project_archive(project=project, user=request.user, archived=archived)
    return "Project archived: nothing is served or trained." if archived else "Project restored."


@login_required
@require_POST
def project_delete(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = _project_or_404(request, project_id)
    if role != Membership.Role.MANAGER:
        return redirect("annotate", project_id=project.pk)
    form = DeleteForm(request.POST)
    try:
        if not form.is_valid():
            raise ProjectError("to delete the project, type its name exactly as confirmation")
        name = project.name
        services.project_delete(project=project, user=request.user, confirm=form.cleaned_data["confirm"])
    except ProjectError as exc:
        messages.error(request, exc.message)
        return redirect("project-manage", project_id=project.pk)
    messages.success(request, f"Project “{name}” deleted.")
    return redirect("project-list")


@manager_action(StrategyForm, invalid="Unknown strategy.")
def project_strategy(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    services.project_update(project=project, user=request.user, strategy=data["strategy"])
    return f"Strategy set to {project.get_strategy_display()}."


@manager_action(BudgetForm)
def project_budget(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    services.project_update(project=project, user=request.user, **data)
    return "Budget saved."


@manager_action(AnnotationSettingsForm)
def project_settings(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    services.project_update(project=project, user=request.user, **data)
    return "Annotation settings saved."


@manager_action(RetrainingForm)
def project_retraining(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    services.project_update(project=project, user=request.user, **data)
    return "Retraining policy saved."


@manager_action()
def project_version_promote(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    version = services.version_promote(project=project, number=request.POST.get("version", ""), user=request.user)
    return f"v{version.number} now serves; the queue is being re-scored with it."


@manager_action()
def project_adapt(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    job = services.adaptation_request(project=project, user=request.user)
    return f"Encoder adaptation queued (job {job.pk}); a full retrain follows it."


@manager_action()
def project_savings_estimate(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    job = services.savings_request(project=project, user=request.user)
    return f"Estimate of the labels saved against random queued (job {job.pk})."


@manager_action()
def project_savings_adopt(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    project = services.savings_adopt(project=project, user=request.user)
    return f"Strategy set to {project.get_strategy_display()}."


@manager_action()
def project_agreement_compute(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    job = services.agreement_request(project=project, requested_by=request.user)
    return f"Inter-annotator agreement is being computed (job {job.pk})."


@manager_action()
def project_train(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    train_form = TrainForm(request.POST)  # a mode that does not validate means the project's default
    mode = train_form.cleaned_data["mode"] if train_form.is_valid() else ""
    job = services.training_request(project=project, user=request.user, mode=mode)
    return f"Training run queued (job {job.pk})."


@manager_action(ScheduleForm)
def project_schedule_save(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    pk = data.pop("schedule")
    existing = _schedule(project, pk) if pk else None
    schedule = services.schedule_save(project=project, data=data, user=request.user, schedule=existing)
    return f"Schedule saved: {describe_schedule(schedule)}."


@manager_action()
def project_schedule_delete(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    services.schedule_delete(schedule=_schedule(project, _int(request.POST.get("schedule"))))
    return "Schedule deleted."


@manager_action()
def project_job_cancel(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    job = Job.objects.filter(project=project, pk=_int(request.POST.get("job"))).first()
    if job is None:
        raise ProjectError("that job does not exist")
    job = services.job_cancel(job=job, user=request.user)
    return f"Job {job.pk} cancelled." if job.status == "CANCELLED" else f"Job {job.pk} is stopping."


@manager_action(WebhookForm)
def project_webhook_add(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    webhook = services.webhook_create(project=project, user=request.user, url=data["url"], events=data["events"])
    return f"Webhook {webhook.pk} added: its secret is under “Secret” in the Webhooks card."


@manager_action()
def project_webhook_delete(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    webhook = webhook_get(project=project, webhook_id=_int(request.POST.get("webhook")))
    services.webhook_delete(webhook=webhook, user=request.user)
    return f"Webhook {webhook.pk} deleted: nothing more is sent to it."


@manager_action()
def project_webhook_test(request: HttpRequest, project: Project, data: dict[str, Any]) -> str:
    webhook = webhook_get(project=project, webhook_id=_int(request.POST.get("webhook")))
    delivery = services.webhook_send_test(webhook=webhook, user=request.user)
    return f"Test delivery {delivery.pk} queued for webhook {webhook.pk}: its outcome shows in the log below."


# The manager page's POST views by name: their URL is projects/<id>/manage/<name>/ (URL name project-manage-<name>).
MANAGER_ACTIONS: dict[str, PageView] = {
    "import": project_import,
    "member": project_member_add,
    "member-remove": project_member_remove,
    "rename": project_rename,
    "archive": project_archive,
    "strategy": project_strategy,
    "budget": project_budget,
    "settings": project_settings,
    "retraining": project_retraining,
    "promote": project_version_promote,
    "adapt": project_adapt,
    "estimate": project_savings_estimate,
    "adopt-strategy": project_savings_adopt,
    "agreement": project_agreement_compute,
    "train": project_train,
    "schedule": project_schedule_save,
    "schedule-delete": project_schedule_delete,
    "cancel": project_job_cancel,
    "webhook": project_webhook_add,
    "webhook-delete": project_webhook_delete,
    "webhook-test": project_webhook_test,
}


def _schedule(project: Project, pk: int) -> TrainingSchedule:
    schedule = selectors.training_schedules(project=project).filter(pk=pk).first()
    if schedule is None:
        raise ProjectError("that schedule does not exist")
    return schedule


def _manage_page(
    request: HttpRequest,
    project: Project,
    *,
    import_form: ImportForm | None = None,
    member_form: MemberForm | None = None,
) -> HttpResponse:
    """The manager's page; `import_form` and `member_form` are given bound when they are shown with their errors."""
    curve = selectors.learning_curve(project=project)
    evaluation = selectors.evaluation_progress(project=project)
    savings = selectors.savings_overview(project=project)
    compare = None
    a, b = request.GET.get("a", ""), request.GET.get("b", "")
    if a and b:
        try:
            compare = selectors.version_compare(project=project, a=a, b=b)
        except ProjectError as exc:
            messages.error(request, exc.message)
    date_from, date_to = _date_param(request, "date_from"), _date_param(request, "date_to")
    label_q = request.GET.get("label_q", "")[:100]
    if problem := text_problem(label_q):
        messages.error(request, f"label_q {problem}; ignored.")
        label_q = ""
    context = {
        "date_from": date_from.isoformat() if date_from else "",
        "date_to": date_to.isoformat() if date_to else "",
        "label_q": label_q,
        "coverage": selectors.label_coverage(
            project=project, query=label_q, date_from=date_from, date_to=date_to, limit=15
        ),
        "annotators": selectors.annotator_stats(project=project, date_from=date_from, date_to=date_to),
        "compare": compare,
        "project": project,
        "stats": selectors.project_stats(project=project),
        "jobs": selectors.recent_jobs(project=project, limit=10),
        "versions": project.model_versions.order_by("-number").defer("stop_predictions", "evaluation_per_label")[
            : None if request.GET.get("versions") == "all" else 20
        ],
        "versions_total": project.model_versions.count(),
        "members": project.memberships.select_related("user").order_by("role", "user__username"),
        "import_form": import_form or ImportForm(),
        "member_form": member_form or MemberForm(),
        "strategy_form": StrategyForm.for_project(project),
        "budget_form": BudgetForm.for_project(project),
        "activity": selectors.activities(project=project, limit=15),
        "curve": curve,
        "curve_svg": learning_curve_svg(curve),
        "evaluation": evaluation,
        "evaluation_budget": selectors.evaluation_budget_check(project=project, evaluation=evaluation),
        "model_card": selectors.model_card(project=project),
        "strategy_in_use": selectors.strategy_in_use(project=project),
        "savings": savings,
        "agreement": selectors.agreement_overview(project=project),
        "adaptation": selectors.adaptation_summary(project=project),
        "savings_svg": savings_svg(savings["estimate"]["result"]) if savings["estimate"] else "",
        "savings_minimum": {"evaluation": SAVINGS_MIN_EVALUATION, "picks": SAVINGS_MIN_PICKS},
        "retraining_form": RetrainingForm.for_project(project),
        "schedules": [
            {"schedule": schedule, "text": describe_schedule(schedule), "form": ScheduleForm.for_schedule(schedule)}
            for schedule in selectors.training_schedules(project=project)
        ],
        "schedule_form": ScheduleForm(auto_id="id_schedule_%s"),
        "train_form": TrainForm(auto_id="id_train_%s"),
        "workers": selectors.worker_health(details=True),
        "settings_form": AnnotationSettingsForm.for_project(project),
        "webhooks": webhooks_overview(project=project),
        "webhook_form": WebhookForm(auto_id="id_webhook_%s"),
    }
    return render(request, "annotator/project_manage.html", context)


def _int(value: object) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


@login_required
def annotate(request: HttpRequest, project_id: int) -> HttpResponse:
    """The expert's page. Up to ALABEL_LABEL_BUTTONS labels in use (deprecated ones left out) come with it, to be
    shown as toggles with their keys; a larger set is searched (15 at a time) and never sent whole."""
    project, role = _project_or_404(request, project_id)
    context = {
        "project": project,
        "role": role,
        "label_buttons": selectors.labels_on_screen(project=project, limit=settings.ALABEL_LABEL_BUTTONS),
        "has_hierarchy": selectors.labels_have_hierarchy(project=project),
    }
    return render(request, "annotator/annotate.html", context)


# Review and adjudication (reviewers and managers) --------------------------------------------------------------


def _reviewer_or_403(request: HttpRequest, project_id: int) -> tuple[Project, str] | HttpResponse:
    """The project and role of a reviewer or manager; a 403 page for an annotator, 404 for anyone else."""
    project, role = _project_or_404(request, project_id)
    if role not in (Membership.Role.MANAGER, Membership.Role.REVIEWER):
        message = "Only reviewers and managers of this project may browse and review answers."
        return render(request, "annotator/error.html", {"message": message}, status=403)
    return project, role


def _flag(request: HttpRequest, name: str) -> bool | None:
    raw = request.GET.get(name, "").lower()
    return None if raw not in {"1", "0", "true", "false", "yes", "no"} else raw in {"1", "true", "yes"}


@login_required
@require_GET
def browse(request: HttpRequest, project_id: int) -> HttpResponse:
    """Documents with their answers side by side, filtered, paged by document id (keyset `after`)."""
    found = _reviewer_or_403(request, project_id)
    if isinstance(found, HttpResponse):
        return found
    project, role = found
    manager = role == Membership.Role.MANAGER
    form: dict[str, Any] = {name: request.GET.get(name, "")[:255] for name in ("annotator", "label")}
    agreement_raw = request.GET.get("agreement_below", "")
    page: dict[str, Any] = {"documents": [], "next": None}
    try:
        agreement = float(agreement_raw) if agreement_raw else None
        if agreement is not None and not 0 <= agreement <= 1:
            raise ValueError
    except ValueError:
        messages.error(request, "agreement_below must be a number from 0 to 1; ignored.")
        agreement = None
    date_from, date_to = _date_param(request, "date_from"), _date_param(request, "date_to")
    try:
        for name in ("annotator", "label"):
            if problem := text_problem(form[name]):
                raise ProjectError(f"{name} {problem}")
        if date_from and date_to and date_from > date_to:
            raise ProjectError("date_from must not be after date_to")
        filters = selectors.BrowseFilters(
            annotator=form["annotator"] or None,
            label=form["label"] or None,
            date_from=date_from,
            date_to=date_to,
            evaluation=_flag(request, "evaluation") if manager else None,
            agreement_below=agreement,
            model_disagreement=_flag(request, "model_disagreement"),
            gold=_flag(request, "gold"),
        )
        after = _int(request.GET.get("after")) or None
        page = selectors.documents_browse(project=project, filters=filters, after=after, limit=25)
    except ProjectError as exc:
        messages.error(request, exc.message)
    query = request.GET.copy()
    query.pop("after", None)
    context = {
        "project": project,
        "manager": manager,
        "page": page,
        "form": {
            **form,
            "date_from": date_from.isoformat() if date_from else "",
            "date_to": date_to.isoformat() if date_to else "",
            "agreement_below": "" if agreement is None else agreement_raw,
            "model_disagreement": request.GET.get("model_disagreement", ""),
            "gold": request.GET.get("gold", ""),
            "evaluation": request.GET.get("evaluation", ""),
        },
        "query": query.urlencode(),
        "labels": list(project.labels.order_by("name").values_list("name", flat=True)[:2000]),
    }
    return render(request, "annotator/browse.html", context)


@login_required
@require_GET
def review_next(request: HttpRequest, project_id: int) -> HttpResponse:
    """The next document of the review queue (after `after`, the one just skipped), or the empty-queue state."""
    found = _reviewer_or_403(request, project_id)
    if isinstance(found, HttpResponse):
        return found
    project, _ = found
    document_id = selectors.review_next(project=project, after=_int(request.GET.get("after")) or None)
    if document_id is not None:
        return redirect("review-document", project_id=project.pk, document_id=document_id)
    return render(request, "annotator/review.html", {"project": project, "item": None})


@login_required
@require_http_methods(["GET", "POST"])
def review_document(request: HttpRequest, project_id: int, document_id: int) -> HttpResponse:
    """One document's answers side by side and the gold form; a saved decision goes on to the next disagreement."""
    found = _reviewer_or_403(request, project_id)
    if isinstance(found, HttpResponse):
        return found
    project, _ = found
    try:
        item = selectors.review_item(project=project, document_id=document_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    if request.method == "POST":
        labels = request.POST.getlist("labels")
        labels += [line.strip() for line in request.POST.get("labels_extra", "").splitlines() if line.strip()]
        try:
            adjudication_save(
                project=project,
                reviewer=request.user,
                document_id=document_id,
                labels=labels,
                note=request.POST.get("note", ""),
            )
        except ProjectError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Gold answer of {item['external_id']} saved.")
            return redirect("review", project_id=project.pk)
    queued = selectors.review_queue(project=project, limit=1)["remaining"]
    return render(request, "annotator/review.html", {"project": project, "item": item, "remaining": queued})


@login_required
@require_GET
def audit(request: HttpRequest, project_id: int) -> HttpResponse:
    """The last 50 rows of the project's audit log (managers); the API pages through all of them."""
    project, _ = _project_or_404(request, project_id)
    try:
        project, _ = selectors.project_get_for(project_id=project_id, user=request.user, manager=True)
    except ProjectError as exc:
        return render(request, "annotator/error.html", {"message": exc.message}, status=403)
    entries = selectors.audit_entries(project=project, limit=50)["entries"]
    for entry in entries:  # shown as JSON text (escaped by the template)
        for side in ("before", "after"):
            entry[f"{side}_text"] = "" if entry[side] is None else json.dumps(entry[side], ensure_ascii=False)
    return render(request, "annotator/audit.html", {"project": project, "entries": entries})


FAVICON = Path(__file__).resolve().parent / "static" / "annotator" / "favicon.ico"


@require_GET
@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for whatever the page links to."""
    return HttpResponse(FAVICON.read_bytes(), content_type="image/x-icon")


def healthz(request: HttpRequest) -> HttpResponse:
    """Health for load balancers, compose and operators: database and broker reachable (else 503), and the Celery
    workers seen alive per queue from their heartbeats (a queue without a live worker makes the status "degraded",
    still 200: the web serves and saves answers without workers). Host names only for staff."""
    from celery import current_app
    from django.db import connection
    from django.db.utils import DatabaseError
    from django.http import JsonResponse
    from kombu.exceptions import OperationalError as BrokerError

    checks: dict[str, object] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except DatabaseError:
        checks["database"] = "unreachable"
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except (OSError, ConnectionError, BrokerError) as exc:
        checks["broker"] = f"unreachable ({type(exc).__name__})"
    healthy = checks["database"] == "ok" and checks["broker"] == "ok"
    if checks["database"] == "ok":
        workers = selectors.worker_health(details=bool(request.user.is_authenticated and request.user.is_staff))
        checks["workers"] = workers
        missing = [queue for queue, state in workers["queues"].items() if state["alive"] == 0]
        checks["status"] = "ok" if healthy and not missing else ("degraded" if healthy else "down")
    else:
        checks["status"] = "down"
    return JsonResponse(checks, status=200 if healthy else 503)
