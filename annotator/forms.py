"""The browser pages' forms. A settings form whose fields are Project fields of the same names fills itself from the
project (`for_project`); saving goes through services.project_update, which validates again."""

from __future__ import annotations

from typing import Any, Self

from django import forms

from .models import Membership, Project, TrainingSchedule, TrainMode, Webhook, strategy_choices
from .validation import ColumnBoundedMixin, whole_number


class CountField(ColumnBoundedMixin, forms.IntegerField):
    """A whole number stored in an integer column (at most INT_MAX unless a smaller `max_value` is given)."""


class ProjectFieldsForm(forms.Form):
    """A form over Project fields by the same names, shown filled with the project's values."""

    @classmethod
    def for_project(cls, project: Project, **kwargs: Any) -> Self:
        return cls(initial={name: getattr(project, name) for name in cls.base_fields}, **kwargs)


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200)
    labels = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), help_text="One label per line.", required=False)
    label_file = forms.FileField(
        required=False,
        help_text="Or a label file (.csv, .tsv, .json) with the columns name, description, alt_names, external_id, "
        "parent: a taxonomy such as GND subject headings.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.tsv,.tab,.json"}),
    )
    guidelines = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    label_budget = CountField(min_value=1, required=False, help_text="Documents; empty for no limit.")
    retrain_every = CountField(min_value=1, initial=20)
    strategy = forms.ChoiceField(choices=strategy_choices, initial="default")


class StrategyForm(ProjectFieldsForm):
    strategy = forms.ChoiceField(choices=strategy_choices)


class AnnotationSettingsForm(ProjectFieldsForm):
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
    lease_seconds = CountField(min_value=10, label="Lease (seconds)")
    eval_size = CountField(
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
    overlap_share = forms.FloatField(
        min_value=0,
        max_value=1,
        label="Overlap: share of documents answered by several experts",
        help_text="0.1 = every tenth document gets overlap_k answers, for agreement and review; 0: one answer each.",
    )
    overlap_k = forms.IntegerField(min_value=2, max_value=10, label="Experts per overlap document")
    overlap_evaluation = forms.BooleanField(
        required=False,
        label="Overlap the whole evaluation set",
        help_text="Every evaluation document gets overlap_k answers (its gold then rests on more than one expert).",
    )


class RetrainingForm(ProjectFieldsForm):
    """Which model is trained, and when and how it is retrained as labels arrive."""

    model_tier = forms.ChoiceField(
        choices=Project.Tier.choices,
        label="Model",
        help_text="The full tier fine-tunes the encoder on the gpu worker: minutes per run on a GPU, far longer on a "
        "CPU. The next run after a change is a full retrain.",
    )
    retrain_every = CountField(min_value=1, label="Train after every N new labels")
    retrain_mode = forms.ChoiceField(choices=TrainMode.choices, label="Those runs do")
    full_retrain_growth = forms.FloatField(
        min_value=0.01,
        max_value=100,
        label="Automatic: full retrain once the labelled set grew by",
        help_text="A share: 0.5 = by half since the last full retrain; incremental updates in between.",
    )
    replay_size = CountField(
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

    schedule = CountField(required=False, widget=forms.HiddenInput)
    mode = forms.ChoiceField(choices=TrainMode.choices, initial=TrainMode.FULL, label="Run")
    kind = forms.ChoiceField(choices=TrainingSchedule.Kind.choices, label="When")
    every = CountField(min_value=1, required=False)
    unit = forms.ChoiceField(choices=TrainingSchedule.Unit.choices, required=False, initial="hours")
    at = forms.TimeField(required=False, label="At (HH:MM)", widget=forms.TimeInput(attrs={"type": "time"}))
    cron = forms.CharField(max_length=100, required=False, label="Cron", help_text='e.g. "0 2 * * 1-5"')
    enabled = forms.BooleanField(required=False, initial=True)
    skip_unchanged = forms.BooleanField(
        required=False, initial=True, label="Skip when nothing new was labelled since the last run of this kind"
    )

    @classmethod
    def for_schedule(cls, schedule: TrainingSchedule) -> Self:
        initial = {name: getattr(schedule, name) for name in cls.base_fields if name != "schedule"}
        return cls(auto_id=f"id_schedule{schedule.pk}_%s", initial={**initial, "schedule": schedule.pk})


class TrainForm(forms.Form):
    mode = forms.ChoiceField(choices=[("", "Project default"), *TrainMode.choices], required=False)


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text='JSONL lines {"id", "text", "labels"?}, CSV id,text[,labels] or one 0/1 column per label, Label '
        "Studio JSON (tasks with data.text and choices answers) or Parquet. A Hugging Face dataset folder: "
        "manage.py import_documents."
    )
    create_labels = forms.BooleanField(required=False, help_text="Add labels the project does not have yet.")
    prediction_source = forms.CharField(
        max_length=100,
        required=False,
        help_text="The model that made the file's predictions (pre-annotations) when it names none; empty: import.",
    )


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.ANNOTATOR)
    quota = CountField(min_value=1, required=False, help_text="Documents this member may label; empty: no limit.")


class RenameForm(forms.Form):
    name = forms.CharField(max_length=200, label="Project name")


class DeleteForm(forms.Form):
    confirm = forms.CharField(max_length=200, label="Type the project's name to delete it")


class BudgetForm(ProjectFieldsForm):
    label_budget = CountField(min_value=1, required=False, help_text="Documents; empty for no limit.")
    budget_mode = forms.ChoiceField(choices=Project.BudgetMode.choices, label="When it is spent")
    cost_per_document = forms.DecimalField(min_value=0, max_digits=12, decimal_places=4, required=False)
    currency = forms.CharField(max_length=3, required=False, help_text="e.g. EUR")
    budget_alerts = forms.CharField(
        max_length=100, label="Notify at (% of the budget)", help_text="Comma-separated, e.g. 50, 80, 100."
    )

    @classmethod
    def for_project(cls, project: Project, **kwargs: Any) -> Self:
        form = super().for_project(project, **kwargs)
        form.initial["budget_alerts"] = ", ".join(str(p) for p in project.budget_alerts or [])
        return form

    def clean_budget_alerts(self) -> list[int]:
        raw = [part.strip().rstrip("%") for part in self.cleaned_data["budget_alerts"].split(",") if part.strip()]
        percents = [whole_number(part) for part in raw]
        if None in percents:
            raise forms.ValidationError("a comma-separated list of whole percentages, e.g. 50, 80, 100")
        return [p for p in percents if p is not None]


class WebhookForm(forms.Form):
    """A webhook to register; services.webhook_create validates the URL (http/https, a host, no credentials)."""

    url = forms.CharField(
        max_length=500, label="URL", widget=forms.URLInput(attrs={"placeholder": "https://example.org/hooks/alabel"})
    )
    events = forms.MultipleChoiceField(choices=Webhook.Event.choices, widget=forms.CheckboxSelectMultiple)
