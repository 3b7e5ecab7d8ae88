"""Reads: permission look-ups, search, statistics, export, and what the jobs read. No writes here, and no import of
`annotator.services`: one module per topic, mirroring the services; every read is importable from here."""

from .agreement import (
    AGREEMENT_MAX_LIMIT,
    AgreementData,
    agreement_counts,
    agreement_data,
    agreement_fingerprint,
    agreement_latest,
    agreement_overview,
)
from .audit import audit_entries
from .browse import BrowseFilters, documents_browse
from .budgets import (
    Budget,
    annotations_new_since,
    budget_for,
    budget_overview,
    evaluation_budget_check,
    member_quota_left,
    member_spent,
    member_taken,
)
from .curves import (
    CURVE_METRIC,
    STOP_AGREEMENT,
    STOP_WINDOW,
    curve_points,
    evaluation_progress,
    learning_curve,
    points_fingerprint,
)
from .export import export_rows
from .jobs import job_summary, recent_jobs, worker_health
from .labels import (
    FREQUENCY_BUCKETS,
    LabelHit,
    annotation_detail,
    annotator_stats,
    document_label_scores,
    label_counts,
    label_coverage,
    label_search,
    label_search_semantic,
    label_search_texts,
    labels_have_hierarchy,
    labels_on_screen,
)
from .preannotations import (
    DECISION_SCORE,
    MODEL_BETTER_MIN_DOCUMENTS,
    PRETICK_MIN_DOCUMENTS,
    preannotation_suggestions,
    preannotations_overview,
    source_beaten,
    source_pretick_rule,
)
from .projects import activities, project_get_for, project_stats, projects_for_user, training_schedules
from .queue import (
    effective_threshold,
    item_suggestions,
    item_suggestions_served,
    lease_free_filter,
    lease_held_by_other,
    live_lease_filter,
    pretick_rule,
    suggestions_named,
    unlabelled_document_ids,
)
from .registry import (
    adaptation_next_at,
    adaptation_summary,
    encoder_number,
    encoder_versions,
    metric_name,
    model_card,
    model_version_summary,
    newest_encoder_path,
    serving_version,
    strategy_in_use,
    version_compare,
    version_get,
)
from .review import review_item, review_next, review_queue
from .savings import NOT_PICKED, SAVINGS_JOB_FIELDS, savings_latest, savings_overview, savings_pick_ids
from .taxonomy import label_detail, label_tree, labels_taxonomy, taxonomy_labels
from .tokens import token_digest, token_for_key, tokens_for_user
from .training import (
    TEXT_CHUNK,
    column_labels,
    document_texts,
    encoder_unseen,
    evaluation_labels,
    label_texts,
    resolved_answers,
    training_label_counts,
    training_snapshot,
)
