"""Submitting and skipping documents, and the label counts they change."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, Floor

from ..exceptions import ProjectError
from ..models import (
    Annotation,
    AnnotationLabel,
    AuditEntry,
    Document,
    DocumentSkip,
    Label,
    ModelVersion,
    Project,
    QueueItem,
    SuggestionDecision,
)
from ..selectors import item_suggestions, lease_held_by_other
from .audit import audit_record
from .budgets import budget_alerts_check, budget_check, quota_check
from .overlap import jaccard, pairwise_agreement

MAX_SECONDS = 24 * 3600


def _document_in_project(project: Project, document_id: object) -> Document:
    if isinstance(document_id, bool) or not isinstance(document_id, int | str) or not str(document_id).isdigit():
        raise ProjectError("document must be the numeric id returned by `next`")
    document = (
        Document.objects.filter(pk=int(document_id)).only("id", "project_id", "is_evaluation", "external_id").first()
    )
    if document is None or document.project_id != project.pk:
        raise ProjectError(f"document {document_id} is not in project {project.pk}")
    return document


def _labels_by_name(project: Project, names: Sequence[object], field: str = "labels") -> list[Label]:
    if not isinstance(names, list | tuple) or not all(isinstance(name, str) for name in names):
        if field == "labels":
            raise ProjectError("labels must be a list of label names (an empty list means none apply)")
        raise ProjectError(f"{field} must be a list of label names")
    wanted = list(dict.fromkeys(name.strip() for name in names))
    found = {label.name: label for label in Label.objects.filter(project=project, name__in=wanted)}
    unknown = [name for name in wanted if name not in found]
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:20])
        where = "" if field == "labels" else f" in {field}"
        raise ProjectError(f"unknown label(s){where} for this project: {shown}")
    return [found[name] for name in wanted]


def labels_recount(*, label_ids: Sequence[int]) -> None:
    """Refreshes `Label.frequency` (positives among annotations) of the given labels."""
    positives = AnnotationLabel.objects.filter(label=OuterRef("pk")).order_by().values("label").annotate(n=Count("id"))
    ids = sorted(set(label_ids))
    for start in range(0, len(ids), 2000):
        Label.objects.filter(pk__in=ids[start : start + 2000]).update(
            frequency=Coalesce(Subquery(positives.values("n")), 0)
        )


def _shown_suggestions(project: Project, served: QueueItem | None, annotation: Annotation) -> list[dict]:
    """The suggestions the expert saw: from the queue item the document was served from, else (a revised answer:
    the item left the queue with the first answer) the ones recorded with the first answer. Each keeps its `source`
    when it has one ("model", or an external source's name: `selectors.preannotations`)."""
    if served is not None:
        return [
            {"label": s["label"], "score": s["score"], "preselected": s["preselected"]}
            | ({"source": s["source"]} if "source" in s else {})
            for s in item_suggestions(project=project, item=served)
        ]
    return list(annotation.suggestions or [])


def _first_answer_allowed(
    project: Project, user, document: Document, items: list[QueueItem], *, served_to_user: bool
) -> None:
    """The rules of a user's first answer to a document (a revision of their own answer is always allowed; see
    docs/operations.md, "Answers, budgets and quotas"); `items`: the document's queue rows, `served_to_user`:
    whether one is leased to the user (live or expired). Raises ProjectError (409) when someone else holds the
    document, when it belongs to the evaluation set and was never served to the user (the set is labelled blind, in
    the order `next` serves it). The budget and quota are checked last (`budget_check`), after the answer is
    written."""
    if any(lease_held_by_other(item, user) for item in items):
        raise ProjectError(f"document {document.pk} is being labelled by someone else (leased to them)", status=409)
    if document.is_evaluation and not served_to_user:
        raise ProjectError(
            f"document {document.pk} belongs to the evaluation set, which is labelled blind: answer it when `next` "
            "serves it to you",
            status=409,
        )


@transaction.atomic
def annotation_submit(
    *,
    project: Project,
    user,
    document_id: object,
    labels: Sequence[object],
    rejected: Sequence[object] | None = None,
    seconds_spent: object = None,
    source: str = Annotation.Source.API,
) -> Annotation:
    """Saves the user's answer for a document (replacing their earlier one) and may queue a training run.

    An empty label list is a valid answer ("none apply"). `rejected` names suggestions the expert explicitly
    rejected (a suggestion can only be rejected if it was shown, and not at the same time chosen). Provenance (model
    version, strategy, the suggestions shown and what was done with each) comes from the queue item the document
    was served from. The answer is saved even when the lease expired.
    """
    document = _document_in_project(project, document_id)
    chosen = _labels_by_name(project, labels)
    refused = _labels_by_name(project, list(rejected or []), field="rejected")
    both = sorted({label.name for label in chosen} & {label.name for label in refused})
    if both:
        raise ProjectError(f"a label cannot be both chosen and rejected: {', '.join(repr(n) for n in both[:20])}")
    if seconds_spent is not None:
        if isinstance(seconds_spent, bool) or not isinstance(seconds_spent, int | float):
            raise ProjectError("seconds_spent must be a number of seconds")
        if not 0 <= float(seconds_spent) <= MAX_SECONDS:
            raise ProjectError(f"seconds_spent must be between 0 and {MAX_SECONDS}")
    if source not in Annotation.Source.values or source == Annotation.Source.IMPORT:
        raise ProjectError("source must be 'ui' or 'api'")

    items = list(
        QueueItem.objects.filter(project=project, document=document)
        .select_related("model_version")
        .order_by("-created_at")
    )  # the document's queue rows: one per version that queued it, at most a few
    mine = next((item for item in items if item.leased_to_id == user.pk), None)
    served = mine or (items[0] if items else None)
    annotation = Annotation.objects.select_for_update().filter(document=document, annotator=user).first()
    first_answer = annotation is None
    answered_before = False  # by someone else: the project's budget does not grow with this answer
    if first_answer:
        _first_answer_allowed(project, user, document, items, served_to_user=mine is not None)
        answered_before = (
            project.budget_mode == Project.BudgetMode.HARD
            and project.label_budget is not None
            and Annotation.objects.filter(document=document).exclude(source=Annotation.Source.IMPORT).exists()
        )
    previous_version_id = annotation.model_version_id if annotation is not None else None
    if annotation is None:
        annotation = Annotation(document=document, project=project, annotator=user)
    shown = _shown_suggestions(project, served, annotation)
    shown_names = {s["label"] for s in shown}
    not_shown = [label.name for label in refused if label.name not in shown_names]
    if not_shown:
        raise ProjectError(
            "only suggested labels can be rejected; not suggested for this document: "
            + ", ".join(repr(name) for name in not_shown[:20])
        )
    previous_label_ids = (
        list(AnnotationLabel.objects.filter(annotation_id=annotation.pk).values_list("label_id", flat=True))
        if annotation.pk
        else []
    )
    preticked = {s["label"] for s in shown if s.get("preselected")}
    annotation.model_agreement = jaccard(preticked, {label.name for label in chosen}) if shown else None

    annotation.source = source
    if seconds_spent is not None:  # a revised answer adds the time spent revising it
        annotation.seconds_spent = (annotation.seconds_spent or 0.0) + float(seconds_spent)
    if served is not None:
        annotation.model_version = served.model_version
        annotation.strategy = served.strategy
    annotation.suggestions = shown
    annotation.save()
    AnnotationLabel.objects.filter(annotation=annotation).delete()
    AnnotationLabel.objects.bulk_create([AnnotationLabel(annotation=annotation, label=label) for label in chosen])
    _decisions_record(project, annotation, shown, chosen={x.name for x in chosen}, refused={x.name for x in refused})
    for version_id in sorted({previous_version_id, annotation.model_version_id} - {None}):
        version_decisions_refresh(version_id=version_id)
    labels_recount(label_ids=previous_label_ids + [label.pk for label in chosen])
    _answer_audit(project, user, document, annotation, previous_label_ids, chosen, first_answer)
    from .webhooks import webhook_emit  # sent after the commit; nothing when the answer rolls back (a 409)

    webhook_emit(
        project=project,
        event="answer.created" if first_answer else "answer.updated",
        payload={
            "document": {"id": document.pk, "external_id": document.external_id},
            "annotator": user.username,
            "labels": sorted(label.name for label in chosen),
            "source": annotation.source,
        },
    )
    if first_answer:
        Document.objects.filter(pk=document.pk).update(answers_count=F("answers_count") + 1)
    answers, wanted = Document.objects.filter(pk=document.pk).values_list("answers_count", "answers_wanted").get()
    if answers >= 2:
        document_agreement_refresh(document_id=document.pk)
        from .agreement import agreement_maybe_request

        agreement_maybe_request(project=project)  # the inter-annotator agreement report (coalesced, rate-limited)
    if answers >= wanted:
        # The document has all its answers: it leaves the queue (all versions).
        QueueItem.objects.filter(project=project, document=document).delete()
    else:
        # An overlap document waiting for further answers keeps its queue rows (and their suggestions) for the next
        # expert; this one's lease ends.
        QueueItem.objects.filter(project=project, document=document, leased_to=user).update(
            leased_to=None, lease_expires_at=None
        )
    DocumentSkip.objects.filter(document=document, user=user).delete()  # any skip by this user is void

    from .training import training_maybe_request

    training_maybe_request(project=project)
    if first_answer:
        # Last, under the budget lock until the commit: a refusal rolls the whole answer back (a 409).
        refusal, budget = budget_check(project=project, user=user, leased=False, new_document=not answered_before)
        if refusal is not None:
            raise ProjectError(refusal[1], status=409)
        budget_alerts_check(project=project, spent=budget.spent if budget is not None else None)
        quota_check(project=project, user=user)
    return annotation


def _answer_audit(
    project: Project,
    user,
    document: Document,
    annotation: Annotation,
    previous_label_ids: list[int],
    chosen: list[Label],
    first_answer: bool,
) -> None:
    """The audit row of an answer: who, which document, the labels before (none for a first answer) and after."""
    before = None
    if not first_answer:
        before = {"labels": sorted(Label.objects.filter(pk__in=previous_label_ids).values_list("name", flat=True))}
    audit_record(
        project=project,
        user=user,
        target=AuditEntry.Target.ANSWER,
        action=AuditEntry.Action.CREATE if first_answer else AuditEntry.Action.UPDATE,
        object_ref=f"document {document.pk}",
        before=before,
        after={"labels": sorted(label.name for label in chosen), "source": annotation.source},
    )


def document_agreement_refresh(*, document_id: int) -> float | None:
    """Recomputes Document.agreement: the mean pairwise Jaccard agreement of its answers' label sets (None below
    two answers). A few rows per document: the answers and their labels."""
    answers: dict[int, set[int]] = {
        pk: set() for pk in Annotation.objects.filter(document_id=document_id).values_list("id", flat=True)
    }
    for annotation_id, label_id in AnnotationLabel.objects.filter(annotation_id__in=list(answers)).values_list(
        "annotation_id", "label_id"
    ):
        answers[annotation_id].add(label_id)
    agreement = pairwise_agreement(list(answers.values()))
    Document.objects.filter(pk=document_id).update(agreement=agreement)
    return agreement


def _decisions_record(
    project: Project, annotation: Annotation, shown: list[dict], *, chosen: set[str], refused: set[str]
) -> None:
    ids = dict(Label.objects.filter(project=project, name__in=[s["label"] for s in shown]).values_list("name", "id"))
    SuggestionDecision.objects.filter(annotation=annotation).delete()
    rows = []
    for rank, suggestion in enumerate(shown, start=1):
        name = suggestion["label"]
        if name not in ids:  # a label renamed or removed since it was shown
            continue
        decision = (
            SuggestionDecision.Decision.ACCEPTED
            if name in chosen
            else SuggestionDecision.Decision.REJECTED
            if name in refused
            else SuggestionDecision.Decision.NOT_CHOSEN
        )
        rows.append(
            SuggestionDecision(
                annotation=annotation,
                label_id=ids[name],
                rank=rank,
                score=float(suggestion["score"]),
                preselected=bool(suggestion.get("preselected", False)),
                decision=decision,
            )
        )
    SuggestionDecision.objects.bulk_create(rows)
    accepted = sum(row.decision == SuggestionDecision.Decision.ACCEPTED for row in rows)
    Annotation.objects.filter(pk=annotation.pk).update(suggestions_shown=len(rows), suggestions_accepted=accepted)


def version_decisions_refresh(*, version_id: int) -> None:
    """Recounts what experts did with a model version's suggestions (`ModelVersion.decision_counts`, read by
    `selectors.pretick_rule`): one aggregate query over score bins and one update (a single write: no transaction
    of its own; `annotation_submit` calls it in its). Accepted suggestions were right pre-ticks; rejected and not
    chosen ones wrong. Two answers committed at the same moment may each miss the other's decisions; the next
    answer counts them. Decisions on an external source's suggestions (pre-annotations shown instead of the model's:
    the answer's suggestions carry that source) say nothing about this version and are left out."""
    own = Q(annotation__suggestions__0__source__isnull=True) | Q(annotation__suggestions__0__source="model")
    rows = (
        SuggestionDecision.objects.filter(own, annotation__model_version_id=version_id)
        .annotate(bin=Floor(F("score") * 100 + 0.0001))
        .values("bin")
        .annotate(shown=Count("id"), accepted=Count("id", filter=Q(decision=SuggestionDecision.Decision.ACCEPTED)))
        .order_by("bin")
    )
    bins = [[min(max(int(row["bin"]), 0), 100), row["shown"], row["accepted"]] for row in rows]
    ModelVersion.objects.filter(pk=version_id).update(
        decision_counts={"decisions": sum(shown for _, shown, _ in bins), "bins": bins}
    )


@transaction.atomic
def document_skip(*, project: Project, user, document_id: object) -> None:
    """The user passes on a document: their lease ends and it is not served to them again."""
    document = _document_in_project(project, document_id)
    DocumentSkip.objects.get_or_create(document=document, user=user)
    QueueItem.objects.filter(project=project, document=document, leased_to=user).update(
        leased_to=None, lease_expires_at=None
    )
