"""The export (annotator.selectors.export and GET .../export/): per document every answer with who, when, how long,
what picked it, the suggestions shown with their scores and the expert's decisions, and the evaluation-set flag."""

from __future__ import annotations

import json

from annotator import services
from annotator.models import Adjudication, AdjudicationLabel, Document, Label, QueueItem

from .conftest import client_for, make_user, records


def _export(client, project) -> list[dict]:
    response = client.get(f"/api/v1/projects/{project.pk}/export/", {"format": "jsonl"})
    assert response.status_code == 200
    return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]


def test_every_answer_is_exported_with_suggestions_decisions_and_provenance(project, manager, annotator_user):
    services.documents_import(project=project, user=manager, records=records(2))
    second = make_user("second")
    services.member_add(project=project, username="second", user=manager)
    doc = Document.objects.get(project=project, external_id="doc-0")
    ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
    QueueItem.objects.filter(project=project).delete()
    QueueItem.objects.create(
        project=project,
        document=doc,
        strategy="uncertainty",
        score=0.9,
        suggestions=[[ids["joy"], 0.8], [ids["fear"], 0.3]],
    )
    served = services.queue_lease_next(project=project, user=annotator_user)
    assert served.document.pk == doc.pk
    services.annotation_submit(
        project=project, user=annotator_user, document_id=doc.pk, labels=["joy"], rejected=["fear"], seconds_spent=12.5
    )
    QueueItem.objects.filter(document=doc).update(leased_to=None, lease_expires_at=None)
    services.annotation_submit(
        project=project, user=second, document_id=doc.pk, labels=["joy", "anger"], seconds_spent=4
    )

    Document.objects.filter(pk=doc.pk).update(is_evaluation=True)  # the flag as the evaluation set has it now
    rows = {row["id"]: row for row in _export(client_for(manager), project)}
    assert set(rows) == {"doc-0"}  # the unlabelled document is left out unless asked for
    row = rows["doc-0"]
    assert row["evaluation"] is True
    assert (row["labels"], row["annotator"]) == (["anger", "joy"], "second")  # the latest answer
    first, latest = row["answers"]
    assert (first["annotator"], first["labels"], first["seconds_spent"]) == ("annotator", ["joy"], 12.5)
    assert first["strategy"] == "uncertainty" and first["model_version"] is None
    assert [(s["label"], s["score"], s["decision"]) for s in first["suggestions"]] == [
        ("joy", 0.8, "accepted"),
        ("fear", 0.3, "rejected"),
    ]
    assert (latest["annotator"], latest["labels"], latest["seconds_spent"]) == ("second", ["anger", "joy"], 4.0)

    response = client_for(manager).get(
        f"/api/v1/projects/{project.pk}/export/", {"format": "jsonl", "include_unlabelled": "1"}
    )
    unlabelled = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()][1]
    assert (unlabelled["id"], unlabelled["labels"], unlabelled["answers"]) == ("doc-1", None, [])

    response = client_for(manager).get(f"/api/v1/projects/{project.pk}/export/", {"format": "csv"})
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[1].endswith(",anger|joy,majority,,second," + row["annotated_at"] + ",1,2,16.5")


def test_the_export_carries_gold_and_the_labels_training_reads(project, manager, annotator_user, documents):
    """A reviewer's gold overrides the answers in `labels` (what training reads) and is exported with who/when."""
    doc = documents[0]
    services.annotation_submit(project=project, user=annotator_user, document_id=doc.pk, labels=["joy"])
    gold = Adjudication.objects.create(project=project, document=doc, reviewer=manager, note="sarcasm")
    AdjudicationLabel.objects.create(adjudication=gold, label=Label.objects.get(project=project, name="anger"))
    response = client_for(manager).get(f"/api/v1/projects/{project.pk}/export/", {"format": "jsonl"})
    row = json.loads(b"".join(response.streaming_content).decode().splitlines()[0])
    assert (row["labels"], row["labels_from"]) == (["anger"], "gold")
    assert row["gold"]["labels"] == ["anger"] and row["gold"]["reviewer"] == "manager"
    assert row["gold"]["note"] == "sarcasm"
    assert row["answers"][0]["labels"] == ["joy"]  # the answer itself is kept as given
    response = client_for(manager).get(f"/api/v1/projects/{project.pk}/export/", {"format": "csv"})
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("id,text,labels,labels_from,gold_reviewer,")
    assert ",anger,gold,manager,annotator," in lines[1]


def test_annotators_cannot_export(project, annotator_user):
    assert client_for(annotator_user).get(f"/api/v1/projects/{project.pk}/export/").status_code == 403
