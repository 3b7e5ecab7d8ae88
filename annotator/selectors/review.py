"""The review queue and one document's review: its answers side by side, the votes per label and its gold answer.

The queue holds the documents whose answers disagree (Document.agreement below 1: two or more answers, not all the
same label set) and that have no gold answer yet, the worst agreement first, then by id. It is an index range scan
of `document_agreement_idx` (project, agreement, id) with a probe of the gold answers per document, so its pages
cost the same at any size; keyset paging by the last document's (agreement, id)."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q

from ..exceptions import NotFound
from ..models import Adjudication, Document, Project
from .browse import TEXT_PREVIEW, document_answers, document_golds

REVIEW_MAX_LIMIT = 200


def _queue(project: Project):
    return (
        Document.objects.filter(project=project, agreement__lt=1)
        .filter(~Exists(Adjudication.objects.filter(document=OuterRef("pk"))))
        .order_by("agreement", "id")
    )


def review_queue(*, project: Project, after: int | None = None, limit: int = 50) -> dict[str, Any]:
    """One page of the review queue: {"documents": [{id, external_id, text (a preview), agreement,
    answers_count}], "next": the last document's id or None, "remaining": how many documents the whole queue
    holds}. `after` is the previous page's `next` (a document id): the page goes on after that document's current
    (agreement, id); a document that has left the queue since (gold decided) still marks the place."""
    limit = max(1, min(int(limit), REVIEW_MAX_LIMIT))
    queue = _queue(project)
    if after is not None:
        mark = Document.objects.filter(project=project, pk=after).values_list("agreement", flat=True).first()
        if mark is None:
            queue = queue.filter(pk__gt=after)
        else:
            queue = queue.filter(Q(agreement__gt=mark) | Q(agreement=mark, pk__gt=after))
    rows = list(queue.values("id", "external_id", "text", "agreement", "answers_count")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "documents": [{**row, "text": row["text"][:TEXT_PREVIEW]} for row in rows],
        "next": rows[-1]["id"] if more and rows else None,
        "remaining": _queue(project).count(),
    }


def review_next(*, project: Project, after: int | None = None) -> int | None:
    """The id of the first document of the review queue (after the document `after`), or None when it is empty."""
    documents = review_queue(project=project, after=after, limit=1)["documents"]
    return documents[0]["id"] if documents else None


def review_item(*, project: Project, document_id: int) -> dict[str, Any]:
    """One document to review: its id, external id, full text and agreement, every answer oldest first (annotator,
    labels, when, seconds spent, source, agreement with the model's pre-ticks, the suggestions it was shown), its
    gold answer (or None), and per label the votes: [{label, votes, majority, gold, checked}] for every label an
    answer or the gold answer chose, most votes first. `majority`: a strict majority of the answers chose it;
    `checked`: what the review form pre-ticks (the gold answer's labels if there is one, else the majority's).
    NotFound for a document of another project."""
    document = Document.objects.filter(project=project, pk=document_id).values("id", "external_id", "text", "agreement")
    row = document.first()
    if row is None:
        raise NotFound(f"document {document_id} not found in this project")
    answers = document_answers([row["id"]], with_suggestions=True).get(row["id"], [])
    gold = document_golds([row["id"]]).get(row["id"])
    votes: dict[str, int] = {}
    for answer in answers:
        for name in answer["labels"]:
            votes[name] = votes.get(name, 0) + 1
    gold_labels = set(gold["labels"]) if gold else set()
    for name in gold_labels:
        votes.setdefault(name, 0)
    table = []
    for name, count in sorted(votes.items(), key=lambda item: (-item[1], item[0])):
        majority = 2 * count > len(answers)
        table.append(
            {
                "label": name,
                "votes": count,
                "majority": majority,
                "gold": name in gold_labels,
                "checked": name in gold_labels if gold else majority,
            }
        )
    return {
        "id": row["id"],
        "external_id": row["external_id"],
        "text": row["text"],
        "agreement": row["agreement"],
        "answers": answers,
        "gold": gold,
        "votes": table,
    }
