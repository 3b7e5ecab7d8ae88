"""Pre-annotations (issue 19, 1c): external models' labels with scores, imported with the documents (JSONL, CSV,
Label Studio, Parquet), shown by `next` as suggestions marked with their source until the project's own model beats
the source on the evaluation set, compared per source, exported back, listed and removed over the API."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotator import ml, services
from annotator.exceptions import ProjectError
from annotator.importing import ImportRecord, Prediction
from annotator.models import (
    AuditEntry,
    Document,
    Job,
    Label,
    ModelVersion,
    PreAnnotation,
    Project,
    QueueItem,
    SuggestionDecision,
)
from annotator.services import evaluation

from .conftest import LABELS, records
from .loop import answer_served


def _upload(client, project, name: str, data: bytes, **params):
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return client.post(
        f"/api/v1/projects/{project.pk}/documents/" + (f"?{query}" if query else ""),
        {"file": SimpleUploadedFile(name, data)},
        format="multipart",
    )


def _stored(project) -> dict[tuple[str, str, str], float]:
    """{(document external id, label, source): score} of every pre-annotation in the project."""
    return {
        (p.document.external_id, p.label.name, p.source): p.score
        for p in PreAnnotation.objects.filter(project=project).select_related("document", "label")
    }


def _version(project, comparison: dict | None = None, number: int = 1) -> ModelVersion:
    ModelVersion.objects.filter(project=project).update(is_serving=False)
    return ModelVersion.objects.create(
        project=project,
        number=number,
        is_serving=True,
        artifact_path=f"v{number}",
        n_annotations=40,
        n_labels=len(LABELS),
        data_cutoff=timezone.now(),
        config={"threshold": 0.3},
        preannotation_comparison=comparison or {},
    )


def _queue(project, version, document, pairs: list[tuple[str, float]], score: float = 1.0) -> None:
    ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
    QueueItem.objects.create(
        project=project,
        document=document,
        model_version=version,
        strategy="uncertainty" if version else "cold_start",
        score=score,
        suggestions=[[ids[name], p] for name, p in pairs],
    )


def _predicted(project, manager, n: int, predictions: list[list[Prediction]], **options) -> list[Document]:
    found = records(n)
    for record, given in zip(found, predictions, strict=True):
        record.predictions = given
    services.documents_import(project=project, user=manager, records=found, **options)
    return list(Document.objects.filter(project=project).order_by("id"))


def _measured(n: int, source_f1: float, model_f1: float, precision: float = 0.9, better: bool = False) -> dict:
    return {
        "n_documents": n,
        "source": {"micro_f1": source_f1, "macro_f1": source_f1, "precision": precision, "p_at_1": 0.8},
        "model": {"micro_f1": model_f1, "macro_f1": model_f1, "precision": 0.8, "p_at_1": 0.8},
        "model_better": better,
    }


# --- import ----------------------------------------------------------------------------------------------------------
def test_jsonl_predictions_of_both_shapes_are_stored_with_their_sources(project, manager_client):
    lines = [
        {"id": "a", "text": "first text", "predictions": {"joy": 0.91, "anger": 0.2}},
        {
            "id": "b",
            "text": "second text",
            "labels": ["fear"],
            "predictions": [{"source": "bert-v3", "labels": {"fear": 1}}],
        },
        {"id": "c", "text": "third text"},
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    response = _upload(manager_client, project, "docs.jsonl", data, prediction_source="zero-shot")
    assert response.status_code == 201, response.json()
    assert response.json()["preannotations"] == 3 and response.json()["documents"] == 3
    assert _stored(project) == {
        ("a", "joy", "zero-shot"): 0.91,
        ("a", "anger", "zero-shot"): 0.2,
        ("b", "fear", "bert-v3"): 1.0,
    }
    project.refresh_from_db()
    assert sorted(project.preannotation_sources) == ["bert-v3", "zero-shot"]


def test_predictions_without_a_source_are_the_imports_by_default(project, manager_client):
    response = _upload(
        manager_client, project, "docs.jsonl", b'{"id": "a", "text": "one", "predictions": {"joy": 0.5}}\n'
    )
    assert response.status_code == 201
    assert _stored(project) == {("a", "joy", "import"): 0.5}


def test_a_csv_predictions_column_with_a_source_column(project, manager_client):
    data = (
        b"id,text,labels,predictions,prediction_source\n"
        b"1,first text,joy,joy:0.91|anger:0.2,bert-v3\n"
        b"2,second text,,fear:0.4,\n"
        b"3,third text,,,\n"
    )
    response = _upload(manager_client, project, "docs.csv", data, prediction_source="csv-model")
    assert response.status_code == 201, response.json()
    assert _stored(project) == {
        ("1", "joy", "bert-v3"): 0.91,
        ("1", "anger", "bert-v3"): 0.2,
        ("2", "fear", "csv-model"): 0.4,
    }
    assert Document.objects.filter(project=project, answers_count=1).count() == 1  # the labels column still reads


def test_a_csv_of_unlabelled_documents_with_predictions_only(project, manager_client):
    response = _upload(manager_client, project, "docs.csv", b"id,text,predictions\n1,first text,joy:0.7\n")
    assert response.status_code == 201, response.json()
    assert _stored(project) == {("1", "joy", "import"): 0.7}


def test_label_studio_predictions_take_their_model_version_and_scores(project, manager_client):
    choice = {"from_name": "label", "to_name": "text", "type": "choices"}
    tasks = [
        {
            "data": {"text": "one", "id": "t1"},
            "predictions": [
                {
                    "model_version": "bert-v3",
                    "score": 0.6,
                    "result": [
                        {**choice, "value": {"choices": ["joy"]}, "score": 0.9},
                        {**choice, "value": {"choices": ["fear"]}},
                    ],
                },
                {"result": [{**choice, "value": {"choices": ["anger"]}}]},
            ],
        }
    ]
    response = _upload(manager_client, project, "tasks.json", json.dumps(tasks).encode())
    assert response.status_code == 201, response.json()
    assert _stored(project) == {
        ("t1", "joy", "bert-v3"): 0.9,  # the result's score
        ("t1", "fear", "bert-v3"): 0.6,  # else the prediction's
        ("t1", "anger", "labelstudio"): 1.0,  # else 1.0; no model_version: "labelstudio"
    }


def test_parquet_predictions_column(project, manager_client):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": ["1", "2"],
            "text": ["first text", "second text"],
            "predictions": [json.dumps({"joy": 0.3}), json.dumps([{"source": "bert-v3", "labels": {"fear": 0.8}}])],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    response = _upload(manager_client, project, "docs.parquet", buffer.getvalue())
    assert response.status_code == 201, response.json()
    assert _stored(project) == {("1", "joy", "import"): 0.3, ("2", "fear", "bert-v3"): 0.8}


@pytest.mark.parametrize(
    ("name", "data", "first_error"),
    [
        (
            "docs.jsonl",
            b'{"id": "a", "text": "one", "predictions": {"joy": 0.5}}\n'
            b'{"id": "b", "text": "two", "predictions": {"joy": 1.5}}\n',
            "line 2: predictions: the score of 'joy' is 1.5; scores must be between 0 and 1",
        ),
        (
            "docs.jsonl",
            b'{"id": "a", "text": "one", "predictions": [{"model": "x", "labels": {"joy": 0.5}}]}\n',
            "line 1: prediction 1 must be an object",
        ),
        (
            "docs.jsonl",
            b'{"id": "a", "text": "one", "predictions": {"joy": "high"}}\n',
            "line 1: predictions: the score of 'joy' must be a number between 0 and 1",
        ),
        ("docs.csv", b"id,text,predictions\n1,one,joy:0.5\n2,two,joy=0.5\n", "line 3: predictions must be label:score"),
        (
            "tasks.json",
            json.dumps(
                [
                    {"data": {"text": "fine"}},
                    {
                        "data": {"text": "bad"},
                        "predictions": [{"result": [{"type": "choices", "value": {"choices": ["joy"]}, "score": 2}]}],
                    },
                ]
            ).encode(),
            "task 2: prediction 1: result 1: score must be a number between 0 and 1",
        ),
    ],
)
def test_a_bad_score_or_shape_is_named_and_nothing_is_imported(project, manager_client, name, data, first_error):
    response = _upload(manager_client, project, name, data)
    assert response.status_code == 400
    assert response.json()["errors"][0].startswith(first_error), response.json()
    assert not Document.objects.filter(project=project).exists()
    assert not PreAnnotation.objects.exists()


def test_unknown_predicted_labels_follow_create_labels(project, manager_client):
    data = b'{"id": "a", "text": "one", "predictions": {"awe": 0.7}}\n'
    response = _upload(manager_client, project, "docs.jsonl", data)
    assert response.status_code == 400 and response.json()["errors"] == ["line 1: unknown label(s) 'awe'"]
    response = _upload(manager_client, project, "docs.jsonl", data, create_labels=1)
    assert response.status_code == 201 and response.json()["labels_created"] == 1
    assert _stored(project) == {("a", "awe", "import"): 0.7}


def test_a_bad_prediction_source_is_refused(project, manager):
    with pytest.raises(ProjectError, match="prediction_source"):
        services.documents_import(project=project, user=manager, records=records(1), prediction_source=" ")


def test_storing_the_same_document_label_and_source_again_updates_the_score(project, manager):
    docs = _predicted(project, manager, 1, [[Prediction("bert", {"joy": 0.2})]])
    joy = Label.objects.get(project=project, name="joy")
    assert services.preannotations_store(project=project, rows=[(docs[0].pk, joy.pk, "bert", 0.8)]) == 1
    assert _stored(project) == {("doc-0", "joy", "bert"): 0.8}


def test_the_import_command_names_the_source(project, manager, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "one", "predictions": {"joy": 0.6}}\n')
    out = io.StringIO()
    call_command("import_documents", project.pk, str(path), prediction_source="cli-model", stdout=out)
    assert "1 pre-annotations stored" in out.getvalue()
    assert _stored(project) == {("a", "joy", "cli-model"): 0.6}


def test_documents_already_in_the_project_are_refused_with_their_predictions(project, manager):
    _predicted(project, manager, 1, [[Prediction("bert", {"joy": 0.2})]])
    again = records(1)
    again[0].predictions = [Prediction("bert", {"joy": 0.9})]
    with pytest.raises(ProjectError) as refused:
        services.documents_import(project=project, user=manager, records=again)
    assert refused.value.errors == ["line 1: id 'doc-0' is already in the project"]
    assert _stored(project) == {("doc-0", "joy", "bert"): 0.2}


# --- serving ---------------------------------------------------------------------------------------------------------
def test_next_shows_the_sources_labels_best_first_marked_with_it(project, manager, annotator_client):
    project.suggestions_k = 2
    project.save()
    docs = _predicted(project, manager, 1, [[Prediction("bert-v3", {"joy": 0.3, "anger": 0.9, "fear": 0.6})]])
    _queue(project, None, docs[0], [("sadness", 0.8)])
    served = annotator_client.get(f"/api/v1/projects/{project.pk}/next/").json()
    assert [(s["label"], s["score"], s["source"], s["preselected"]) for s in served["suggestions"]] == [
        ("anger", 0.9, "bert-v3", False),
        ("fear", 0.6, "bert-v3", False),
    ]
    assert served["pretick"]["threshold"] is None and "bert-v3" in served["pretick"]["reason"]
    response = annotator_client.post(
        f"/api/v1/projects/{project.pk}/annotations/",
        {"document": docs[0].pk, "labels": ["anger"]},
        format="json",
    )
    assert response.status_code == 201
    answer = docs[0].annotations.get()
    assert answer.suggestions == [
        {"label": "anger", "score": 0.9, "preselected": False, "source": "bert-v3"},
        {"label": "fear", "score": 0.6, "preselected": False, "source": "bert-v3"},
    ]


def test_a_model_that_beat_the_source_serves_its_own_suggestions(project, manager, annotator_client):
    docs = _predicted(project, manager, 2, [[Prediction("bert-v3", {"joy": 0.9})]] * 2)
    _queue(project, None, docs[0], [("sadness", 0.8)], score=2)
    first = annotator_client.get(f"/api/v1/projects/{project.pk}/next/").json()
    assert [s["source"] for s in first["suggestions"]] == ["bert-v3"]  # no model yet: not beaten
    version = _version(project, {"bert-v3": _measured(40, 0.5, 0.7, better=True)})
    _queue(project, version, docs[1], [("sadness", 0.8)], score=1)
    annotator_client.post(f"/api/v1/projects/{project.pk}/skip/", {"document": first["document"]["id"]}, format="json")
    served = annotator_client.get(f"/api/v1/projects/{project.pk}/next/").json()
    assert served["document"]["id"] == docs[1].pk
    assert [(s["label"], s["source"]) for s in served["suggestions"]] == [("sadness", "model")]


def test_a_source_the_model_did_not_beat_still_shows(project, manager, annotator_client):
    docs = _predicted(project, manager, 1, [[Prediction("bert-v3", {"joy": 0.9})]])
    version = _version(project, {"bert-v3": {**_measured(10, 0.5, 0.9), "reason": "too few"}})
    _queue(project, version, docs[0], [("sadness", 0.8)])
    served = annotator_client.get(f"/api/v1/projects/{project.pk}/next/").json()
    assert [(s["label"], s["source"]) for s in served["suggestions"]] == [("joy", "bert-v3")]


def test_of_several_sources_the_best_measured_shows_else_the_newest(project, manager, annotator_client):
    docs = _predicted(
        project,
        manager,
        1,
        [[Prediction("older", {"joy": 0.9}), Prediction("newer", {"fear": 0.9})]],
    )
    _predicted_sources = Project.objects.get(pk=project.pk).preannotation_sources
    version = _version(project)
    _queue(project, version, docs[0], [("sadness", 0.8)])
    url = f"/api/v1/projects/{project.pk}/next/"
    newest = _predicted_sources[-1]
    assert annotator_client.get(url).json()["suggestions"][0]["source"] == newest  # nothing measured: the newest
    oldest = _predicted_sources[0]
    version.preannotation_comparison = {oldest: _measured(40, 0.8, 0.5), newest: _measured(40, 0.6, 0.5)}
    version.save()
    assert annotator_client.get(url).json()["suggestions"][0]["source"] == oldest  # the best measured


def test_external_suggestions_are_preticked_only_when_measured_precise_enough(project, manager, annotator_client):
    docs = _predicted(project, manager, 1, [[Prediction("bert-v3", {"joy": 0.9, "fear": 0.4})]])
    version = _version(project, {"bert-v3": _measured(30, 0.6, 0.5, precision=0.75)})
    _queue(project, version, docs[0], [("sadness", 0.8)])
    url = f"/api/v1/projects/{project.pk}/next/"
    served = annotator_client.get(url).json()
    assert [(s["label"], s["preselected"]) for s in served["suggestions"]] == [("joy", True), ("fear", False)]
    assert served["pretick"]["threshold"] == 0.5 and served["pretick"]["precision"] == 0.75
    version.preannotation_comparison = {"bert-v3": _measured(29, 0.6, 0.5, precision=0.95)}  # too few documents
    version.save()
    assert not any(s["preselected"] for s in annotator_client.get(url).json()["suggestions"])
    version.preannotation_comparison = {"bert-v3": _measured(30, 0.6, 0.5, precision=0.6)}  # under the 0.7 floor
    version.save()
    served = annotator_client.get(url).json()
    assert not any(s["preselected"] for s in served["suggestions"]) and "floor" in served["pretick"]["reason"]


def test_decisions_on_external_suggestions_do_not_count_for_the_model_version(project, manager, annotator_client):
    docs = _predicted(project, manager, 2, [[Prediction("bert-v3", {"joy": 0.9})], []])
    version = _version(project)
    _queue(project, version, docs[0], [("sadness", 0.8)], score=2)
    _queue(project, version, docs[1], [("anger", 0.7)], score=1)
    for _ in range(2):
        served = annotator_client.get(f"/api/v1/projects/{project.pk}/next/").json()
        response = annotator_client.post(
            f"/api/v1/projects/{project.pk}/annotations/",
            {"document": served["document"]["id"], "labels": [served["suggestions"][0]["label"]]},
            format="json",
        )
        assert response.status_code == 201
    assert SuggestionDecision.objects.count() == 2  # both decisions are kept with the answers
    version.refresh_from_db()
    assert version.decision_counts == {"decisions": 1, "bins": [[70, 1, 1]]}  # only the model's "anger" at 0.7


def test_a_project_without_preannotations_pays_no_query_for_them_in_next(project, manager, annotator_client, documents):
    for rank, doc in enumerate(documents[:3]):
        _queue(project, None, doc, [("joy", 0.9)], score=rank)
    with CaptureQueriesContext(connection) as queries:
        served = annotator_client.get(f"/api/v1/projects/{project.pk}/next/").json()
    assert served["suggestions"] and "source" not in served["suggestions"][0]  # label-prior suggestions: unmarked
    assert not any('"annotator_preannotation"' in query["sql"] for query in queries.captured_queries)
    _predicted_project = services.project_create(user=manager, name="with", labels=LABELS, eval_size=0)
    services.member_add(project=_predicted_project, username="annotator", role="annotator")
    docs = _predicted(_predicted_project, manager, 1, [[Prediction("bert", {"joy": 0.9})]])
    _queue(_predicted_project, None, docs[-1], [("joy", 0.9)])
    with CaptureQueriesContext(connection) as queries:
        annotator_client.get(f"/api/v1/projects/{_predicted_project.pk}/next/")
    assert sum('"annotator_preannotation"' in query["sql"] for query in queries.captured_queries) == 1


# --- comparison ------------------------------------------------------------------------------------------------------
def test_the_comparison_numbers_on_a_hand_built_case():
    # 20 documents: truth {1}; the model decides {1} on all; the source decides {1} on 10, {2} on the other 10.
    true = [[1]] * 20
    model = [[1]] * 20
    scored = [[(1, 0.9)]] * 10 + [[(2, 0.8), (1, 0.3)]] * 10
    result = evaluation._compare_source(true, model, [1] * 20, scored)
    assert result["n_documents"] == 20
    assert result["model"] == {"micro_f1": 1.0, "macro_f1": 1.0, "precision": 1.0, "p_at_1": 1.0}
    # source: tp 10, fp 10, fn 10 -> micro-F1 0.5; label 1's F1 2*10/(20+10) = 0.6667 (label 2 has no positive)
    assert result["source"] == {"micro_f1": 0.5, "macro_f1": 0.6667, "precision": 0.5, "p_at_1": 0.5}
    assert result["model_better"] is True and "reason" not in result
    fewer = evaluation._compare_source(true[:19], model[:19], [1] * 19, scored[:19])
    assert fewer["model_better"] is False and "20" in fewer["reason"]
    worse = evaluation._compare_source(true, [[2]] * 20, [2] * 20, scored)
    assert worse["model"]["micro_f1"] == 0.0 and worse["model_better"] is False and "not above" in worse["reason"]


def test_a_version_is_compared_with_each_source_on_the_covered_evaluation_documents(project, manager, monkeypatch):
    docs = _predicted(
        project,
        manager,
        3,
        [
            [Prediction("good", {"joy": 0.9})],
            [Prediction("good", {"anger": 0.2}), Prediction("bad", {"fear": 0.9})],
            [],
        ],
    )
    ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
    names = list(LABELS)  # the model's columns
    monkeypatch.setattr(evaluation, "_model_inputs", lambda model, project, doc_ids: (None, None))
    monkeypatch.setattr(ml, "model_labels", lambda model: names)
    # The model decides joy on the first document and anger on the second (the only ones covered).
    monkeypatch.setattr(
        ml, "decisions_with_top", lambda model, texts, X: ([[names.index("joy")], [names.index("anger")]], [0, 1])
    )
    comparison = evaluation.preannotations_compare(
        model=object(),
        project=project,
        doc_ids=[d.pk for d in docs],
        rows=[[ids["joy"]], [ids["anger"]], [ids["fear"]]],
    )
    assert comparison["good"]["n_documents"] == 2 and comparison["bad"]["n_documents"] == 1
    assert comparison["good"]["source"]["micro_f1"] == pytest.approx(2 / 3, abs=1e-4)  # anger at 0.2 not decided
    assert comparison["good"]["model"]["micro_f1"] == 1.0
    assert comparison["bad"]["source"]["micro_f1"] == 0.0
    assert not comparison["good"]["model_better"] and "20" in comparison["good"]["reason"]


# --- export ----------------------------------------------------------------------------------------------------------
def _download(response) -> bytes:
    assert response.status_code == 200, response.content[:500]
    return b"".join(response.streaming_content) if response.streaming else response.content


def _by_source(task: dict) -> dict[str, dict[str, float]]:
    return {
        p["model_version"]: {r["value"]["choices"][0]: r["score"] for r in p["result"]} for p in task["predictions"]
    }


def test_label_studio_round_trip_keeps_predictions_texts_and_answers(project, manager, manager_client):
    choice = {"from_name": "label", "to_name": "text", "type": "choices"}

    def result(name: str, score: float | None = None) -> dict:
        return {**choice, "value": {"choices": [name]}} | ({"score": score} if score is not None else {})

    tasks = [
        {
            "data": {"text": "the first text", "id": "t1"},
            "annotations": [{"result": [result("joy")]}],
            "predictions": [
                {"model_version": "bert-v3", "result": [result("joy", 0.91), result("anger", 0.25)]},
                {"model_version": "zero-shot", "score": 0.5, "result": [result("fear")]},
            ],
        },
        {"data": {"text": "the second text", "id": "t2"}, "predictions": [{"result": [result("sadness")]}]},
        {"data": {"text": "the third text", "id": "t3"}, "annotations": [{"result": [result("fear")]}]},
    ]
    response = _upload(manager_client, project, "tasks.json", json.dumps(tasks).encode())
    assert response.status_code == 201, response.json()
    exported = json.loads(
        _download(
            manager_client.get(
                f"/api/v1/projects/{project.pk}/export/", {"format": "labelstudio", "include_unlabelled": 1}
            )
        )
    )
    by_id = {task["data"]["id"]: task for task in exported}
    assert set(by_id) == {"t1", "t2", "t3"}
    assert _by_source(by_id["t1"]) == {"bert-v3": {"joy": 0.91, "anger": 0.25}, "zero-shot": {"fear": 0.5}}
    assert _by_source(by_id["t2"]) == {"labelstudio": {"sadness": 1.0}}
    assert by_id["t3"]["predictions"] == []
    for task in tasks:
        mine = by_id[task["data"]["id"]]
        assert mine["data"]["text"] == task["data"]["text"]
        assert [a["result"][0]["value"]["choices"] for a in mine["annotations"]] == [
            a["result"][0]["value"]["choices"] for a in task.get("annotations", [])
        ]
    # and back: another project reads the same predictions
    second = services.project_create(user=manager, name="second", labels=[], eval_size=0)
    again = _upload(manager_client, second, "tasks.json", json.dumps(exported).encode(), create_labels=1)
    assert again.status_code == 201, again.json()
    assert _stored(second) == _stored(project)


def test_the_jsonl_export_carries_predictions_and_imports_back(project, manager, manager_client):
    _predicted(project, manager, 2, [[Prediction("bert", {"joy": 0.9, "fear": 0.1})], []])
    exported = _download(
        manager_client.get(f"/api/v1/projects/{project.pk}/export/", {"format": "jsonl", "include_unlabelled": 1})
    )
    rows = {row["id"]: row for row in map(json.loads, exported.decode().splitlines())}
    assert rows["doc-0"]["predictions"] == [{"source": "bert", "labels": {"joy": 0.9, "fear": 0.1}}]
    assert "predictions" not in rows["doc-1"]
    second = services.project_create(user=manager, name="second", labels=LABELS, eval_size=0)
    assert _upload(manager_client, second, "export.jsonl", exported).status_code == 201
    assert _stored(second) == _stored(project)


# --- API -------------------------------------------------------------------------------------------------------------
def test_managers_list_sources_with_the_serving_models_comparison_and_remove_one(
    project, manager, manager_client, annotator_client
):
    _predicted(
        project,
        manager,
        3,
        [
            [Prediction("bert", {"joy": 0.9, "fear": 0.2})],
            [Prediction("bert", {"joy": 0.5})],
            [Prediction("llm", {"anger": 1})],
        ],
    )
    _version(project, {"bert": _measured(25, 0.4, 0.6, better=True)}, number=3)
    url = f"/api/v1/projects/{project.pk}/preannotations/"
    assert annotator_client.get(url).status_code == 403
    overview = manager_client.get(url).json()
    assert overview["model_version"] == 3 and overview["documents"] == 3
    by_source = {row["source"]: row for row in overview["sources"]}
    assert (by_source["bert"]["preannotations"], by_source["bert"]["documents"]) == (3, 2)
    assert by_source["bert"]["model_better"] is True and by_source["bert"]["comparison"]["n_documents"] == 25
    assert by_source["llm"]["model_better"] is False and by_source["llm"]["comparison"] is None

    assert annotator_client.delete(url + "?source=bert").status_code == 403
    assert manager_client.delete(url + "?source=nope").status_code == 404
    response = manager_client.delete(url + "?source=bert")
    assert response.status_code == 200 and response.json() == {"source": "bert", "deleted": 3}
    assert set(_stored(project)) == {("doc-2", "anger", "llm")}
    project.refresh_from_db()
    assert project.preannotation_sources == ["llm"]
    assert "bert" not in ModelVersion.objects.get(project=project, number=3).preannotation_comparison
    entry = AuditEntry.objects.get(project=project, action=AuditEntry.Action.DELETE)
    assert entry.username == "manager" and entry.before == {"source": "bert", "preannotations": 3}


def test_the_record_api_takes_predictions_too(project, manager_client):
    response = manager_client.post(
        f"/api/v1/projects/{project.pk}/documents/?prediction_source=api-model",
        [{"id": "a", "text": "one", "predictions": {"joy": 0.4}}],
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert _stored(project) == {("a", "joy", "api-model"): 0.4}


def test_import_records_keep_their_predictions_in_memory_as_given():
    record = ImportRecord(line=1, external_id="x", text="t", labels=None)
    assert record.predictions == []


def test_the_manage_page_names_the_sources_and_whether_the_model_beats_them(client, project, manager):
    _predicted(project, manager, 1, [[Prediction("bert<v3>", {"joy": 0.9}), Prediction("llm", {"fear": 0.2})]])
    _version(
        project,
        {
            "bert<v3>": _measured(25, 0.4, 0.6, better=True),
            "llm": {"n_documents": 3, "model_better": False, "reason": "few"},
        },
        number=2,
    )
    client.force_login(manager)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "bert&lt;v3&gt;: v2 beats it (micro-F1 0.6 vs 0.4 on 25 evaluation documents)" in page  # escaped
    assert "llm: not beaten by v2 (few): its suggestions show" in page


def test_an_answer_shown_external_suggestions_exports_them_once_under_their_source(
    project, manager, annotator_client, manager_client
):
    docs = _predicted(project, manager, 1, [[Prediction("bert-v3", {"joy": 0.9})]])
    _queue(project, None, docs[0], [("sadness", 0.8)])
    served = annotator_client.get(f"/api/v1/projects/{project.pk}/next/").json()
    annotator_client.post(
        f"/api/v1/projects/{project.pk}/annotations/",
        {"document": served["document"]["id"], "labels": ["joy"]},
        format="json",
    )
    (task,) = json.loads(_download(manager_client.get(f"/api/v1/projects/{project.pk}/export/?format=labelstudio")))
    assert _by_source(task) == {"bert-v3": {"joy": 0.9}}  # not a second time as our model's "cold-start" prediction
    (row,) = map(
        json.loads,
        _download(manager_client.get(f"/api/v1/projects/{project.pk}/export/?format=jsonl")).split(b"\n")[:1],
    )
    assert row["answers"][0]["suggestions"] == [
        {"label": "joy", "score": 0.9, "preselected": False, "decision": "accepted", "source": "bert-v3"}
    ]


@pytest.mark.usefixtures("tiny_encoder")
def test_a_trained_version_is_compared_with_each_source_on_the_evaluation_set(project, manager, annotator_user):
    gold = [["joy"], ["anger"], ["sadness", "fear"], [], ["surprise"], ["joy", "surprise"]]
    found = records(60)
    for i, record in enumerate(found):
        right = gold[i % 6]
        wrong = "anger" if "joy" in right else "joy"
        record.predictions = [
            Prediction("oracle", dict.fromkeys(right, 0.9) | {wrong: 0.1}),  # right at 0.5; covers every one
            Prediction("wrong", {wrong: 0.8}),
        ]
    services.documents_import(project=project, user=manager, records=found)
    services.project_update(project=project, eval_fraction=0.4, retrain_every=1000)
    for i, doc_id in enumerate(Document.objects.filter(project=project).order_by("id").values_list("id", flat=True)):
        answer_served(project, annotator_user, doc_id, gold[i % 6])
    Job.objects.all().delete()
    job, _ = services.job_request(project=project, kind="encode", reason="test")
    services.encode_run(job_id=job.pk)
    job, _ = services.job_request(project=project, kind="train", reason="test")
    services.training_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED", job.error
    comparison = ModelVersion.objects.get(project=project).preannotation_comparison
    n_evaluation = Document.objects.filter(project=project, is_evaluation=True).count()
    assert n_evaluation >= 20
    oracle, wrong = comparison["oracle"], comparison["wrong"]
    assert oracle["n_documents"] == n_evaluation
    assert oracle["source"]["micro_f1"] == 1.0 and oracle["source"]["precision"] == 1.0
    assert oracle["model_better"] is False and "not above" in oracle["reason"]
    assert wrong["n_documents"] == n_evaluation and wrong["source"]["micro_f1"] == 0.0
    assert wrong["model_better"] is (wrong["model"]["micro_f1"] > 0.0)


def test_the_manage_page_upload_names_the_source(client, project, manager):
    client.force_login(manager)
    response = client.post(
        f"/projects/{project.pk}/manage/import/",
        {
            "file": SimpleUploadedFile("docs.jsonl", b'{"id": "a", "text": "one", "predictions": {"joy": 0.6}}\n'),
            "prediction_source": "form-model",
        },
        follow=True,
    )
    assert "1 pre-annotation(s) stored." in response.content.decode()
    assert _stored(project) == {("a", "joy", "form-model"): 0.6}


def test_merging_labels_moves_their_preannotations_keeping_the_higher_score(project, manager):
    from annotator.services.taxonomy import label_merge

    docs = _predicted(
        project,
        manager,
        2,
        [
            [Prediction("bert", {"anger": 0.9, "fear": 0.4})],  # both labels scored: the higher score stays
            [Prediction("bert", {"anger": 0.3}), Prediction("rules", {"fear": 0.7})],
        ],
    )
    anger, fear = (Label.objects.get(project=project, name=name) for name in ("anger", "fear"))

    label_merge(project=project, user=manager, label_id=anger.pk, into_id=fear.pk)

    assert _stored(project) == {
        ("doc-0", "fear", "bert"): 0.9,
        ("doc-1", "fear", "bert"): 0.3,
        ("doc-1", "fear", "rules"): 0.7,
    }
    assert len(docs) == 2
