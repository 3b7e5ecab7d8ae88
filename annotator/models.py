"""The data model: fields, constraints and indexes only. Rules live in services.py and selectors.py."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Replace

from annotator.text import COMPACT_DROP, COMPACT_PAIRS


def compact_of(field: str) -> models.Expression:
    """The database's `annotator.text.compact` of a folded key column: separators dropped, then ue/oe/ae -> u/o/a
    ("Non-Profit-Organisation" -> "nonprofitorganisation", "Mueller" -> "muller"). A generated column, so that no
    write path (bulk_create, update(), a migration, the admin) can leave it stale."""
    expression: models.Expression = F(field)
    for ch in COMPACT_DROP:
        expression = Replace(expression, models.Value(ch), models.Value(""))
    for pair, letter in COMPACT_PAIRS:
        expression = Replace(expression, models.Value(pair), models.Value(letter))
    return expression


def strategy_choices() -> list[tuple[str, str]]:
    """The query strategies of `learner.strategies` (one source of truth; "default" is the measured default)."""
    from annotator import ml

    return ml.strategy_choices()


def default_budget_alerts() -> list[int]:
    return [50, 80, 100]


def default_timezone() -> str:
    return settings.TIME_ZONE


class TrainMode(models.TextChoices):
    """How a training run builds the next version: "auto" lets the project's policy decide per run."""

    AUTO = "auto", "Automatic: incremental update, full retrain when due"
    INCREMENTAL = "incremental", "Incremental update of the serving model"
    FULL = "full", "Full retrain from scratch"


class Project(models.Model):
    class Loss(models.TextChoices):
        BCE = "bce", "Binary cross-entropy"
        ZLPR = "zlpr", "Multi-label softmax + cross-entropy (ZLPR)"

    class Tier(models.TextChoices):
        FAST = "fast", "Fast: linear heads on frozen embeddings and TF-IDF (CPU, seconds)"
        FULL = "full", "Full: the encoder fine-tuned with the head (gpu worker; minutes on a GPU)"

    class BudgetMode(models.TextChoices):
        HARD = "hard", "Hard: stop serving documents when the budget or a quota is spent"
        SOFT = "soft", "Soft: keep serving, with a notice"

    name = models.CharField(max_length=200)
    guidelines = models.TextField(blank=True)
    label_budget = models.PositiveIntegerField(
        null=True, blank=True, help_text="Documents the experts may label; empty means no limit."
    )
    budget_mode = models.CharField(max_length=4, choices=BudgetMode.choices, default=BudgetMode.HARD)
    cost_per_document = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True, help_text="What one labelled document costs."
    )
    currency = models.CharField(max_length=3, blank=True, default="", help_text="ISO 4217 code, e.g. EUR.")
    budget_alerts = models.JSONField(
        default=default_budget_alerts, blank=True, help_text="Percentages of the budget that raise a notice."
    )
    retrain_every = models.PositiveIntegerField(
        default=20, help_text="Queue a training run after this many new annotations."
    )
    retrain_mode = models.CharField(
        max_length=11,
        choices=TrainMode.choices,
        default=TrainMode.AUTO,
        help_text="What a run triggered by new annotations does.",
    )
    full_retrain_growth = models.FloatField(
        default=0.5,
        help_text="Automatic mode: retrain from scratch once the labelled set has grown by this fraction since the "
        "last full retrain (incremental updates in between).",
    )
    replay_size = models.PositiveIntegerField(
        default=5000, help_text="Incremental updates replay up to this many earlier labelled documents."
    )
    timezone = models.CharField(
        max_length=64, default=default_timezone, help_text="IANA time zone of the project's schedules."
    )
    strategy = models.CharField(
        max_length=20,
        choices=strategy_choices,
        default="default",
        help_text="How the queue picks documents; default: the strategy measured best (docs/benchmarks.md).",
    )
    # The `auto` strategy's memory (services.chooser): the chooser's evidence per arm (learner.chooser), the arm of
    # the last scoring run and the documents it queued, whose answers are its reward.
    chooser_state = models.JSONField(default=dict, blank=True)
    loss = models.CharField(max_length=10, choices=Loss.choices, default=Loss.BCE)
    model_tier = models.CharField(
        max_length=4,
        choices=Tier.choices,
        default=Tier.FAST,
        help_text="Which model a training run builds: the fast tier, or the full tier (learner.full: the encoder "
        "fine-tuned with a flat or label-tree head, XR-Transformer style), trained by the gpu worker.",
    )
    decision_threshold = models.FloatField(
        null=True,
        blank=True,
        default=None,
        help_text="Pre-tick suggestions at or above this probability (a manager's override); empty: the lowest score "
        "whose pre-ticks are right at least pretick_floor of the time. Margin strategies also decide with it "
        "(empty: the threshold the serving model tuned for micro-F1).",
    )
    pretick_floor = models.FloatField(
        default=0.7,
        help_text="Pre-tick only suggestions scoring where pre-ticks were right at least this share of the time "
        "(checked on labelled documents the model did not train on, and the experts' decisions).",
    )
    preticks_enabled = models.BooleanField(
        default=True, help_text="Off: nothing is pre-ticked (unless decision_threshold is set)."
    )
    label_prior = models.BooleanField(
        default=True,
        help_text="Suggest from the labels' names and descriptions before the first model and blend that prior into "
        "every model (labels with few examples); off for labels named by codes.",
    )
    adapt_auto = models.BooleanField(
        default=True,
        help_text="Adapt the encoder on its own when it may pay: first at ALABEL_ADAPT_AUTO_DOCUMENTS labelled "
        "documents, then each time the labelled documents have doubled since the last adaptation. An adapted encoder "
        "is adopted only where it beats the one in use on labelled documents it was not adapted on.",
    )
    # The last adaptation run: {"documents", "held_out", "gain", "adopted", "encoder", "at"} (services.adaptation).
    adapt_last = models.JSONField(default=dict, blank=True)
    suggestions_k = models.PositiveSmallIntegerField(default=10)
    lease_seconds = models.PositiveIntegerField(default=600)
    queue_size = models.PositiveIntegerField(default=200)
    eval_size = models.PositiveIntegerField(
        default=200, help_text="Documents in the unbiased evaluation set (a uniform random sample; 0: none)."
    )
    eval_fraction = models.FloatField(
        null=True, blank=True, help_text="Or this share of the documents (overrides eval_size when set)."
    )
    stop_min_gain = models.FloatField(
        default=0.005,
        help_text="Advise stopping when the forecast gain in micro-F1 per 100 more labels falls below this.",
    )
    # A fixed sample of the pool on which successive models' predictions are compared (stabilising predictions).
    stop_set = models.JSONField(default=list, blank=True)
    # The fitted learning curve and its forecasts (services.curves.learning_curve_refresh), with the fingerprint of
    # the points it was fitted on: a summary recomputed whenever they change, never served stale.
    curve_fit = models.JSONField(default=dict, blank=True)
    eval_share = models.FloatField(
        default=0.2, help_text="Share of the documents served that come from the evaluation set while it is not done."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Archived: kept read-only (no document is served, no training is scheduled), listed apart, restorable.
    archived_at = models.DateTimeField(null=True, blank=True)
    # Overlap (issue 18): a share of the documents is answered by `overlap_k` different experts, for agreement and
    # adjudication (services.overlap assigns Document.answers_wanted; the queue routes the further answers).
    overlap_share = models.FloatField(
        default=0.0,
        help_text="Share of the pool's documents (0 to 1) answered by overlap_k experts each; the rest by one.",
    )
    overlap_k = models.PositiveSmallIntegerField(
        default=2, help_text="How many different experts answer an overlap document (2 to 10)."
    )
    overlap_evaluation = models.BooleanField(
        default=False, help_text="Every evaluation-set document is answered by overlap_k experts."
    )
    # The sources of imported pre-annotations (PreAnnotation.source), kept by the import: empty means `next` never
    # looks for them (no query on the hot path of projects without any).
    preannotation_sources = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="project_name_not_empty"),
            models.CheckConstraint(condition=Q(retrain_every__gte=1), name="project_retrain_every_positive"),
            models.CheckConstraint(
                condition=Q(retrain_mode__in=["auto", "incremental", "full"]), name="project_retrain_mode_valid"
            ),
            models.CheckConstraint(condition=Q(full_retrain_growth__gt=0), name="project_full_retrain_growth_positive"),
            models.CheckConstraint(
                condition=Q(decision_threshold__isnull=True)
                | (Q(decision_threshold__gt=0) & Q(decision_threshold__lt=1)),
                name="project_threshold_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(pretick_floor__gt=0) & Q(pretick_floor__lt=1), name="project_pretick_floor_range"
            ),
            models.CheckConstraint(
                condition=Q(suggestions_k__gte=1) & Q(suggestions_k__lte=100),
                name="project_suggestions_k_range",
            ),
            models.CheckConstraint(condition=Q(lease_seconds__gte=10), name="project_lease_at_least_10s"),
            models.CheckConstraint(condition=Q(queue_size__gte=1), name="project_queue_size_positive"),
            models.CheckConstraint(condition=Q(budget_mode__in=["hard", "soft"]), name="project_budget_mode_valid"),
            models.CheckConstraint(
                condition=Q(eval_fraction__isnull=True) | (Q(eval_fraction__gt=0) & Q(eval_fraction__lt=1)),
                name="project_eval_fraction_range",
            ),
            models.CheckConstraint(
                condition=Q(eval_share__gte=0) & Q(eval_share__lte=1), name="project_eval_share_range"
            ),
            models.CheckConstraint(
                condition=Q(cost_per_document__isnull=True) | Q(cost_per_document__gte=0),
                name="project_cost_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(overlap_share__gte=0) & Q(overlap_share__lte=1), name="project_overlap_share_range"
            ),
            models.CheckConstraint(
                condition=Q(overlap_k__gte=2) & Q(overlap_k__lte=10), name="project_overlap_k_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        MANAGER = "manager", "Manager"
        # Between the two: annotates, and browses and reviews every answer of the project (not its settings).
        REVIEWER = "reviewer", "Reviewer"
        ANNOTATOR = "annotator", "Annotator"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    quota = models.PositiveIntegerField(
        null=True, blank=True, help_text="Documents this member may label in the project; empty: no limit."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_one_per_user_and_project"),
            models.CheckConstraint(
                condition=Q(role__in=["manager", "reviewer", "annotator"]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"


class BudgetAlert(models.Model):
    """A budget threshold the project crossed; one row per threshold, so each fires exactly once."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="budget_alerts_fired")
    percent = models.PositiveSmallIntegerField()
    spent = models.PositiveIntegerField(help_text="Documents labelled when it fired.")
    budget = models.PositiveIntegerField(help_text="The label budget when it fired.")
    fired_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project_id", "percent"]
        constraints = [models.UniqueConstraint(fields=["project", "percent"], name="budget_alert_once_per_percent")]

    def __str__(self) -> str:
        return f"{self.project_id}: {self.percent}% of the budget"


class Activity(models.Model):
    """The project's activity feed: what happened that a manager should know about."""

    class Kind(models.TextChoices):
        BUDGET = "budget", "Budget"
        QUOTA = "quota", "Quota"
        MODEL = "model", "Model"
        LABELS = "labels", "Labels"
        ADMIN = "admin", "Administration"
        DATA = "data", "Data"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="activities")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    message = models.CharField(max_length=300)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "-id"], name="activity_project_idx")]

    def __str__(self) -> str:
        return f"{self.project_id} {self.kind}: {self.message}"


class Label(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=255)
    # Case- and diacritics-folded name ("künstliche" -> "kunstliche") for portable, indexed search.
    search_key = models.CharField(max_length=255)
    # The same without spaces, hyphens and other separators, umlauts spelled out folded too (`text.compact`): search
    # is insensitive to how the name joins its words ("nonprofit" finds "Non-Profit-Organisation").
    search_compact = models.GeneratedField(
        expression=compact_of("search_key"), output_field=models.CharField(max_length=255), db_persist=True
    )
    description = models.TextField(blank=True)
    # Positives among the project's annotations (kept by services.labels_recount); ranks search results.
    frequency = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # The taxonomy (issue 17): an identifier in the source vocabulary (e.g. a GND id), the broader label, and when
    # the label was deprecated (no longer offered to experts; answers that chose it keep it).
    external_id = models.CharField(max_length=255, blank=True)
    parent = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children")
    deprecated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="label_name_unique_in_project"),
            models.CheckConstraint(condition=~Q(name=""), name="label_name_not_empty"),
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=~Q(external_id=""),
                name="label_external_id_unique_in_project",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "search_key"], name="label_search_idx"),
            models.Index(fields=["project", "frequency", "search_key", "search_compact"], name="label_rarest_idx"),
            models.Index(fields=["project", "parent"], name="label_project_parent_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class LabelAlias(models.Model):
    """An alternative name of a label (a synonym, a translation, a former name after a rename or merge): search finds
    the label by it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_aliases")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=255)
    search_key = models.CharField(max_length=255)  # annotator.text.fold(name), as Label.search_key
    search_compact = models.GeneratedField(
        expression=compact_of("search_key"), output_field=models.CharField(max_length=255), db_persist=True
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["label", "name"], name="label_alias_unique_per_label"),
            models.CheckConstraint(condition=~Q(name=""), name="label_alias_not_empty"),
        ]
        indexes = [models.Index(fields=["project", "search_key"], name="label_alias_search_idx")]

    def __str__(self) -> str:
        return self.name


class Document(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="documents")
    external_id = models.CharField(max_length=255)
    text = models.TextField()
    metadata = models.JSONField(default=dict, blank=True)
    # In the project's unbiased evaluation set: labelled like the others, never trained on.
    is_evaluation = models.BooleanField(default=False)
    # Overlap: how many different experts should answer it (1, or the project's overlap_k), and how many have
    # (kept by the services that write answers). A document with 0 < answers_count < answers_wanted waits for its
    # further answers, which the queue serves first, never to someone who answered it.
    answers_wanted = models.PositiveSmallIntegerField(default=1)
    answers_count = models.PositiveSmallIntegerField(default=0)
    # With two or more answers: the mean pairwise Jaccard agreement of their label sets (1 = all agree; two empty
    # answers agree); None below two answers. The review queue serves documents below 1 without gold.
    agreement = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "is_evaluation"], name="document_evaluation_idx"),
            models.Index(
                fields=["project", "answers_count"],
                condition=Q(answers_wanted__gt=1),
                name="document_overlap_open_idx",
            ),
            models.Index(fields=["project", "agreement", "id"], name="document_agreement_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="document_external_id_unique"),
            models.CheckConstraint(condition=~Q(external_id=""), name="document_external_id_not_empty"),
            models.CheckConstraint(condition=~Q(text=""), name="document_text_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}/{self.external_id}"


class EncoderVersion(models.Model):
    """A sentence encoder adapted to the project's labelled documents (learner.adapt): a model folder of its own
    whose embeddings are cached under its fingerprint. The newest one is what the next training reads; a model
    version reads the encoder it was trained with (its config's encoder_path)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="encoder_versions")
    number = models.PositiveIntegerField()
    artifact_path = models.CharField(max_length=500, help_text="Folder under ARTIFACTS_DIR.")
    fingerprint = models.CharField(max_length=64)
    base_fingerprint = models.CharField(max_length=64)
    n_documents = models.PositiveIntegerField()
    seconds = models.FloatField()
    device = models.CharField(max_length=20, blank=True, default="")
    stats = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="encoder_version_number_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}/encoder e{self.number}"


class PreAnnotation(models.Model):
    """A label with a score that an external model gave a document (imported from JSONL / CSV `predictions` or
    Label Studio `predictions`), kept per source. Shown as suggestions, marked with their source, until the
    project's own model does better on the evaluation set (ModelVersion.preannotation_comparison)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="preannotations")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="preannotations")
    source = models.CharField(max_length=100, help_text="The external model's name (Label Studio: model_version).")
    score = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["document_id", "-score", "label_id"]
        indexes = [models.Index(fields=["project", "source"], name="preannotation_source_idx")]
        constraints = [
            models.UniqueConstraint(fields=["document", "label", "source"], name="preannotation_unique"),
            models.CheckConstraint(condition=Q(score__gte=0) & Q(score__lte=1), name="preannotation_score_range"),
            models.CheckConstraint(condition=~Q(source=""), name="preannotation_source_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}:{self.label_id} {self.score:.2f} ({self.source})"


class ModelVersion(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    is_serving = models.BooleanField(default=False)
    artifact_path = models.CharField(max_length=500, help_text="Folder of the saved model, under ARTIFACTS_DIR.")
    metrics = models.JSONField(default=dict, blank=True)
    # On the unbiased evaluation set: learner.evaluation.evaluate's result (values with bootstrap intervals), and
    # apart (it is long at 41,218 labels and only the comparison reads it) the per-label F1 rows.
    evaluation = models.JSONField(default=dict, blank=True)
    evaluation_per_label = models.JSONField(default=list, blank=True)
    # The model's label decisions on the project's stop set ([[label_id, ...] per document, in stop_set order]) and
    # Cohen's kappa with the previous version's (learner.curves.agreement).
    stop_predictions = models.JSONField(default=list, blank=True)
    agreement = models.FloatField(null=True, blank=True)
    config = models.JSONField(default=dict, blank=True)
    # What experts did with this version's suggestions, per score bin (services.version_decisions_refresh after
    # each answer): {"decisions": n, "bins": [[j, shown, accepted], ...]}, suggestions shown with a score in
    # [j / 100, (j + 1) / 100). With config["tick_curve"] it sets the pre-tick threshold (selectors.pretick_rule).
    decision_counts = models.JSONField(default=dict, blank=True)
    # This version against the imported pre-annotations on the evaluation set (services.preannotations): per
    # source the metrics of both on the evaluation documents the source covers, and whether the model does better.
    # Until it does, documents with pre-annotations show the external suggestions (selectors.preannotations).
    preannotation_comparison = models.JSONField(default=dict, blank=True)
    n_annotations = models.PositiveIntegerField(help_text="Annotated documents the model was trained on.")
    n_labels = models.PositiveIntegerField()
    data_cutoff = models.DateTimeField(help_text="Annotations saved after this moment are new to this model.")
    train_seconds = models.FloatField(default=0.0)
    device = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="model_version_number_unique"),
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_serving=True), name="model_version_one_serving_per_project"
            ),
            models.UniqueConstraint(fields=["artifact_path"], name="model_version_artifact_unique"),
            models.CheckConstraint(condition=Q(number__gte=1), name="model_version_number_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} v{self.number}"


class Annotation(models.Model):
    class Source(models.TextChoices):
        UI = "ui", "Browser"
        API = "api", "API"
        IMPORT = "import", "Import (seed labels)"

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="annotations")
    # The document's project, repeated so that the manager's counts are index scans instead of joins over every
    # document (services set it with the document; a check in services.annotation_submit keeps them equal).
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    # PROTECT: deleting a user must never silently delete the labels they gave.
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations")
    labels = models.ManyToManyField(Label, through="AnnotationLabel", related_name="annotations")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    # Provenance: what selected the document and what the expert was shown.
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="annotations"
    )
    strategy = models.CharField(max_length=30, blank=True)
    suggestions = models.JSONField(
        default=list, blank=True, help_text='Shown, best first: [{"label": name, "score": p, "preselected": bool}]'
    )
    seconds_spent = models.FloatField(null=True, blank=True)
    # Jaccard agreement of the answer with what the model pre-ticked when it was served (None: nothing was shown):
    # the browse page's "model disagreement" filter (below 1).
    model_agreement = models.FloatField(null=True, blank=True)
    # How many suggestions were shown and accepted (a summary of its SuggestionDecision rows, for the per-annotator
    # acceptance share without aggregating every decision).
    suggestions_shown = models.PositiveSmallIntegerField(default=0)
    suggestions_accepted = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "source", "created_at"], name="annotation_project_idx"),
            models.Index(fields=["project", "annotator", "updated_at"], name="annotation_annotator_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["document", "annotator"], name="annotation_one_per_document_and_user"),
            models.CheckConstraint(
                condition=Q(seconds_spent__isnull=True) | Q(seconds_spent__gte=0),
                name="annotation_seconds_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"annotation {self.pk} of {self.document_id} by {self.annotator_id}"


class AnnotationLabel(models.Model):
    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="label_links")
    label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="annotation_links")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["annotation", "label"], name="annotation_label_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.annotation_id}:{self.label_id}"


class SuggestionDecision(models.Model):
    """What the expert did with one suggestion shown with the document: the evidence behind "accepted share" and
    the explicit rejections (hard negatives)."""

    class Decision(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"
        NOT_CHOSEN = "not_chosen", "Not chosen"

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="decisions")
    label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="decisions")
    rank = models.PositiveSmallIntegerField(help_text="Position in the suggestion list, 1 = best.")
    score = models.FloatField()
    preselected = models.BooleanField(help_text="Pre-ticked because the score reached the pre-tick threshold.")
    decision = models.CharField(max_length=10, choices=Decision.choices)

    class Meta:
        ordering = ["annotation_id", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["annotation", "label"], name="decision_one_per_label"),
            models.CheckConstraint(
                condition=Q(decision__in=["accepted", "rejected", "not_chosen"]), name="decision_valid"
            ),
            models.CheckConstraint(condition=Q(rank__gte=1), name="decision_rank_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.annotation_id}:{self.label_id} {self.decision}"


class Adjudication(models.Model):
    """A reviewer's decision on a document's labels: its gold answer. Training and evaluation read gold before the
    majority of the answers, and the majority before a single answer (selectors.training.resolved_answers)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    document = models.OneToOneField(Document, on_delete=models.CASCADE, related_name="adjudication")
    # PROTECT, like an annotator: deleting a user must never silently delete the gold they decided.
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="adjudications")
    labels = models.ManyToManyField(Label, through="AdjudicationLabel", related_name="adjudications")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "updated_at"], name="adjudication_project_idx")]

    def __str__(self) -> str:
        return f"gold of {self.document_id} by {self.reviewer_id}"


class AdjudicationLabel(models.Model):
    adjudication = models.ForeignKey(Adjudication, on_delete=models.CASCADE, related_name="label_links")
    label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="adjudication_links")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["adjudication", "label"], name="adjudication_label_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.adjudication_id}:{self.label_id}"


class AuditEntry(models.Model):
    """The audit log: every change to answers, gold, labels, members and settings, with who, when, before and
    after (services.audit.audit_record). Kept when the user is deleted (their name stays)."""

    class Target(models.TextChoices):
        ANSWER = "answer", "Answer"
        GOLD = "gold", "Gold answer"
        LABEL = "label", "Label"
        MEMBER = "member", "Member"
        SETTINGS = "settings", "Settings"
        PROJECT = "project", "Project"

    class Action(models.TextChoices):
        CREATE = "create", "Created"
        UPDATE = "update", "Changed"
        DELETE = "delete", "Deleted"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="audit_entries")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True)
    target = models.CharField(max_length=10, choices=Target.choices)
    action = models.CharField(max_length=10, choices=Action.choices)
    object_ref = models.CharField(max_length=300, blank=True, help_text="What changed: a document id, a label, a user.")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["project", "-id"], name="audit_project_idx"),
            models.Index(fields=["project", "target", "-id"], name="audit_project_target_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(target__in=["answer", "gold", "label", "member", "settings", "project"]),
                name="audit_target_valid",
            ),
            models.CheckConstraint(condition=Q(action__in=["create", "update", "delete"]), name="audit_action_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} {self.target} {self.action} {self.object_ref}"


class AgreementReport(models.Model):
    """Inter-annotator agreement of a project's overlap documents, computed by a worker (services.agreement):
    learner.agreement's result (JSON) with what it was computed on. The newest one is shown."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agreement_reports")
    job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    documents = models.PositiveIntegerField(help_text="Documents with two or more answers.")
    answers = models.PositiveIntegerField(help_text="Answers to those documents.")
    fingerprint = models.CharField(max_length=64, help_text="Of the answers it was computed on.")
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "-id"], name="agreement_project_idx")]

    def __str__(self) -> str:
        return f"{self.project_id} agreement report {self.pk}"


class DocumentSkip(models.Model):
    """An annotator skipped a document: it is not served to them again."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="skips")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["document", "user"], name="skip_one_per_document_and_user")]

    def __str__(self) -> str:
        return f"{self.user_id} skipped {self.document_id}"


class Job(models.Model):
    class Kind(models.TextChoices):
        ENCODE = "encode", "Encode documents"
        TRAIN = "train", "Train a model"
        SCORE = "score", "Score the pool and refill the queue"
        ADAPT = "adapt", "Adapt the encoder to the labelled documents"
        ESTIMATE = "estimate", "Estimate labels saved against random"
        AGREEMENT = "agreement", "Compute inter-annotator agreement"

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        RUNNING = "RUNNING", "Running"
        SUCCEEDED = "SUCCEEDED", "Succeeded"
        FAILED = "FAILED", "Failed"
        CANCELLED = "CANCELLED", "Cancelled"

    ACTIVE = (Status.PENDING, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    reason = models.CharField(max_length=100, blank=True, help_text="Why the job was queued.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    mode = models.CharField(
        max_length=11, choices=TrainMode.choices, blank=True, help_text="Training runs: what was asked for."
    )
    schedule = models.ForeignKey(
        "TrainingSchedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries", help_text="The failed run."
    )
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=20, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="Last time the task was sent.")
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # Coalescing: at most one queued or running job of each kind per project.
            models.UniqueConstraint(
                fields=["project", "kind"],
                condition=Q(status__in=["PENDING", "RUNNING"]),
                name="job_one_active_per_project_and_kind",
            ),
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="job_progress_range"),
            models.CheckConstraint(
                condition=Q(status__in=["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]),
                name="job_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["encode", "train", "score", "adapt", "estimate", "agreement"]),
                name="job_kind_valid",
            ),
            models.CheckConstraint(condition=Q(mode__in=["", "auto", "incremental", "full"]), name="job_mode_valid"),
        ]
        indexes = [
            models.Index(fields=["project", "kind", "-id"], name="job_project_kind_idx"),
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"


class SavingsEstimate(models.Model):
    """ "Does active learning pay here?": the labels the project's picks saved (or cost) against random picks,
    estimated on its evaluation set (learner.replay's result, JSON), with what it was computed on."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="savings_estimates")
    created_at = models.DateTimeField(auto_now_add=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The serving version when it was estimated.",
    )
    picks = models.PositiveIntegerField(help_text="Labelled documents the strategy picked.")
    evaluation_documents = models.PositiveIntegerField(help_text="Labelled evaluation documents.")
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "-id"], name="savings_project_idx")]

    def __str__(self) -> str:
        return f"{self.project_id} savings estimate {self.pk} ({self.result.get('verdict', '?')})"


class QueueItem(models.Model):
    """A document selected for labelling, with the score and suggestions of the model version that picked it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="queue_items")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="queue_items")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="queue_items"
    )
    strategy = models.CharField(max_length=30)
    score = models.FloatField()
    # The model's shortlist for the document, best first: the first `suggestions_k` are shown as suggestions, all
    # of them rank label search results for this document.
    suggestions = models.JSONField(default=list, blank=True, help_text="[[label_id, probability], ...] best first")
    # The queue is derived data (re-scoring rebuilds it), so a deleted user's leased items may go with them.
    leased_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "document"],
                condition=Q(model_version__isnull=False),
                name="queue_item_unique_per_version",
            ),
            models.UniqueConstraint(
                fields=["project", "document"],
                condition=Q(model_version__isnull=True),
                name="queue_item_unique_cold_start",
            ),
            models.CheckConstraint(
                condition=Q(leased_to__isnull=True, lease_expires_at__isnull=True)
                | Q(leased_to__isnull=False, lease_expires_at__isnull=False),
                name="queue_item_lease_complete",
            ),
        ]
        indexes = [
            # `next` walks a queue best first and stops at the first free row: (score, id) is its exact order. A
            # version's queue is found by `model_version = X`; the cold-start queue (`IS NULL`, which PostgreSQL
            # does not treat as fixing the column, so the first index cannot give its order) has its own.
            models.Index(fields=["project", "model_version", "-score", "id"], name="queue_version_order_idx"),
            models.Index(
                fields=["project", "-score", "id"],
                condition=Q(model_version__isnull=True),
                name="queue_cold_start_order_idx",
            ),
            models.Index(fields=["leased_to", "lease_expires_at"], name="queue_lease_idx"),
        ]

    def __str__(self) -> str:
        return f"queue {self.document_id} score {self.score:.3f}"


class TrainingSchedule(models.Model):
    """A project's periodic training run, e.g. "full retrain nightly at 02:00". Beat fires it through the
    django-celery-beat PeriodicTask it owns (created, edited and deleted with it by services.schedules)."""

    class Kind(models.TextChoices):
        INTERVAL = "interval", "Every ..."
        DAILY = "daily", "Daily at ..."
        CRON = "cron", "Cron expression"

    class Unit(models.TextChoices):
        SECONDS = "seconds", "seconds"
        MINUTES = "minutes", "minutes"
        HOURS = "hours", "hours"
        DAYS = "days", "days"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="schedules")
    mode = models.CharField(max_length=11, choices=TrainMode.choices, default=TrainMode.FULL)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    every = models.PositiveIntegerField(null=True, blank=True, help_text="Interval schedules: how many units.")
    unit = models.CharField(max_length=7, choices=Unit.choices, blank=True)
    at = models.TimeField(null=True, blank=True, help_text="Daily schedules: the time in the project's time zone.")
    cron = models.CharField(max_length=100, blank=True, help_text='Cron schedules: "minute hour day month weekday".')
    enabled = models.BooleanField(default=True)
    skip_unchanged = models.BooleanField(
        default=True, help_text="Skip the run when no annotation arrived since the newest version of this mode."
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_fired_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(
        max_length=500, blank=True, help_text="Why beat could not load the schedule (switched off); empty when fine."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["interval", "daily", "cron"]), name="schedule_kind_valid"),
            models.CheckConstraint(condition=Q(mode__in=["auto", "incremental", "full"]), name="schedule_mode_valid"),
            models.CheckConstraint(
                condition=~Q(kind="interval") | (Q(every__gte=1) & ~Q(unit="")), name="schedule_interval_complete"
            ),
            models.CheckConstraint(condition=~Q(kind="daily") | Q(at__isnull=False), name="schedule_daily_complete"),
            models.CheckConstraint(condition=~Q(kind="cron") | ~Q(cron=""), name="schedule_cron_complete"),
        ]

    def __str__(self) -> str:
        return f"schedule {self.pk} of project {self.project_id} ({self.mode}, {self.kind})"


class WorkerHeartbeat(models.Model):
    """A Celery worker process's sign of life, written every few seconds by a thread in the worker (webapp.celery):
    /healthz and the manager's page read it."""

    hostname = models.CharField(max_length=200, unique=True, help_text="The Celery node name, e.g. gpu@host1.")
    queues = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=40, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return f"worker {self.hostname}"


class ApiToken(models.Model):
    """A revocable API token with an expiry. Only the SHA-256 digest of the key is stored: the key itself is shown
    once, when the token is created (services/tokens.py)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the key, hex.")
    prefix = models.CharField(max_length=8, help_text="The key's first characters, to tell tokens apart.")
    name = models.CharField(max_length=100, blank=True, help_text="What the token is for, e.g. a script's name.")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")), name="api_token_expires_later")
        ]

    def __str__(self) -> str:
        return f"token {self.prefix}… of {self.user}"


class Webhook(models.Model):
    """A URL a manager registered to hear about a project's events (services.webhooks): each delivery is a POST of
    JSON, signed with HMAC-SHA256 over the timestamp and the body with the hook's own secret."""

    class Event(models.TextChoices):
        ANSWER_CREATED = "answer.created", "An answer was given"
        ANSWER_UPDATED = "answer.updated", "An answer was changed"
        MODEL_PUBLISHED = "model.published", "A model version was published"
        JOB_FAILED = "job.failed", "A job failed"
        BUDGET_THRESHOLD = "budget.threshold", "A budget threshold was reached"
        PROJECT_EXPORTED = "project.exported", "The project was exported"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, help_text="Event names; see Webhook.Event.")
    # The HMAC key: shown to managers (they configure their receiver with it), never to anyone else.
    secret = models.CharField(max_length=64)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"webhook {self.pk} of project {self.project_id}"


class WebhookDelivery(models.Model):
    """One event sent (or to be sent) to one hook: the delivery log, with every attempt's outcome."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (gave up)"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["webhook", "-id"], name="webhook_delivery_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "delivered", "failed"]), name="webhook_delivery_status_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} to webhook {self.webhook_id} ({self.status})"
