"""Input and output shapes of the API (they also describe it in the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import Job, Membership, ModelVersion, Project, TrainingSchedule, TrainMode, strategy_choices
from ..services.projects import PROJECT_SETTINGS
from ..validation import ID_MAX, ColumnBoundedMixin
from .strict import StrictPatchMixin


class CountField(ColumnBoundedMixin, serializers.IntegerField):
    """A whole number stored in an integer column (at most INT_MAX unless a smaller `max_value` is given)."""


@extend_schema_field({"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$", "example": "02:00"})
class LocalTimeField(serializers.TimeField):
    """A wall-clock time without a UTC offset ("02:00" in, "02:00:00" out), in the project's time zone. OpenAPI's
    `format: time` (RFC 3339) requires an offset, so the schema names the shape with a pattern instead."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("input_formats", ["%H:%M", "%H:%M:%S"])
        super().__init__(**kwargs)


class LabelListField(serializers.ListField):
    """Labels given as names or as {"name", "description"} objects; objects with alt_names, external_id or parent are
    a label file's items (`services.project_create_with_taxonomy`)."""

    child = serializers.JSONField()


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    labels = LabelListField(required=False, default=list)
    guidelines = serializers.CharField(required=False, allow_blank=True)
    label_budget = CountField(required=False, allow_null=True, min_value=1)
    budget_mode = serializers.ChoiceField(choices=Project.BudgetMode.choices, required=False)
    cost_per_document = serializers.DecimalField(
        max_digits=12, decimal_places=4, required=False, allow_null=True, min_value=0
    )
    currency = serializers.CharField(max_length=3, required=False, allow_blank=True)
    budget_alerts = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=1000), required=False, max_length=20
    )
    retrain_every = CountField(required=False, min_value=1)
    retrain_mode = serializers.ChoiceField(choices=TrainMode.choices, required=False)
    full_retrain_growth = serializers.FloatField(required=False, min_value=0.01, max_value=100)
    replay_size = serializers.IntegerField(required=False, min_value=0, max_value=10_000_000)
    timezone = serializers.CharField(required=False, max_length=64)
    strategy = serializers.ChoiceField(choices=strategy_choices(), required=False)
    loss = serializers.ChoiceField(choices=Project.Loss.choices, required=False)
    model_tier = serializers.ChoiceField(
        choices=Project.Tier.choices,
        required=False,
        help_text="What training runs build: fast (default) or full (the encoder fine-tuned with the head, on the gpu "
        "worker); the next run after a change is a full retrain.",
    )
    decision_threshold = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    pretick_floor = serializers.FloatField(
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text="Pre-tick only where pre-ticks are right at least this share of the time, shown with 95 % "
        "confidence (0 < floor < 1).",
    )
    preticks_enabled = serializers.BooleanField(required=False)
    label_prior = serializers.BooleanField(required=False)
    adapt_auto = serializers.BooleanField(required=False)
    suggestions_k = serializers.IntegerField(required=False, min_value=1, max_value=100)
    lease_seconds = CountField(required=False, min_value=10)
    queue_size = serializers.IntegerField(required=False, min_value=1, max_value=100_000)
    eval_size = serializers.IntegerField(required=False, min_value=0, max_value=1_000_000)
    eval_fraction = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    eval_share = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    overlap_share = serializers.FloatField(
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text="Share of the pool's documents answered by overlap_k different experts each (0: one answer each).",
    )
    overlap_k = serializers.IntegerField(required=False, min_value=2, max_value=10)
    overlap_evaluation = serializers.BooleanField(
        required=False, help_text="Every evaluation document is answered by overlap_k experts."
    )
    stop_min_gain = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)


class ProjectUpdateSerializer(StrictPatchMixin, ProjectCreateSerializer):
    name = serializers.CharField(max_length=200, required=False, help_text="A new name (recorded in the feed).")
    labels = None


class ProjectDeleteSerializer(serializers.Serializer):
    confirm = serializers.CharField(help_text="The project's name, exactly: deleting cannot be undone.")


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", *PROJECT_SETTINGS, "adapt_last", "created_at", "archived_at", "role"]
        read_only_fields = ["adapt_last", "archived_at"]

    def get_role(self, project: Project) -> str | None:
        roles = self.context.get("roles", {})
        return roles.get(project.pk)


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(
        choices=Membership.Role.choices,
        required=False,
        help_text="A new member's role (default annotator); for a member, leave it out to keep theirs.",
    )
    quota = CountField(
        required=False, allow_null=True, min_value=1, help_text="Documents this member may label; null: no limit."
    )


class MemberOutSerializer(MemberSerializer):
    spent = serializers.IntegerField(help_text="Documents this member labelled (seed imports excluded).")


class DocumentRecordSerializer(serializers.Serializer):
    id = serializers.CharField()
    text = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True)
    metadata = serializers.DictField(required=False)
    predictions = serializers.JSONField(
        required=False, help_text='pre-annotations: {"label": score} or [{"source", "labels": {"label": score}}]'
    )


class ImportResultSerializer(serializers.Serializer):
    documents = serializers.IntegerField()
    annotations = serializers.IntegerField()
    labels_created = serializers.IntegerField()
    preannotations = serializers.IntegerField(help_text="pre-annotations stored: (document, label, source) scores")
    notes = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Present when the file carried something not imported (Label Studio predictions): what and how many",
    )


class AnnotationInputSerializer(serializers.Serializer):
    document = serializers.IntegerField(help_text="The document's numeric id, as returned by `next`.")
    labels = serializers.ListField(
        child=serializers.CharField(max_length=255, allow_blank=False),
        allow_empty=True,
        help_text="Label names; an empty list means none apply.",
    )
    rejected = serializers.ListField(
        child=serializers.CharField(max_length=255, allow_blank=False),
        required=False,
        default=list,
        help_text="Suggested labels the expert explicitly rejected (hard negatives); never also in `labels`.",
    )
    seconds_spent = serializers.FloatField(required=False, allow_null=True, min_value=0)
    source = serializers.ChoiceField(choices=[("api", "api"), ("ui", "ui")], required=False, default="api")


class AnnotationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    document = serializers.IntegerField(source="document_id")
    labels = serializers.ListField(child=serializers.CharField())
    rejected = serializers.ListField(child=serializers.CharField())
    strategy = serializers.CharField(allow_null=True, help_text="What picked the document (managers only).")
    model_version = serializers.IntegerField(allow_null=True)
    seconds_spent = serializers.FloatField(allow_null=True)
    updated_at = serializers.DateTimeField()


class SkipInputSerializer(serializers.Serializer):
    document = serializers.IntegerField()


class LeaseInputSerializer(serializers.Serializer):
    document = serializers.IntegerField()
    action = serializers.ChoiceField(choices=[("renew", "renew"), ("release", "release")], default="renew")


class LeaseSerializer(serializers.Serializer):
    document = serializers.IntegerField()
    held = serializers.BooleanField(help_text="False: the lease is lost (someone else holds the document).")
    lease_expires_at = serializers.DateTimeField(allow_null=True)


class SuggestionSerializer(serializers.Serializer):
    label_id = serializers.IntegerField()
    label = serializers.CharField()
    description = serializers.CharField()
    score = serializers.FloatField()
    preselected = serializers.BooleanField()
    source = serializers.CharField(
        required=False, help_text='"model", or the external source of a pre-annotation; absent before the first model'
    )


class DecidedSuggestionSerializer(serializers.Serializer):
    label = serializers.CharField()
    description = serializers.CharField()
    score = serializers.FloatField()
    preselected = serializers.BooleanField()
    decision = serializers.ChoiceField(choices=["accepted", "rejected", "not_chosen"])


class BudgetOutSerializer(serializers.Serializer):
    label_budget = serializers.IntegerField(allow_null=True)
    spent = serializers.IntegerField()
    remaining = serializers.IntegerField(allow_null=True)


class DocumentOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    text = serializers.CharField()
    metadata = serializers.DictField()


class PretickSerializer(serializers.Serializer):
    threshold = serializers.FloatField(
        allow_null=True, help_text="Suggestions scoring at least this are pre-ticked; null: none are."
    )
    precision = serializers.FloatField(
        required=False, allow_null=True, help_text="How often pre-ticks at this threshold were right."
    )
    floor = serializers.FloatField(help_text="The project's precision floor for pre-ticks.")
    source = serializers.CharField(required=False, help_text="What the threshold rests on.")
    reason = serializers.CharField(required=False, help_text="Why nothing is pre-ticked.")


class NextSerializer(serializers.Serializer):
    document = DocumentOutSerializer()
    strategy = serializers.CharField(allow_null=True, help_text="What picked the document (managers only).")
    model_version = serializers.IntegerField(allow_null=True)
    score = serializers.FloatField(allow_null=True, help_text="The strategy's score (managers only).")
    suggestions = SuggestionSerializer(many=True)
    threshold = serializers.FloatField(help_text="The model's decision threshold (margin strategies).")
    pretick = PretickSerializer()
    lease_expires_at = serializers.DateTimeField()
    lease_seconds = serializers.IntegerField()
    budget = BudgetOutSerializer()


class AnnotationDetailSerializer(serializers.Serializer):
    document = DocumentOutSerializer()
    labels = serializers.ListField(child=serializers.CharField())
    suggestions = DecidedSuggestionSerializer(many=True)
    strategy = serializers.CharField(allow_null=True, help_text="What picked the document (managers only).")
    model_version = serializers.IntegerField(allow_null=True)
    seconds_spent = serializers.FloatField(allow_null=True)
    updated_at = serializers.DateTimeField()


class LabelSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()


class LabelHitSerializer(LabelSerializer):
    frequency = serializers.IntegerField(help_text="Positives among the project's annotations.")
    score = serializers.FloatField(allow_null=True, help_text="The model's probability for `document`, if scored.")
    match = serializers.ChoiceField(
        choices=["name", "alias", "semantic"],
        help_text="How it was found: by its name, by an alternative name (`alias`), or by meaning (`semantic=1`).",
    )
    alias = serializers.CharField(allow_blank=True, help_text="The alternative name that matched, if any.")
    # The taxonomy fields, in answers to managers.
    external_id = serializers.CharField(required=False, help_text="Managers only: the id in the source vocabulary.")
    parent = serializers.IntegerField(required=False, allow_null=True, help_text="Managers only: the parent label.")
    alt_names = serializers.ListField(child=serializers.CharField(), required=False, help_text="Managers only.")
    deprecated = serializers.BooleanField(required=False, help_text="Managers only.")


class LabelTaxonomySerializer(LabelSerializer):
    """A label with its taxonomy fields (the manage page)."""

    frequency = serializers.IntegerField(help_text="Positives among the project's annotations.")
    children = serializers.IntegerField(help_text="Non-deprecated labels directly under it.")
    external_id = serializers.CharField(
        help_text='The id in the source vocabulary, e.g. "gnd:4002851-3"; may be empty.'
    )
    parent = serializers.IntegerField(allow_null=True, help_text="The broader label (null: a root).")
    parent_name = serializers.CharField(allow_null=True)
    alt_names = serializers.ListField(child=serializers.CharField(), help_text="Alternative names (search finds them).")
    deprecated = serializers.BooleanField(help_text="No longer offered to experts; answers keep it.")
    deprecated_at = serializers.DateTimeField(allow_null=True)


class LabelTaxonomyListSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Labels matching, before limit and offset.")
    labels = LabelTaxonomySerializer(many=True)


class LabelTreeNodeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    external_id = serializers.CharField(allow_blank=True)
    children = serializers.IntegerField(help_text="Non-deprecated labels directly under this one.")


class LabelTreeSerializer(serializers.Serializer):
    parent = serializers.IntegerField(allow_null=True, help_text="The label whose children these are (null: roots).")
    count = serializers.IntegerField(help_text="Labels at this level, before limit and offset.")
    labels = LabelTreeNodeSerializer(many=True)


class LabelUpdateSerializer(StrictPatchMixin, serializers.Serializer):
    name = serializers.CharField(
        max_length=255, help_text="A new name renames the label; the old one is kept as an alternative name."
    )
    description = serializers.CharField(max_length=10_000, allow_blank=True, trim_whitespace=True)
    alt_names = serializers.ListField(
        child=serializers.CharField(max_length=255), max_length=100, help_text="Replaces the alternative names."
    )
    external_id = serializers.CharField(max_length=255, allow_blank=True)
    parent = serializers.IntegerField(
        allow_null=True, min_value=1, max_value=ID_MAX, help_text="The parent label's id; null: a root."
    )


class LabelMergeSerializer(serializers.Serializer):
    into = serializers.IntegerField(min_value=1, max_value=ID_MAX, help_text="The label that takes this one's place.")


class LabelImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    alt_names = serializers.IntegerField(help_text="Alternative names written.")
    labels = serializers.IntegerField(help_text="Labels in the project now.")
    ignored_columns = serializers.ListField(child=serializers.CharField(), help_text="Columns of the file not read.")


class JobSerializer(serializers.ModelSerializer):
    model_version = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "mode",
            "status",
            "progress",
            "message",
            "error",
            "reason",
            "model_version",
            "schedule",
            "retry_of",
            "cancel_requested",
            "worker",
            "device",
            "attempts",
            "created_at",
            "dispatched_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]

    def get_model_version(self, job: Job) -> int | None:
        return job.model_version.number if job.model_version_id else None


class TrainRequestSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(
        choices=TrainMode.choices, required=False, allow_blank=True, help_text="Empty: the project's retrain_mode."
    )


class ScheduleSerializer(StrictPatchMixin, serializers.ModelSerializer):
    description = serializers.SerializerMethodField()
    every = CountField(required=False, allow_null=True, min_value=1, help_text="Interval schedules: how many units.")
    at = LocalTimeField(
        required=False, allow_null=True, help_text="Daily schedules: the time (HH:MM) in the project's time zone."
    )

    class Meta:
        model = TrainingSchedule
        fields = [
            "id",
            "mode",
            "kind",
            "every",
            "unit",
            "at",
            "cron",
            "enabled",
            "skip_unchanged",
            "description",
            "last_fired_at",
            "error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "description", "last_fired_at", "error", "created_at", "updated_at"]

    def get_description(self, schedule: TrainingSchedule) -> str:
        from ..services.schedules import describe

        return describe(schedule)


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "number",
            "is_serving",
            "created_at",
            "n_annotations",
            "n_labels",
            "metrics",
            "evaluation",
            "agreement",
            "train_seconds",
            "device",
            "config",
        ]


class CurvePointSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    labels = serializers.IntegerField(help_text="Training labels (documents) of the version.")
    value = serializers.FloatField()
    low = serializers.FloatField()
    high = serializers.FloatField()
    evaluated_on = serializers.IntegerField(help_text="Labelled evaluation documents it was measured on.")
    agreement = serializers.FloatField(allow_null=True, help_text="Cohen's kappa with the previous version.")
    created_at = serializers.DateTimeField()


class LearningCurveSerializer(serializers.Serializer):
    metric = serializers.CharField()
    points = CurvePointSerializer(many=True)
    fit = serializers.DictField(allow_null=True, help_text="params, level, per_100, next_500, to_reach, curve")
    fit_pending = serializers.BooleanField()
    agreements = serializers.ListField(child=serializers.FloatField())
    advice = serializers.DictField()


class SavingsEstimateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    picks = serializers.IntegerField(help_text="Labelled documents the queue picked, replayed in their order.")
    evaluation_documents = serializers.IntegerField(help_text="Labelled evaluation documents (the random control).")
    model_version = serializers.IntegerField(allow_null=True, help_text="The serving version at the time.")
    job = serializers.IntegerField(allow_null=True)
    result = serializers.DictField(
        help_text="verdict (saves | costs | undecided | not_enough_data), favoured, headline, summary, target, "
        "n_random, labels_picks, picks_max, ratio {value, low, high, never}, curves {random, picks}, macro_f1, "
        "caveats, sizes, seconds; reason when there is not enough data"
    )


class SavingsSerializer(serializers.Serializer):
    estimate = SavingsEstimateSerializer(allow_null=True, help_text="The newest estimate; null before the first.")
    job = serializers.DictField(allow_null=True, help_text="The newest estimate job (queued, running or finished).")
    active = serializers.BooleanField(help_text="An estimate is queued or running.")
    strategy = serializers.CharField(help_text="The project's strategy now.")
    favoured = serializers.CharField(allow_null=True, help_text="The strategy the newest estimate favours, if any.")
    adoptable = serializers.BooleanField(help_text="It favours a strategy the project does not use yet.")


class ModelCompareSerializer(serializers.Serializer):
    a = serializers.IntegerField()
    b = serializers.IntegerField()
    metrics = serializers.DictField(help_text="held-out metrics: {name: {a, b, delta}}")
    evaluation = serializers.DictField(help_text="evaluation-set metrics: {name: {a, b, delta}}")
    evaluated_on = serializers.DictField()
    per_label = serializers.ListField(child=serializers.DictField(), help_text="largest per-label F1 changes")
    changed = serializers.DictField(help_text="stop-set documents whose predicted labels changed, with examples")


class LabelCoverageSerializer(serializers.Serializer):
    labels = serializers.IntegerField()
    zero = serializers.IntegerField(help_text="labels without a positive")
    under_5 = serializers.IntegerField(help_text="labels with fewer than 5 positives")
    distribution = serializers.ListField(child=serializers.DictField(), help_text="[{bucket, labels}]")
    matching = serializers.IntegerField()
    items = serializers.ListField(child=serializers.DictField(), help_text="[{id, name, positives}], rarest first")


class AnnotatorStatsSerializer(serializers.Serializer):
    username = serializers.CharField()
    documents = serializers.IntegerField()
    documents_per_hour = serializers.FloatField(allow_null=True)
    median_seconds = serializers.FloatField(allow_null=True)
    suggestions_shown = serializers.IntegerField()
    accepted_share = serializers.FloatField(allow_null=True)


class BrowseAnswerSerializer(serializers.Serializer):
    annotator = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField())
    source = serializers.CharField()
    seconds_spent = serializers.FloatField(allow_null=True)
    model_agreement = serializers.FloatField(
        allow_null=True, help_text="Jaccard agreement with the model's pre-ticks (null: nothing was pre-ticked)."
    )
    updated_at = serializers.DateTimeField()


class BrowseGoldSerializer(serializers.Serializer):
    labels = serializers.ListField(child=serializers.CharField())
    reviewer = serializers.CharField()
    note = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class BrowseDocumentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    text = serializers.CharField(help_text="The first 300 characters.")
    evaluation = serializers.BooleanField(allow_null=True, help_text="In the evaluation set (null for reviewers).")
    agreement = serializers.FloatField(allow_null=True, help_text="Mean pairwise Jaccard of its answers (null: < 2).")
    gold = BrowseGoldSerializer(allow_null=True, help_text="The reviewer's decision (null: none).")
    answers = BrowseAnswerSerializer(many=True)


class BrowsePageSerializer(serializers.Serializer):
    documents = BrowseDocumentSerializer(many=True)
    next = serializers.IntegerField(allow_null=True, help_text="Pass as `after` for the next page; null: the last.")


class LabelStudioTaskSerializer(serializers.Serializer):
    """One Label Studio task of the export (annotator.formats.label_studio_export)."""

    data = serializers.DictField(help_text='{"text": ..., "id": our external id, other metadata}')
    annotations = serializers.ListField(child=serializers.DictField(), help_text="One per answer, and the gold.")
    predictions = serializers.ListField(child=serializers.DictField(), help_text="The suggestions shown, scored.")
