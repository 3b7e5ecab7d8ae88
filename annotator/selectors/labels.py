"""Reads about labels: search, scores per document, counts and coverage, annotators' statistics."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Case, Count, Exists, IntegerField, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Length

from .. import ml
from ..exceptions import NotFound
from ..models import (
    Annotation,
    AnnotationLabel,
    Label,
    LabelAlias,
    Project,
    QueueItem,
    SuggestionDecision,
)
from ..text import compact, fold, query_variants, query_words


@dataclass(frozen=True)
class LabelHit:
    id: int
    name: str
    description: str
    frequency: int
    score: float | None  # the model's probability for the document searched for, when it is in its shortlist
    # How the label was found: "name", "alias" (then `alias` is the alternative name that matched) or "semantic"
    # (its name, alternative names or description are close in meaning to the query; after every textual match).
    match: str = "name"
    alias: str = ""


def document_label_scores(*, project: Project, user, document_id: int) -> dict[int, float]:
    """The model's shortlist {label_id: probability} for a document, as served to this user (else as served to
    anyone, else as shown with the user's own answer); empty when there is none."""
    item = (
        QueueItem.objects.filter(project=project, document_id=document_id)
        .order_by(
            Case(When(leased_to=user, then=Value(0)), default=Value(1), output_field=IntegerField()), "-created_at"
        )
        .values_list("suggestions", flat=True)
        .first()
    )
    if item:
        return {int(label_id): float(p) for label_id, p in item}
    shown = (
        Annotation.objects.filter(document_id=document_id, document__project=project, annotator=user)
        .values_list("suggestions", flat=True)
        .first()
    )
    if not shown:
        return {}
    ids = dict(Label.objects.filter(project=project, name__in=[s["label"] for s in shown]).values_list("name", "id"))
    return {ids[s["label"]]: float(s["score"]) for s in shown if s["label"] in ids}


# Textual tiers, best first: the whole name (any spelling of the query: `text.query_variants`); the name starts with
# the query; a word of the name starts with it; every query word occurs somewhere in the name.
TIER_EXACT, TIER_PREFIX, TIER_WORD_PREFIX, TIER_OTHER = range(4)
SEMANTIC_MIN_SIMILARITY = 0.45  # cosine (MiniLM): unrelated short English words reach 0.4 ("car" and "banana" 0.39)
COMPACT_MIN = 3  # a query's compact key this long (or longer) also matches names joined or spelled otherwise
SPARE = 10  # rows ranked past `limit`, so that a few deprecated labels among the best cost no second query
WORD_STARTS = (" ", "-", "(", "/")  # a word of a name starts after one of these
_ROW = ("id", "name", "description", "frequency")


def _hit(row: tuple[Any, ...], score: float | None, *, match: str = "name", alias: str = "") -> LabelHit:
    """A hit from a row of `_ROW`."""
    pk, name, description, frequency = row
    return LabelHit(pk, name, description, frequency, score=score, match=match, alias=alias)


def _matching(queryset: QuerySet, query: str) -> QuerySet:
    """`queryset` (of Label or LabelAlias) narrowed to the rows whose `search_key` matches `query`, each annotated
    with its `tier`. Every condition is a LIKE or an equality on the stored folded key, one per spelling of the
    query (usually one to three), so a keystroke costs what the substring search did before."""
    spellings = query_variants(query)
    match = Q()
    for variant in query_variants(query, joiners=False):
        every_word = Q()
        for word in query_words(variant):
            every_word &= Q(search_key__contains=word)
        match |= every_word
    exact, prefix, word_prefix = Q(search_key__in=spellings), Q(), Q()
    for variant in spellings:
        prefix |= Q(search_key__startswith=variant)
        for start in WORD_STARTS:
            word_prefix |= Q(search_key__contains=start + variant)
    squeezed = compact(query)
    if len(squeezed) >= COMPACT_MIN:
        # However the name joins its words or spells its umlauts: "nonprofit" finds "Non-Profit-Organisation".
        match |= Q(search_compact__contains=squeezed)
        exact |= Q(search_compact=squeezed)
        prefix |= Q(search_compact__startswith=squeezed)
    return queryset.filter(match).annotate(
        tier=Case(
            When(exact, then=Value(TIER_EXACT)),
            When(prefix, then=Value(TIER_PREFIX)),
            When(word_prefix, then=Value(TIER_WORD_PREFIX)),
            default=Value(TIER_OTHER),
            output_field=IntegerField(),
        )
    )


def label_search(
    *,
    project: Project,
    query: str,
    limit: int = 20,
    scores: dict[int, float] | None = None,
    semantic: bool = False,
) -> list[LabelHit]:
    """The labels an expert means by `query`, best first; deprecated labels never.

        Matching ignores case and diacritics, German transliteration ("kuenstliche" = "künstliche", "müller" finds
    "Mueller"), the hyphens and spaces of the query ("non-profit" and "nonprofit" find "Nonprofit-Organisation",
    "machine learning" finds "Machine-Learning") and of the name (its compact key, without separators and with
    umlauts as their letter: "nonprofit" finds "Non-Profit-Organisation", "muller" finds "Mueller"), and reads
    alternative names (`LabelAlias`: the hit names the alias that matched). Every query word must occur in the name.

    Ranking: by textual tier (exact name or alias, then the name starts with the query, then a word of it does,
        then any other match); within a tier the document's model score (`scores`: labels scored first, best first),
        then frequency, then the shorter name. A score or a frequency never lifts a label above a better tier:
        "approval" finds "approval" before the scored "disapproval".

        Empty query: the scored labels best first, then the most frequent ones.

        `semantic`: when the textual matches do not fill `limit`, the rest are the labels closest in meaning (names,
        alternative names and descriptions embedded by the encode job; only the query is embedded here, which loads
        the encoder in this process), marked `match="semantic"`. Off by default: the textual search stays within a
        few indexed queries with a LIMIT each and never loads the label set or the encoder.
    """
    limit = max(1, min(int(limit), 100))
    scores = scores or {}
    labels = Label.objects.filter(project=project, deprecated_at__isnull=True)
    if not fold(query or ""):
        return _frequent(labels, limit, scores)
    found: dict[int, tuple[int, tuple[Any, ...], str]] = {}  # label id -> (tier, row, alias)

    def keep(tier: int, row: tuple[Any, ...], alias: str = "") -> None:
        if row[0] not in found or tier < found[row[0]][0]:
            found[row[0]] = (tier, row, alias)

    # One query ranks the matches on the columns of the index (project, frequency, search_key) alone, so the
    # database scans the index and reads the rows of the window only (to show them and to drop deprecated ones).
    # The window holds every label of the tiers before the limit-th hit's, all the labels the model scored in that
    # tier (they come first in it) and the best others, so sorting it by score in Python gives the exact order.
    window = limit + len(scores) + SPARE
    unscored = (
        Case(When(pk__in=list(scores), then=Value(0)), default=Value(1), output_field=IntegerField())
        if scores
        else Value(1)
    )
    ordered = (
        _matching(Label.objects.filter(project=project), query)
        .annotate(unscored=unscored)
        .order_by("tier", "unscored", "-frequency", Length("search_key"), "search_key", "id")
    )
    aliases = LabelAlias.objects.filter(project=project)
    # Whether the project has alternative names at all rides along (an uncorrelated EXISTS, evaluated once).
    ranked = list(ordered.annotate(any_alias=Exists(aliases)).values_list("id", "tier", "any_alias")[:window])
    rows = {row[0]: row for row in labels.filter(pk__in=[pk for pk, _, _ in ranked]).values_list(*_ROW)}
    if len(rows) < min(limit, len(ranked)) and len(ranked) == window:
        # More deprecated labels than spare among the best: rank again without them (reads every matching row).
        ranked = list(ordered.filter(deprecated_at__isnull=True).values_list("id", "tier", Value(True))[:window])
        rows = {row[0]: row for row in labels.filter(pk__in=[pk for pk, _, _ in ranked]).values_list(*_ROW)}
    for pk, tier, _ in ranked:
        if pk in rows:
            keep(tier, rows[pk])
    # Alternative names: the best 3 x limit (no join: the labels' rows, read below, leave the deprecated out).
    alias_hits: list[tuple[int, str, int]] = []
    has_aliases = bool(ranked[0][2]) if ranked else aliases.exists()
    if has_aliases:
        ranked_aliases = _matching(aliases, query).order_by("tier", Length("search_key"), "id")
        alias_hits = list(ranked_aliases.values_list("label_id", "name", "tier")[: 3 * limit])
    wanted = {label_id for label_id, _, tier in alias_hits if label_id not in found or tier < found[label_id][0]}
    rows = {row[0]: row for row in labels.filter(pk__in=wanted).values_list(*_ROW)} if wanted else {}
    for label_id, alias, tier in alias_hits:
        if label_id in rows:
            keep(tier, rows[label_id], alias)

    def rank(item: tuple[int, tuple[Any, ...], str]) -> tuple[Any, ...]:
        tier, (pk, name, _, frequency), _ = item
        key = fold(name)
        return (tier, -scores.get(pk, -1.0), -frequency, len(key), key, pk)

    hits = [
        _hit(row, scores.get(row[0]), match="alias" if alias else "name", alias=alias)
        for _, row, alias in sorted(found.values(), key=rank)[:limit]
    ]
    if semantic and len(hits) < limit:
        hits += label_search_semantic(
            project=project, query=query, limit=limit - len(hits), scores=scores, exclude={h.id for h in hits}
        )
    return hits


def _frequent(labels: QuerySet, limit: int, scores: dict[int, float]) -> list[LabelHit]:
    """No query: the labels the model scored for the document, best first, then the most frequent ones."""
    hits: list[LabelHit] = []
    if scores:
        scored = list(labels.filter(pk__in=list(scores)).values_list(*_ROW))
        scored.sort(key=lambda row: (-scores[row[0]], row[1]))
        hits = [_hit(row, scores[row[0]]) for row in scored[:limit]]
    if len(hits) >= limit:
        return hits
    rest = labels.exclude(pk__in=[hit.id for hit in hits]) if hits else labels
    rest = rest.order_by("-frequency", "search_key", "id")
    return hits + [_hit(row, None) for row in rest.values_list(*_ROW)[: limit - len(hits)]]


def label_search_semantic(
    *,
    project: Project,
    query: str,
    limit: int = 20,
    scores: dict[int, float] | None = None,
    exclude: set[int] | frozenset[int] = frozenset(),
) -> list[LabelHit]:
    """The labels closest in meaning to `query` (cosine of the encoder's vectors of the query and of each label's
    name + description and alternative names, at least SEMANTIC_MIN_SIMILARITY), best first, marked "semantic";
    `exclude` (the textual hits) and deprecated labels left out. Empty when the project's label vectors were not
    built yet (the encode job builds them: services.label_vectors)."""
    if not fold(query or ""):
        return []
    scores = scores or {}
    nearest = ml.label_index_search(project.pk, query, k=limit + len(exclude) + 10)
    nearest = [(pk, sim) for pk, sim in nearest if pk not in exclude and sim >= SEMANTIC_MIN_SIMILARITY]
    if not nearest:
        return []
    rows = {
        row[0]: row
        for row in Label.objects.filter(
            project=project, deprecated_at__isnull=True, pk__in=[pk for pk, _ in nearest]
        ).values_list(*_ROW)
    }
    return [_hit(rows[pk], scores.get(pk), match="semantic") for pk, _ in nearest if pk in rows][:limit]


def label_search_texts(project_id: int) -> list[tuple[int, str]]:
    """(label id, text) for the semantic index of the project's labels that are offered (not deprecated): each
    label's name + description (`ml.label_texts`, what the label-name prior embeds too) and each alternative name."""
    labels = Label.objects.filter(project_id=project_id, deprecated_at__isnull=True)
    rows = list(labels.order_by("id").values_list("id", "name", "description"))
    texts = ml.label_texts([(name, description) for _, name, description in rows])
    out = [(pk, text) for (pk, _, _), text in zip(rows, texts, strict=True)]
    aliases = LabelAlias.objects.filter(project_id=project_id, label__deprecated_at__isnull=True)
    out += list(aliases.order_by("label_id", "id").values_list("label_id", "name"))
    return out


def labels_on_screen(*, project: Project, limit: int) -> list[dict[str, Any]]:
    """The labels in use (deprecated ones left out) by name, as {id, name, description}, when there are at most
    `limit` of them (the annotate page shows them all as toggles); else, or with `limit` 0, none."""
    if limit <= 0:
        return []
    in_use = Label.objects.filter(project=project, deprecated_at__isnull=True).order_by("name")
    rows = list(in_use.values("id", "name", "description")[: limit + 1])
    return rows if len(rows) <= limit else []


def labels_have_hierarchy(*, project: Project) -> bool:
    """Whether any label in use has a broader label (the annotate page then offers to browse the hierarchy)."""
    return Label.objects.filter(project=project, deprecated_at__isnull=True, parent__isnull=False).exists()


def annotation_detail(*, project: Project, user, document_id: int) -> dict[str, Any]:
    """The user's own answer for a document, to revise it: the document, the chosen labels and what was done with
    each suggestion shown."""
    annotation = (
        Annotation.objects.filter(document_id=document_id, document__project=project, annotator=user)
        .select_related("document", "model_version")
        .first()
    )
    if annotation is None:
        raise NotFound(f"you have no answer for document {document_id} in this project")
    decisions = dict(SuggestionDecision.objects.filter(annotation=annotation).values_list("label__name", "decision"))
    descriptions = dict(
        Label.objects.filter(project=project, name__in=[s["label"] for s in annotation.suggestions]).values_list(
            "name", "description"
        )
    )
    document = annotation.document
    return {
        "document": {
            "id": document.pk,
            "external_id": document.external_id,
            "text": document.text,
            "metadata": document.metadata,
        },
        "labels": sorted(annotation.labels.values_list("name", flat=True)),
        "suggestions": [
            {
                "label": s["label"],
                "description": descriptions.get(s["label"], ""),
                "score": s["score"],
                "preselected": bool(s.get("preselected", False)),
                "decision": decisions.get(s["label"], SuggestionDecision.Decision.NOT_CHOSEN),
            }
            for s in annotation.suggestions
        ],
        "strategy": annotation.strategy,
        "model_version": annotation.model_version.number if annotation.model_version_id else None,
        "seconds_spent": annotation.seconds_spent,
        "updated_at": annotation.updated_at,
    }


def label_counts(*, project: Project) -> dict[int, int]:
    """Positive count per label id over the project's annotations."""
    return dict(
        AnnotationLabel.objects.filter(label__project=project)
        .values("label_id")
        .annotate(n=Count("id"))
        .values_list("label_id", "n")
    )


FREQUENCY_BUCKETS = [(0, 0), (1, 1), (2, 4), (5, 9), (10, 49), (50, 99), (100, None)]


def _bucket_name(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}-{high}"


def _in_range(queryset: QuerySet, field: str, date_from: date | None, date_to: date | None) -> QuerySet:
    if date_from is not None:
        queryset = queryset.filter(**{f"{field}__date__gte": date_from})
    if date_to is not None:
        queryset = queryset.filter(**{f"{field}__date__lte": date_to})
    return queryset


def label_coverage(
    *,
    project: Project,
    query: str = "",
    max_positives: int | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """Positives per label (answers in the date range, or all of them), how many labels have none or fewer than 5,
    the frequency distribution, and a page of labels matching `query` with at most `max_positives`, rarest first.

    Without a date range the counts are `Label.frequency` (kept current on every answer): one aggregate and one
    sorted page. With one, a single grouped count over the answers in range, and the rest in Python (41,218 labels
    are a few milliseconds of sorting)."""
    limit = max(1, min(int(limit), 500))
    labels = Label.objects.filter(project=project)
    matching = labels
    for word in fold(query or "").split():
        matching = matching.filter(search_key__contains=word)
    if date_from is None and date_to is None:
        buckets = {}
        for index, (low, high) in enumerate(FREQUENCY_BUCKETS):
            condition = Q(frequency__gte=low) if high is None else Q(frequency__gte=low, frequency__lte=high)
            buckets[f"b{index}"] = Count("id", filter=condition)
        counts = labels.aggregate(total=Count("id"), **buckets)
        distribution = [
            {"bucket": _bucket_name(low, high), "labels": counts[f"b{index}"]}
            for index, (low, high) in enumerate(FREQUENCY_BUCKETS)
        ]
        if max_positives is not None:
            matching = matching.filter(frequency__lte=max_positives)
        total = matching.count()
        page = [
            {"id": pk, "name": name, "positives": positives}
            for pk, name, positives in matching.order_by("frequency", "search_key", "id").values_list(
                "id", "name", "frequency"
            )[offset : offset + limit]
        ]
        n_labels = counts["total"]
    else:
        in_range = _in_range(
            AnnotationLabel.objects.filter(annotation__project=project), "annotation__updated_at", date_from, date_to
        )
        positives = dict(in_range.values("label_id").annotate(n=Count("id")).values_list("label_id", "n"))
        n_labels = labels.count()
        distribution = []
        for low, high in FREQUENCY_BUCKETS:
            inside = sum(1 for v in positives.values() if v >= low and (high is None or v <= high))
            distribution.append(
                {"bucket": _bucket_name(low, high), "labels": n_labels - len(positives) if low == 0 else inside}
            )
        ranked = sorted((positives.get(pk, 0), key, pk) for pk, key in matching.values_list("id", "search_key"))
        if max_positives is not None:
            ranked = [row for row in ranked if row[0] <= max_positives]
        total = len(ranked)
        window = ranked[offset : offset + limit]
        names = dict(Label.objects.filter(pk__in=[pk for _, _, pk in window]).values_list("id", "name"))
        page = [{"id": pk, "name": names[pk], "positives": n} for n, _, pk in window]
    return {
        "labels": n_labels,
        "zero": distribution[0]["labels"],
        "under_5": sum(d["labels"] for d in distribution[:3]),
        "distribution": distribution,
        "matching": total,
        "items": page,
    }


def annotator_stats(*, project: Project, date_from: date | None = None, date_to: date | None = None) -> list[dict]:
    """Per annotator over the date range (answers by their last change): documents, documents per hour of labelling
    time, median seconds per document, and the share of the suggestions shown that they accepted. Sums in SQL;
    only the seconds (one number per answer, no join) come back for the medians."""
    answers = _in_range(
        Annotation.objects.filter(project=project).exclude(source=Annotation.Source.IMPORT),
        "updated_at",
        date_from,
        date_to,
    )
    totals = {
        row["annotator_id"]: row
        for row in answers.values("annotator_id").annotate(
            documents=Count("id"),
            shown=Sum("suggestions_shown"),
            accepted=Sum("suggestions_accepted"),
        )
    }
    seconds: dict[int, list[float]] = {}
    for user_id, spent in answers.filter(seconds_spent__isnull=False).values_list("annotator_id", "seconds_spent"):
        seconds.setdefault(user_id, []).append(spent)
    names = dict(get_user_model().objects.filter(pk__in=list(totals)).values_list("id", "username"))
    rows = []
    for user_id in sorted(totals, key=lambda u: names.get(u, "")):
        timed = seconds.get(user_id, [])
        total_seconds = sum(timed)
        shown, accepted = totals[user_id]["shown"] or 0, totals[user_id]["accepted"] or 0
        rows.append(
            {
                "username": names.get(user_id, ""),
                "documents": totals[user_id]["documents"],
                "documents_per_hour": round(len(timed) / (total_seconds / 3600), 1) if total_seconds > 0 else None,
                "median_seconds": round(statistics.median(timed), 1) if timed else None,
                "suggestions_shown": shown,
                "accepted_share": round(accepted / shown, 3) if shown else None,
            }
        )
    return rows
