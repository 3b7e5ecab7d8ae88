"""Browser pages (Django templates). Thin: parse the form, check permission, call one service, render.

The manager's page is one GET view (`project_manage`) and one POST view per thing it changes
(`projects/<id>/manage/<action>/`, made by `manager_action`), each going back to the page with a message.
The annotate page and the live job status talk to the REST API from vendored JavaScript in static/annotator/.
"""

from __future__ import annotations

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
)
from .importing import parse_label_upload, parse_upload
from .models import Job, Membership, Project, TrainingSchedule
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
        project=project, user=request.user, records=records, parse_errors=errors, create_labels=data["create_labels"]
    )
    return f"Imported {result.documents} documents with {result.annotations} seed annotations."


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
    "train": project_train,
    "schedule": project_schedule_save,
    "schedule-delete": project_schedule_delete,
    "cancel": project_job_cancel,
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
