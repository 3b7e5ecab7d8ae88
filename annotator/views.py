"""Browser pages (Django templates). Thin: parse the form, check permission, call one service, render.

The annotate page and the live job status talk to the REST API from vendored JavaScript in static/annotator/.
"""

from __future__ import annotations

from datetime import date

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import selectors, services
from .charts import learning_curve_svg, savings_svg
from .exceptions import NotFound, PermissionDenied, ProjectError
from .importing import parse_file
from .models import Job, Membership, Project, TrainingSchedule, TrainMode, strategy_choices
from .services.savings import SAVINGS_MIN_EVALUATION, SAVINGS_MIN_PICKS
from .services.schedules import describe as describe_schedule


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200)
    labels = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), help_text="One label per line.", required=False)
    guidelines = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    label_budget = forms.IntegerField(min_value=1, required=False, help_text="Documents; empty for no limit.")
    retrain_every = forms.IntegerField(min_value=1, initial=20)
    strategy = forms.ChoiceField(choices=strategy_choices, initial="default")


class StrategyForm(forms.Form):
    strategy = forms.ChoiceField(choices=strategy_choices)


class AnnotationSettingsForm(forms.Form):
    """What the experts see: guidelines, how many suggestions, when they are pre-ticked, how long a lease holds."""

    guidelines = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    suggestions_k = forms.IntegerField(min_value=1, max_value=100, label="Suggestions shown")
    label_prior = forms.BooleanField(
        required=False,
        label="Suggest from label names",
        help_text="Zero-shot suggestions from the labels' names and descriptions before the first model, blended "
        "into every model for labels with few examples. Switch off when labels are codes.",
    )
    preticks_enabled = forms.BooleanField(required=False, label="Pre-tick suggestions")
    pretick_floor = forms.FloatField(
        min_value=0.01,
        max_value=0.99,
        label="Pre-tick only where ticks are right at least",
        help_text="A share: 0.7 = pre-tick suggestions scoring where at least 70 % of pre-ticks are right, shown "
        "with 95 % confidence (checked on labelled documents the model did not train on, and the experts' decisions).",
    )
    decision_threshold = forms.FloatField(
        min_value=0.001,
        max_value=0.999,
        required=False,
        label="Or pre-tick at score",
        help_text="Empty: by the share above. Set: every suggestion scoring at least this is pre-ticked (also when "
        "pre-ticks are off).",
    )
    lease_seconds = forms.IntegerField(min_value=10, label="Lease (seconds)")
    eval_size = forms.IntegerField(
        min_value=0, label="Evaluation set (documents)", help_text="At most a tenth of the documents; 0: none."
    )
    eval_fraction = forms.FloatField(
        min_value=0.001, max_value=0.999, required=False, label="or a share of the documents", help_text="e.g. 0.05"
    )
    eval_share = forms.FloatField(
        min_value=0, max_value=1, label="Evaluation documents among those served", help_text="0.2: every fifth."
    )
    stop_min_gain = forms.FloatField(
        min_value=0, max_value=1, label="Advise stopping below (micro-F1 per 100 labels)", help_text="e.g. 0.005"
    )


class RetrainingForm(forms.Form):
    """When and how the model is retrained as labels arrive."""

    retrain_every = forms.IntegerField(min_value=1, label="Train after every N new labels")
    retrain_mode = forms.ChoiceField(choices=TrainMode.choices, label="Those runs do")
    full_retrain_growth = forms.FloatField(
        min_value=0.01,
        max_value=100,
        label="Automatic: full retrain once the labelled set grew by",
        help_text="A share: 0.5 = by half since the last full retrain; incremental updates in between.",
    )
    replay_size = forms.IntegerField(
        min_value=0, label="Incremental updates replay", help_text="Earlier labelled documents, at most."
    )
    timezone = forms.CharField(max_length=64, label="Time zone of schedules", help_text="e.g. Europe/Berlin")
    adapt_auto = forms.BooleanField(
        required=False,
        label="Adapt the encoder on its own",
        help_text="First at 100 labelled documents, then whenever they have doubled (without a GPU up to 500); an "
        "adapted encoder is kept only where it beats the one in use on labelled documents it was not adapted on.",
    )


class ScheduleForm(forms.Form):
    """A periodic training run; validated again (and the beat entry written) by services.schedule_save."""

    schedule = forms.IntegerField(required=False, widget=forms.HiddenInput)
    mode = forms.ChoiceField(choices=TrainMode.choices, initial=TrainMode.FULL, label="Run")
    kind = forms.ChoiceField(choices=TrainingSchedule.Kind.choices, label="When")
    every = forms.IntegerField(min_value=1, required=False)
    unit = forms.ChoiceField(choices=TrainingSchedule.Unit.choices, required=False, initial="hours")
    at = forms.TimeField(required=False, label="At (HH:MM)", widget=forms.TimeInput(attrs={"type": "time"}))
    cron = forms.CharField(max_length=100, required=False, label="Cron", help_text='e.g. "0 2 * * 1-5"')
    enabled = forms.BooleanField(required=False, initial=True)
    skip_unchanged = forms.BooleanField(
        required=False, initial=True, label="Skip when nothing new was labelled since the last run of this kind"
    )


class TrainForm(forms.Form):
    mode = forms.ChoiceField(choices=[("", "Project default"), *TrainMode.choices], required=False)


class ImportForm(forms.Form):
    file = forms.FileField(help_text='JSONL lines {"id", "text", "labels"?} or CSV id,text[,labels].')
    create_labels = forms.BooleanField(required=False, help_text="Add labels the project does not have yet.")


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Membership.Role.choices)
    quota = forms.IntegerField(
        min_value=1, required=False, help_text="Documents this member may label; empty: no limit."
    )


class BudgetForm(forms.Form):
    label_budget = forms.IntegerField(min_value=1, required=False, help_text="Documents; empty for no limit.")
    budget_mode = forms.ChoiceField(choices=Project.BudgetMode.choices, label="When it is spent")
    cost_per_document = forms.DecimalField(min_value=0, max_digits=12, decimal_places=4, required=False)
    currency = forms.CharField(max_length=3, required=False, help_text="e.g. EUR")
    budget_alerts = forms.CharField(
        max_length=100, label="Notify at (% of the budget)", help_text="Comma-separated, e.g. 50, 80, 100."
    )

    def clean_budget_alerts(self) -> list[int]:
        raw = [part.strip().rstrip("%") for part in self.cleaned_data["budget_alerts"].split(",") if part.strip()]
        if not all(part.isdigit() for part in raw):
            raise forms.ValidationError("a comma-separated list of whole percentages, e.g. 50, 80, 100")
        return [int(part) for part in raw]


# Manager-page forms that change project settings: action -> (form, message when saved).
SETTINGS_FORMS: dict[str, tuple[type[forms.Form], str]] = {
    "budget": (BudgetForm, "Budget saved."),
    "settings": (AnnotationSettingsForm, "Annotation settings saved."),
    "retraining": (RetrainingForm, "Retraining policy saved."),
}


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
        {"rows": rows, "can_create": request.user.has_perm("annotator.add_project")},
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("annotator.add_project"):
        return render(request, "annotator/error.html", {"message": "You may not create projects."}, status=403)
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        labels = [line.strip() for line in data.pop("labels").splitlines() if line.strip()]
        try:
            project = services.project_create(user=request.user, labels=labels, **data)
        except ProjectError as exc:
            form.add_error(None, exc.message)
            for problem in exc.errors[:20]:
                form.add_error(None, problem)
        else:
            messages.success(request, f"Project “{project.name}” created.")
            return redirect("project-manage", project_id=project.pk)
    return render(request, "annotator/project_new.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def project_manage(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = _project_or_404(request, project_id)
    if role != Membership.Role.MANAGER:
        return redirect("annotate", project_id=project.pk)
    import_form = ImportForm()
    member_form = MemberForm()
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "import":
                import_form = ImportForm(request.POST, request.FILES)
                if import_form.is_valid():
                    upload = import_form.cleaned_data["file"]
                    if upload.size > settings.ALABEL_MAX_IMPORT_BYTES:
                        raise ProjectError(
                            f"the file is {upload.size / 1e6:.1f} MB; the limit is "
                            f"{settings.ALABEL_MAX_IMPORT_BYTES / 1e6:.1f} MB"
                        )
                    records, errors = parse_file(upload.name, upload.read())
                    result = services.documents_import(
                        project=project,
                        user=request.user,
                        records=records,
                        parse_errors=errors,
                        create_labels=import_form.cleaned_data["create_labels"],
                    )
                    messages.success(
                        request,
                        f"Imported {result.documents} documents with {result.annotations} seed annotations.",
                    )
                    return redirect("project-manage", project_id=project.pk)
            elif action == "member":
                member_form = MemberForm(request.POST)
                if member_form.is_valid():
                    services.member_add(project=project, **member_form.cleaned_data)
                    messages.success(request, f"{member_form.cleaned_data['username']} added.")
                    return redirect("project-manage", project_id=project.pk)
            elif action == "strategy":
                strategy_form = StrategyForm(request.POST)
                if strategy_form.is_valid():
                    services.project_update(project=project, strategy=strategy_form.cleaned_data["strategy"])
                    messages.success(request, f"Strategy set to {project.get_strategy_display()}.")
                    return redirect("project-manage", project_id=project.pk)
                messages.error(request, "Unknown strategy.")
            elif action in SETTINGS_FORMS:
                form_class, saved = SETTINGS_FORMS[action]
                settings_form = form_class(request.POST)
                if settings_form.is_valid():
                    services.project_update(project=project, **settings_form.cleaned_data)
                    messages.success(request, saved)
                    return redirect("project-manage", project_id=project.pk)
                for field, problems in settings_form.errors.items():
                    messages.error(request, f"{field}: {' '.join(problems)}")
            elif action == "promote":
                version = services.version_promote(
                    project=project, number=request.POST.get("version", ""), user=request.user
                )
                messages.success(request, f"v{version.number} now serves; the queue is being re-scored with it.")
                return redirect("project-manage", project_id=project.pk)
            elif action == "adapt":
                job = services.adaptation_request(project=project, user=request.user)
                messages.success(request, f"Encoder adaptation queued (job {job.pk}); a full retrain follows it.")
                return redirect("project-manage", project_id=project.pk)
            elif action == "estimate":
                job = services.savings_request(project=project, user=request.user)
                messages.success(request, f"Estimate of the labels saved against random queued (job {job.pk}).")
                return redirect("project-manage", project_id=project.pk)
            elif action == "adopt-strategy":
                project = services.savings_adopt(project=project, user=request.user)
                messages.success(request, f"Strategy set to {project.get_strategy_display()}.")
                return redirect("project-manage", project_id=project.pk)
            elif action == "train":
                train_form = TrainForm(request.POST)
                mode = train_form.cleaned_data["mode"] if train_form.is_valid() else ""
                job = services.training_request(project=project, user=request.user, mode=mode)
                messages.success(request, f"Training run queued (job {job.pk}).")
                return redirect("project-manage", project_id=project.pk)
            elif action == "schedule":
                schedule_form = ScheduleForm(request.POST)
                if schedule_form.is_valid():
                    data = dict(schedule_form.cleaned_data)
                    existing = None
                    if data.pop("schedule"):
                        existing = (
                            selectors.training_schedules(project=project)
                            .filter(pk=schedule_form.cleaned_data["schedule"])
                            .first()
                        )
                        if existing is None:
                            raise ProjectError("that schedule does not exist")
                    schedule = services.schedule_save(project=project, data=data, user=request.user, schedule=existing)
                    messages.success(request, f"Schedule saved: {describe_schedule(schedule)}.")
                    return redirect("project-manage", project_id=project.pk)
                for field, problems in schedule_form.errors.items():
                    messages.error(request, f"{field}: {' '.join(problems)}")
            elif action == "schedule-delete":
                schedule = (
                    selectors.training_schedules(project=project).filter(pk=_int(request.POST.get("schedule"))).first()
                )
                if schedule is None:
                    raise ProjectError("that schedule does not exist")
                services.schedule_delete(schedule=schedule)
                messages.success(request, "Schedule deleted.")
                return redirect("project-manage", project_id=project.pk)
            elif action == "cancel":
                job = Job.objects.filter(project=project, pk=_int(request.POST.get("job"))).first()
                if job is None:
                    raise ProjectError("that job does not exist")
                job = services.job_cancel(job=job, user=request.user)
                messages.success(
                    request, f"Job {job.pk} cancelled." if job.status == "CANCELLED" else f"Job {job.pk} is stopping."
                )
                return redirect("project-manage", project_id=project.pk)
            else:
                messages.error(request, "Unknown action.")
        except (ProjectError, PermissionDenied) as exc:
            messages.error(request, exc.message)
            for problem in exc.errors[:20]:
                messages.error(request, problem)
    curve = selectors.learning_curve(project=project)
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
        "import_form": import_form,
        "member_form": member_form,
        "strategy_form": StrategyForm(initial={"strategy": project.strategy}),
        "budget_form": BudgetForm(
            initial={
                "label_budget": project.label_budget,
                "budget_mode": project.budget_mode,
                "cost_per_document": project.cost_per_document,
                "currency": project.currency,
                "budget_alerts": ", ".join(str(p) for p in project.budget_alerts or []),
            }
        ),
        "activity": selectors.activities(project=project, limit=15),
        "curve": curve,
        "curve_svg": learning_curve_svg(curve),
        "evaluation": selectors.evaluation_progress(project=project),
        "savings": savings,
        "adaptation": selectors.adaptation_summary(project=project),
        "savings_svg": savings_svg(savings["estimate"]["result"]) if savings["estimate"] else "",
        "savings_minimum": {"evaluation": SAVINGS_MIN_EVALUATION, "picks": SAVINGS_MIN_PICKS},
        "retraining_form": RetrainingForm(
            initial={
                "retrain_every": project.retrain_every,
                "retrain_mode": project.retrain_mode,
                "full_retrain_growth": project.full_retrain_growth,
                "replay_size": project.replay_size,
                "timezone": project.timezone,
                "adapt_auto": project.adapt_auto,
            }
        ),
        "schedules": [
            {
                "schedule": schedule,
                "text": describe_schedule(schedule),
                "form": ScheduleForm(
                    auto_id=f"id_schedule{schedule.pk}_%s",
                    initial={
                        "schedule": schedule.pk,
                        "mode": schedule.mode,
                        "kind": schedule.kind,
                        "every": schedule.every,
                        "unit": schedule.unit,
                        "at": schedule.at,
                        "cron": schedule.cron,
                        "enabled": schedule.enabled,
                        "skip_unchanged": schedule.skip_unchanged,
                    },
                ),
            }
            for schedule in selectors.training_schedules(project=project)
        ],
        "schedule_form": ScheduleForm(auto_id="id_schedule_%s"),
        "train_form": TrainForm(auto_id="id_train_%s"),
        "workers": selectors.worker_health(details=True),
        "settings_form": AnnotationSettingsForm(
            initial={
                "guidelines": project.guidelines,
                "suggestions_k": project.suggestions_k,
                "label_prior": project.label_prior,
                "preticks_enabled": project.preticks_enabled,
                "pretick_floor": project.pretick_floor,
                "decision_threshold": project.decision_threshold,
                "lease_seconds": project.lease_seconds,
                "eval_size": project.eval_size,
                "eval_fraction": project.eval_fraction,
                "eval_share": project.eval_share,
                "stop_min_gain": project.stop_min_gain,
            }
        ),
    }
    return render(request, "annotator/project_manage.html", context)


def _int(value: object) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


@login_required
def annotate(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = _project_or_404(request, project_id)
    return render(request, "annotator/annotate.html", {"project": project, "role": role})


def healthz(request: HttpRequest) -> HttpResponse:
    """Health for load balancers, compose and operators: database and broker reachable (else 503), and the Celery
    workers seen alive per queue from their heartbeats (a queue without a live worker makes the status "degraded",
    still 200: the web serves and saves answers without workers). Host names only for staff."""
    from django.db import connection
    from django.db.utils import DatabaseError
    from django.http import JsonResponse
    from kombu.exceptions import OperationalError as BrokerError

    from webapp.celery import app

    from . import selectors

    checks: dict[str, object] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except DatabaseError:
        checks["database"] = "unreachable"
    try:
        with app.connection_for_write() as conn:
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
