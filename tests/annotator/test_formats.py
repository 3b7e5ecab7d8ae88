"""Other tools' formats both ways (annotator.formats, the upload, the export API, the two management commands):
Label Studio JSON, Hugging Face dataset folders, Parquet and multi-hot tables. Round trips run on a real sample
(200 tibkat-gnd records) and must keep every text and every answer exactly."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from annotator import formats, selectors, services
from annotator.exceptions import ProjectError
from annotator.importing import ImportRecord, Prediction, import_notes, parse_file
from annotator.models import Adjudication, AdjudicationLabel, Annotation, Document, Label, PreAnnotation, QueueItem

from .conftest import client_for, make_user, records

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # `datasets` never reaches the network here

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "tibkat-gnd" / "dev.jsonl.gz"


def _sample(n: int = 200) -> list[ImportRecord]:
    found: list[ImportRecord] = []
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            raw = json.loads(line)
            found.append(ImportRecord(line=number, external_id=raw["id"], text=raw["text"], labels=raw["labels"]))
            if len(found) == n:
                break
    return found


def _project(manager, name: str, labels: list[str]):
    return services.project_create(user=manager, name=name, labels=labels, eval_size=0)


def _content(project) -> dict[str, tuple[str, frozenset[str] | None]]:
    """Every exported document: its text and its answer as a label set."""
    return {
        row["id"]: (row["text"], None if row["labels"] is None else frozenset(row["labels"]))
        for row in selectors.export_rows(project=project, include_unlabelled=True)
    }


@pytest.fixture
def sample_project(manager):
    sample = _sample()
    labels = sorted({name for record in sample for name in record.labels or []})
    project = _project(manager, "tibkat slice", labels)
    services.documents_import(project=project, user=manager, records=sample)
    expected = {r.external_id: (r.text, frozenset(r.labels or [])) for r in sample}
    assert _content(project) == expected
    return project, expected


def _download(response) -> bytes:
    assert response.status_code == 200, response.content[:500]
    return b"".join(response.streaming_content) if response.streaming else response.content


def _reimport(manager, data: bytes, filename: str) -> dict:
    second = _project(manager, f"second {filename}", [])
    records, errors = parse_file(filename, data)
    assert errors == []
    services.documents_import(project=second, user=manager, records=records, create_labels=True)
    return _content(second)


# --- round trips on the real sample -------------------------------------------------------------------------------
def test_label_studio_round_trip_keeps_texts_and_answers_exactly(sample_project, manager):
    project, expected = sample_project
    exported = _download(client_for(manager).get(f"/api/v1/projects/{project.pk}/export/", {"format": "labelstudio"}))
    tasks = json.loads(exported)
    assert len(tasks) == 200
    result = tasks[0]["annotations"][0]["result"][0]
    assert (result["from_name"], result["to_name"], result["type"]) == ("label", "text", "choices")
    assert _reimport(manager, exported, "tasks.json") == expected


def test_parquet_round_trip_keeps_texts_and_answers_exactly(sample_project, manager):
    project, expected = sample_project
    response = client_for(manager).get(f"/api/v1/projects/{project.pk}/export/", {"format": "parquet"})
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert _reimport(manager, _download(response), "data.parquet") == expected


def test_hf_dataset_folder_round_trip_through_the_commands(sample_project, manager, tmp_path):
    project, expected = sample_project
    folder = tmp_path / "dataset"
    call_command("export_project", project.pk, str(folder), format="hf", no_progress=True, stdout=io.StringIO())
    from datasets import ClassLabel, load_from_disk

    dataset = load_from_disk(str(folder))
    assert len(dataset) == 200 and isinstance(dataset.features["label_ids"].feature, ClassLabel)
    assert set(dataset[0]["labels"]) == set(expected[dataset[0]["id"]][1])
    second = _project(manager, "second", [])
    out = io.StringIO()
    call_command("import_documents", second.pk, str(folder), create_labels=True, stdout=out)
    assert "Imported 200 documents with 200 answers" in out.getvalue()
    assert _content(second) == expected


def test_a_dataset_dict_split_and_class_label_integers_are_read(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    features = Features({"id": Value("string"), "text": Value("string"), "labels": List(ClassLabel(names=["a", "b"]))})
    train = Dataset.from_dict({"id": ["1"], "text": ["one"], "labels": [[1]]}, features=features)
    test = Dataset.from_dict({"id": ["2"], "text": ["two"], "labels": [[0, 1]]}, features=features)
    DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "dd"))
    found, errors = formats.parse_hf_dataset(tmp_path / "dd", split="test")
    assert errors == [] and [(r.external_id, r.labels) for r in found] == [("2", ["a", "b"])]
    with pytest.raises(ProjectError, match="no split 'dev'"):
        formats.parse_hf_dataset(tmp_path / "dd", split="dev")


# --- Label Studio: answers, gold, predictions, bad tasks ------------------------------------------------------------
def test_label_studio_export_carries_every_answer_gold_and_the_suggestions_as_a_prediction(
    project, manager, annotator_user
):
    services.documents_import(project=project, user=manager, records=records(1))
    doc = Document.objects.get(project=project)
    ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
    QueueItem.objects.filter(project=project).delete()
    QueueItem.objects.create(
        project=project, document=doc, strategy="uncertainty", score=0.9, suggestions=[[ids["joy"], 0.8]]
    )
    services.queue_lease_next(project=project, user=annotator_user)
    services.annotation_submit(project=project, user=annotator_user, document_id=doc.pk, labels=["joy", "fear"])
    gold = Adjudication.objects.create(project=project, document=doc, reviewer=manager)
    AdjudicationLabel.objects.create(adjudication=gold, label_id=ids["anger"])

    tasks = json.loads(
        _download(client_for(manager).get(f"/api/v1/projects/{project.pk}/export/", {"format": "labelstudio"}))
    )
    (task,) = tasks
    assert task["data"] == {"text": doc.text, "id": "doc-0"}
    answer, gold_answer = task["annotations"]
    assert sorted(answer["result"][0]["value"]["choices"]) == ["fear", "joy"] and not answer["ground_truth"]
    assert gold_answer["result"][0]["value"]["choices"] == ["anger"] and gold_answer["ground_truth"]
    assert task["meta"]["annotators"] == ["annotator"]
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "cold-start"
    assert [(r["value"]["choices"], r["score"]) for r in prediction["result"]] == [(["joy"], 0.8)]
    (record,) = formats.parse_label_studio(json.dumps(tasks).encode())[0]
    assert record.labels == ["anger"]  # the gold answer wins on the way back
    assert record.predictions == [Prediction("cold-start", {"joy": 0.8})]  # read back as a pre-annotation source


def test_label_studio_import_takes_the_latest_answer_and_stores_the_predictions(project, manager):
    tasks = [
        {
            "id": 7,
            "data": {"text": "the cat and the game", "source": "forum"},
            "annotations": [
                {"result": [_choice(["joy"])], "updated_at": "2026-01-02T00:00:00Z"},
                {"result": [_choice(["anger"]), _choice(["fear"])], "updated_at": "2026-01-03T00:00:00Z"},
                {"result": [_choice(["sadness"])], "updated_at": "2026-01-04T00:00:00Z", "was_cancelled": True},
            ],
            "predictions": [{"model_version": "m1", "score": 0.4, "result": [_choice(["joy"])]}],
        },
        {"data": {"text": "nobody answered", "id": "mine"}},
    ]
    response = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/documents/",
        {"file": SimpleUploadedFile("tasks.json", json.dumps(tasks).encode())},
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["documents"] == 2 and response.json()["annotations"] == 1
    assert response.json()["preannotations"] == 1 and "notes" not in response.json()
    stored = PreAnnotation.objects.get(document__external_id="ls-7")
    assert (stored.source, stored.label.name, stored.score) == ("m1", "joy", 0.4)  # the prediction's score
    assert _content(project) == {
        "ls-7": ("the cat and the game", frozenset({"anger", "fear"})),
        "mine": ("nobody answered", None),
    }
    assert Document.objects.get(project=project, external_id="ls-7").metadata == {"source": "forum"}


def _choice(names: list[str]) -> dict:
    return {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": names}}


def test_bad_label_studio_tasks_are_named_and_nothing_is_imported(project, manager):
    tasks = [
        {"data": {"text": "fine"}, "annotations": [{"result": [_choice(["joy"])]}]},
        {"data": {"title": "no text here"}},
        {"data": {"text": "spans"}, "annotations": [{"result": [{"type": "labels", "value": {"labels": ["x"]}}]}]},
        {"data": {"text": "bad prediction"}, "predictions": [{"result": [{"type": "choices", "value": {}}]}]},
        "not a task",
    ]
    response = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/documents/",
        {"file": SimpleUploadedFile("tasks.json", json.dumps(tasks).encode())},
        format="multipart",
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e.split(":")[0] for e in errors] == ["task 2", "task 3", "task 4", "task 5"]
    assert 'no "text"' in errors[0] and "only choices results" in errors[1] and "value.choices" in errors[2]
    assert not Document.objects.filter(project=project).exists()


def test_a_plain_json_list_of_our_records_is_still_read_as_json_lines():
    found, errors = parse_file("data.json", b'{"id": "1", "text": "one", "labels": ["a"]}\n')
    assert errors == [] and found[0].labels == ["a"]


def test_import_notes_are_empty_without_predictions():
    assert import_notes(records(2)) == []


# --- multi-hot tables ------------------------------------------------------------------------------------------------
def test_a_multi_hot_csv_upload_is_detected_and_an_all_empty_row_is_unlabelled(project, manager):
    data = b"id,text,joy,anger\n1,first text,1,0\n2,second text,0,0\n3,third text,,\n4,fourth,1,yes\n"
    response = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/documents/",
        {"file": SimpleUploadedFile("hot.csv", data)},
        format="multipart",
    )
    assert response.status_code == 400 and response.json()["errors"] == ["line 5: label column(s) anger must be 0 or 1"]
    response = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/documents/",
        {"file": SimpleUploadedFile("hot.csv", data.rsplit(b"4,", 1)[0])},
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    assert _content(project) == {
        "1": ("first text", frozenset({"joy"})),
        "2": ("second text", frozenset()),
        "3": ("third text", None),
    }


def test_a_multi_hot_parquet_and_jsonl_are_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": ["a", "b"], "text": ["one", "two"], "joy": [True, False], "fear": [1, 1]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    found, errors = parse_file("hot.parquet", buffer.getvalue())
    assert errors == [] and [r.labels for r in found] == [["joy", "fear"], ["fear"]]
    found, errors = formats.parse_parquet(buffer.getvalue(), label_columns=["fear"])
    assert errors == [
        "unknown column(s) joy: name the label columns (label_columns / --label-columns) or detect them "
        "(multi_hot / --multi-hot), or drop them"
    ]
    lines = b'{"id": "a", "text": "one", "joy": 1, "fear": 0}\n\n{"id": "b", "text": "", "joy": 0, "fear": 1}\n'
    found, errors = formats.parse_jsonl_table(lines, multi_hot=True)
    assert [r.labels for r in found] == [["joy"]] and errors == ['line 3: "text" is empty']


def test_the_multi_hot_csv_export_reimports_to_the_same_answers(sample_project, manager):
    project, expected = sample_project
    exported = _download(
        client_for(manager).get(f"/api/v1/projects/{project.pk}/export/", {"format": "csv", "multi_hot": "1"})
    )
    header = exported.split(b"\n", 1)[0].decode().strip().split(",")
    assert header[:2] == ["id", "text"] and len(header) == 2 + len({n for _, ls in expected.values() for n in ls})
    assert {k: v[1] for k, v in _reimport(manager, exported, "hot.csv").items()} == {
        k: v[1] for k, v in expected.items()
    }


# --- the export API and the commands -------------------------------------------------------------------------------
def test_the_export_formats_are_for_managers_only_and_bad_options_are_named(project, manager, annotator_user):
    services.documents_import(project=project, user=manager, records=records(2, labels=[["joy"], []]))
    url = f"/api/v1/projects/{project.pk}/export/"
    for fmt in ("labelstudio", "parquet"):
        assert client_for(annotator_user).get(url, {"format": fmt}).status_code == 403
        assert client_for(make_user(f"outsider-{fmt}")).get(url, {"format": fmt}).status_code == 404
    response = client_for(manager).get(url, {"format": "xlsx"})
    assert response.status_code == 400 and "labelstudio" in response.json()["detail"]
    assert client_for(manager).get(url, {"format": "jsonl", "multi_hot": "1"}).status_code == 400
    assert (
        client_for(manager)
        .get(url, {"format": "csv", "multi_hot": "1"})["Content-Disposition"]
        .endswith('multi-hot.csv"')
    )


def test_the_import_command_refuses_a_bad_file_naming_the_record_and_imports_nothing(project, manager, tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps([{"data": {"text": "ok"}}, {"data": {"text": ""}}]))
    with pytest.raises(CommandError, match='task 2: "text" is empty'):
        call_command("import_documents", project.pk, str(path), stdout=io.StringIO())
    assert not Document.objects.filter(project=project).exists()
    with pytest.raises(CommandError, match="only managers"):
        call_command("import_documents", project.pk, str(path), user="annotator", stdout=io.StringIO())


def test_the_export_command_writes_every_format_and_never_overwrites(project, manager, tmp_path):
    services.documents_import(project=project, user=manager, records=records(3, labels=[["joy"], ["fear"], []]))
    for fmt in ("jsonl", "csv", "labelstudio", "parquet"):
        target = tmp_path / f"out.{fmt}"
        call_command("export_project", project.pk, str(target), format=fmt, no_progress=True, stdout=io.StringIO())
        assert target.stat().st_size > 0
    with pytest.raises(CommandError, match="already exists"):
        call_command("export_project", project.pk, str(tmp_path / "out.csv"), format="csv", stdout=io.StringIO())
    again = _project(manager, "again", [])
    call_command(
        "import_documents",
        again.pk,
        str(tmp_path / "out.labelstudio"),
        format="labelstudio",
        create_labels=True,
        stdout=io.StringIO(),
    )
    assert _content(again) == _content(project)
    assert Annotation.objects.filter(project=again).count() == 3


def test_the_manage_page_imports_label_studio_and_says_how_many_predictions_were_stored(client, project, manager):
    tasks = [{"data": {"text": "one"}, "predictions": [{"result": [_choice(["joy"])]}]}]
    client.force_login(manager)
    response = client.post(
        f"/projects/{project.pk}/manage/import/",
        {"file": SimpleUploadedFile("tasks.json", json.dumps(tasks).encode())},
        follow=True,
    )
    page = response.content.decode()
    assert "Imported 1 documents with 0 seed annotations." in page
    assert "1 pre-annotation(s) stored." in page
    assert PreAnnotation.objects.get(document__project=project).source == "labelstudio"  # no model_version
    assert 'format=labelstudio">Label Studio JSON</a>' in page


def test_our_own_jsonl_export_imports_back_as_it_is(sample_project, manager):
    project, expected = sample_project
    exported = _download(client_for(manager).get(f"/api/v1/projects/{project.pk}/export/", {"format": "jsonl"}))
    assert _reimport(manager, exported, "export.jsonl") == expected


def test_the_web_process_does_not_load_datasets_until_a_file_needs_it():
    import subprocess
    import sys

    code = (
        "import django, sys; django.setup(); import annotator.formats, annotator.api.views; "
        "print(sorted(m for m in ('datasets', 'pyarrow') if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    root = Path(__file__).resolve().parents[2]
    found = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert found.stdout.strip().splitlines()[-1] == "[]", found.stderr[-2000:]


def test_the_import_command_keeps_the_upload_size_limit(project, manager, tmp_path, settings):
    settings.ALABEL_MAX_IMPORT_BYTES = 10
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "1", "text": "a text longer than ten bytes"}\n')
    with pytest.raises(CommandError, match="the limit is"):
        call_command("import_documents", project.pk, str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert not Document.objects.filter(project=project).exists()


def test_our_own_csv_export_imports_back_with_none_apply_and_formula_cells(project, manager):
    batch = records(3, labels=[["joy", "fear"], [], ["anger"]])
    batch[2].text = "-1 point for the cat"  # written as '-1 ... so that a spreadsheet shows it as text
    services.documents_import(project=project, user=manager, records=batch)
    exported = _download(client_for(manager).get(f"/api/v1/projects/{project.pk}/export/", {"format": "csv"}))
    assert b"'-1 point" in exported
    assert _reimport(manager, exported, "export.csv") == _content(project)
