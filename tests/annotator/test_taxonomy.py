"""The taxonomy: label files (CSV, TSV, JSON), editing, renaming, merging and deprecating labels, the hierarchy API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotator import services
from annotator.exceptions import ProjectError
from annotator.importing import parse_label_file
from annotator.models import Activity, Annotation, Label, LabelAlias, QueueItem, SuggestionDecision
from annotator.selectors.taxonomy import label_tree
from annotator.services.taxonomy import label_deprecate, label_merge, label_update, labels_import

from .conftest import client_for

TIBKAT_LABELS = Path("/work/shared/datasets/tibkat-gnd/labels.tsv")
GND_CSV = (
    "name,description,alt_names,external_id,parent\n"
    "Sozialwissenschaften,,Social sciences,gnd:4055916-6,\n"
    "Soziologie,Wissenschaft vom Zusammenleben,Sociology|Gesellschaftslehre,gnd:4077624-4,gnd:4055916-6\n"
    "Desintegration (Soziologie),,Social disintegration,gnd:4149373-4,Soziologie\n"
    "Architektur,,Architecture,gnd:4002851-3,\n"
)


def _import(project, manager, name: str, text: str) -> dict:
    parsed = parse_label_file(name, text.encode())
    return labels_import(project=project, user=manager, records=parsed.records, parse_errors=parsed.errors)


def _upload(client, project, name: str, text: str | bytes):
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        f"/api/v1/projects/{project.pk}/labels/import/",
        {"file": SimpleUploadedFile(name, data)},
        format="multipart",
    )


# Label files --------------------------------------------------------------------------------------------------------


def test_csv_label_file_creates_labels_with_hierarchy_ids_and_alternative_names(project, manager):
    result = _import(project, manager, "gnd.csv", GND_CSV)
    assert result["created"] == 4 and result["updated"] == 0
    soziologie = Label.objects.get(project=project, name="Soziologie")
    assert soziologie.external_id == "gnd:4077624-4"
    assert soziologie.description == "Wissenschaft vom Zusammenleben"
    assert soziologie.parent.name == "Sozialwissenschaften"
    assert Label.objects.get(project=project, name="Desintegration (Soziologie)").parent == soziologie
    assert sorted(soziologie.aliases.values_list("name", flat=True)) == ["Gesellschaftslehre", "Sociology"]
    assert LabelAlias.objects.get(name="Sociology").search_key == "sociology"
    activity = Activity.objects.filter(project=project).first()
    assert "4 label(s) created" in activity.message


def test_a_second_import_updates_by_external_id_and_renames(project, manager):
    _import(project, manager, "gnd.csv", GND_CSV)
    first = Label.objects.get(project=project, external_id="gnd:4002851-3")
    result = _import(
        project,
        manager,
        "gnd.tsv",
        "label\tgnd_id\tdescription\nBaukunst\tgnd:4002851-3\tGebäude entwerfen\nStädtebau\tgnd:4056730-8\t\n",
    )
    assert result["created"] == 1 and result["updated"] == 1
    first.refresh_from_db()
    assert first.name == "Baukunst" and first.search_key == "baukunst"
    assert first.description == "Gebäude entwerfen"
    assert "Architektur" in first.aliases.values_list("name", flat=True)  # the old name is still found
    assert first.aliases.filter(name="Architecture").exists()  # no alt_names column: kept


def test_json_label_file_and_existing_names_match(project, manager):
    items = [
        {"name": "joy", "description": "happiness", "alt_names": ["Freude"], "external_id": "emo:1"},
        {"name": "delight", "parent": "joy"},
    ]
    result = _import(project, manager, "labels.json", json.dumps(items))
    assert result == {"created": 1, "updated": 1, "unchanged": 0, "alt_names": 1, "labels": 6}
    joy = Label.objects.get(project=project, name="joy")
    assert (joy.description, joy.external_id) == ("happiness", "emo:1")
    assert Label.objects.get(project=project, name="delight").parent == joy


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,parent\nA,Nowhere\n", "line 2 ('A'): unknown parent 'Nowhere'"),
        ("name,parent\nA,B\nB,C\nC,A\n", "line 2 ('A'): the parents form a cycle"),
        ("name,parent\nA,A\n", "line 2 ('A'): is its own parent"),
        ("name\nA\nA\n", "line 3 ('A'): the name is also on line 2"),
        ("name,external_id\nA,x:1\nB,x:1\n", "line 3 ('B'): the external id 'x:1' is also on line 2"),
        ("name,description\n,empty name\n", "line 2: the name is empty"),
        ("name\nbad\x00name\n", "line 2: the name contains a NUL character"),
        ("name\n" + "x" * 256 + "\n", "line 2: the name is 256 characters long; the limit is 255"),
        ("name\na|b\n", "a name cannot contain '|'"),
        ("description\nno name column\n", "line 1: the header row must name a column name"),
    ],
)
def test_bad_label_files_name_the_line_and_change_nothing(project, manager, manager_client, text, message):
    before = list(Label.objects.filter(project=project).values_list("id", "name", "parent_id"))
    response = _upload(manager_client, project, "labels.csv", text)
    assert response.status_code == 400, response.content
    body = response.json()
    assert any(message in error for error in body.get("errors", [body["detail"]])), body
    assert list(Label.objects.filter(project=project).values_list("id", "name", "parent_id")) == before
    assert not LabelAlias.objects.exists()


def test_every_bad_line_is_named_at_once(project, manager):
    with pytest.raises(ProjectError) as caught:
        _import(project, manager, "l.csv", "name,parent\nA,Nowhere\nB,\n,B\nC,Elsewhere\n")
    assert len(caught.value.errors) == 3
    assert "nothing was changed" in caught.value.message
    assert not Label.objects.filter(project=project, name__in=["A", "B", "C"]).exists()


def test_a_rename_onto_another_labels_name_is_refused(project, manager):
    _import(project, manager, "a.csv", "name,external_id\nanger,emo:2\n")
    with pytest.raises(ProjectError) as caught:
        _import(project, manager, "b.csv", "name,external_id\njoy,emo:2\n")
    assert any("to a name another label of the project has" in error for error in caught.value.errors)


def test_an_existing_cycle_through_the_project_is_refused(project, manager):
    _import(project, manager, "a.csv", "name,parent\nA,\nB,A\n")
    with pytest.raises(ProjectError) as caught:
        _import(project, manager, "b.csv", "name,parent\nA,B\n")
    assert any("cycle" in error for error in caught.value.errors)
    assert Label.objects.get(project=project, name="A").parent is None


@pytest.mark.skipif(not TIBKAT_LABELS.exists(), reason="the tibkat-gnd data set is not on this machine")
def test_tibkat_gnd_labels_head_with_gnd_ids(project, manager, manager_client):
    head = "".join(TIBKAT_LABELS.open(encoding="utf-8").readlines()[:301])
    response = _upload(manager_client, project, "labels.tsv", head)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["created"] == 300
    assert body["ignored_columns"] == ["train", "dev", "test"]
    architektur = Label.objects.get(project=project, name="Architektur")
    assert architektur.external_id == "gnd:4002851-3"
    # Imported again: matched by GND id, nothing new.
    again = _upload(manager_client, project, "labels.tsv", head).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 300)


def test_import_permissions(project, annotator_client, outsider):
    assert _upload(annotator_client, project, "l.csv", "name\nnew\n").status_code == 403
    assert _upload(client_for(outsider), project, "l.csv", "name\nnew\n").status_code == 404
    assert not Label.objects.filter(name="new").exists()


def test_import_refuses_unknown_file_types_and_json_fields(project, manager_client):
    response = _upload(manager_client, project, "labels.xlsx", "name\nx\n")
    assert response.status_code == 400 and "upload a .csv, .tsv or .json file" in response.json()["detail"]
    response = manager_client.post(
        f"/api/v1/projects/{project.pk}/labels/import/", [{"name": "x", "colour": "red"}], format="json"
    )
    assert response.status_code == 400
    assert "item 1: unknown field(s) colour" in response.json()["errors"]


# Editing one label --------------------------------------------------------------------------------------------------


def _answer(project, user, document, labels):
    return services.annotation_submit(project=project, user=user, document_id=document.pk, labels=labels)


def test_rename_keeps_answers_and_finds_the_old_name(project, manager, annotator_user, documents):
    joy = Label.objects.get(project=project, name="joy")
    annotation = _answer(project, annotator_user, documents[0], ["joy"])
    label_update(project=project, user=manager, label_id=joy.pk, name="Joy (emotion)")
    annotation.refresh_from_db()
    assert list(annotation.labels.values_list("name", flat=True)) == ["Joy (emotion)"]
    assert list(joy.aliases.values_list("name", flat=True)) == ["joy"]
    assert "renamed from 'joy'" in Activity.objects.filter(project=project).first().message
    with pytest.raises(ProjectError, match="another label of this project is called 'anger'"):
        label_update(project=project, user=manager, label_id=joy.pk, name="anger")


def test_edit_description_alt_names_external_id_and_parent_through_the_api(project, manager_client):
    joy, anger = (Label.objects.get(project=project, name=n) for n in ("joy", "anger"))
    url = f"/api/v1/projects/{project.pk}/labels/{joy.pk}/"
    response = manager_client.patch(
        url,
        {
            "description": "<b>happy</b>",
            "alt_names": ["Freude", "gladness"],
            "external_id": "gnd:1",
            "parent": anger.pk,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["description"] == "<b>happy</b>"
    assert body["alt_names"] == ["Freude", "gladness"]
    assert (body["external_id"], body["parent"], body["parent_name"]) == ("gnd:1", anger.pk, "anger")
    # A cycle, an unknown parent, a field it does not know, an external id another label has: 400, nothing changes.
    cycle = manager_client.patch(f"/api/v1/projects/{project.pk}/labels/{anger.pk}/", {"parent": joy.pk}, format="json")
    assert cycle.status_code == 400 and "cycle" in cycle.json()["detail"]
    assert manager_client.patch(url, {"parent": 10**9}, format="json").status_code == 400
    unknown = manager_client.patch(url, {"colour": "red"}, format="json")
    assert unknown.status_code == 400 and "colour" in unknown.json()["detail"]
    other = manager_client.patch(
        f"/api/v1/projects/{project.pk}/labels/{anger.pk}/", {"external_id": "gnd:1"}, format="json"
    )
    assert other.status_code == 400 and "gnd:1" in other.json()["detail"]
    anger.refresh_from_db()
    assert (anger.parent_id, anger.external_id) == (None, "")


def test_merge_moves_answers_without_duplicates_and_deletes_the_label(project, manager, annotator_user, documents):
    joy, anger = (Label.objects.get(project=project, name=n) for n in ("joy", "anger"))
    both = _answer(project, annotator_user, documents[0], ["joy", "anger"])
    only_joy = _answer(project, annotator_user, documents[1], ["joy", "fear"])
    neither = _answer(project, annotator_user, documents[2], ["fear"])
    # Suggestions shown with the answers: joy and anger shown on `both`, joy rejected on `neither`.
    SuggestionDecision.objects.create(
        annotation=both, label=joy, rank=1, score=0.9, preselected=True, decision="accepted"
    )
    SuggestionDecision.objects.create(
        annotation=both, label=anger, rank=2, score=0.4, preselected=False, decision="accepted"
    )
    SuggestionDecision.objects.create(
        annotation=neither, label=joy, rank=1, score=0.6, preselected=False, decision="rejected"
    )
    Annotation.objects.filter(pk=both.pk).update(
        suggestions=[
            {"label": "joy", "score": 0.9, "preselected": True},
            {"label": "anger", "score": 0.4, "preselected": False},
        ]
    )
    item = QueueItem.objects.create(
        project=project, document=documents[3], strategy="s", score=1.0, suggestions=[[joy.pk, 0.3], [anger.pk, 0.7]]
    )
    LabelAlias.objects.create(project=project, label=joy, name="Freude", search_key="freude")

    target = label_merge(project=project, user=manager, label_id=joy.pk, into_id=anger.pk)

    assert not Label.objects.filter(pk=joy.pk).exists()
    assert sorted(both.labels.values_list("name", flat=True)) == ["anger"]
    assert sorted(only_joy.labels.values_list("name", flat=True)) == ["anger", "fear"]
    assert sorted(neither.labels.values_list("name", flat=True)) == ["fear"]
    assert target.frequency == 2
    assert list(both.decisions.values_list("label__name", "decision")) == [("anger", "accepted")]
    assert list(neither.decisions.values_list("label__name", "decision")) == [("anger", "rejected")]
    both.refresh_from_db()
    assert [s["label"] for s in both.suggestions] == ["anger"]
    item.refresh_from_db()
    assert item.suggestions == [[anger.pk, 0.7]]
    assert sorted(target.aliases.values_list("name", flat=True)) == ["Freude", "joy"]
    assert "merged into 'anger' (2 answer(s) moved)" in Activity.objects.filter(project=project).first().message


def test_merge_refuses_itself_other_projects_and_deprecated_targets(project, manager, manager_client):
    joy, anger = (Label.objects.get(project=project, name=n) for n in ("joy", "anger"))
    with pytest.raises(ProjectError, match="into itself"):
        label_merge(project=project, user=manager, label_id=joy.pk, into_id=joy.pk)
    other = services.project_create(user=manager, name="Other", labels=["elsewhere"])
    foreign = other.labels.get()
    url = f"/api/v1/projects/{project.pk}/labels/{joy.pk}/merge/"
    assert manager_client.post(url, {"into": foreign.pk}, format="json").status_code == 404
    label_deprecate(project=project, user=manager, label_id=anger.pk)
    response = manager_client.post(url, {"into": anger.pk}, format="json")
    assert response.status_code == 400 and "restore it" in response.json()["detail"]
    assert Label.objects.filter(pk=joy.pk).exists()
    fear = Label.objects.get(project=project, name="fear")
    merged = manager_client.post(url, {"into": fear.pk}, format="json")
    assert merged.status_code == 200, merged.content
    assert (merged.json()["name"], merged.json()["alt_names"]) == ("fear", ["joy"])
    assert not Label.objects.filter(pk=joy.pk).exists()


def test_merge_moves_children_and_never_makes_a_cycle(project, manager):
    _import(project, manager, "h.csv", "name,parent\nRoot,\nA,Root\nB,A\nC,B\nD,A\n")
    a, c = (Label.objects.get(project=project, name=n) for n in ("A", "C"))
    label_merge(project=project, user=manager, label_id=a.pk, into_id=c.pk)  # C is A's grandchild
    c.refresh_from_db()
    assert c.parent.name == "Root"
    assert sorted(c.children.values_list("name", flat=True)) == ["B", "D"]
    assert Label.objects.get(project=project, name="B").parent == c


def test_deprecate_and_restore_keep_answers_and_leave_the_tree(project, manager, annotator_user, documents):
    fear = Label.objects.get(project=project, name="fear")
    annotation = _answer(project, annotator_user, documents[0], ["fear"])
    label_deprecate(project=project, user=manager, label_id=fear.pk)
    fear.refresh_from_db()
    assert fear.deprecated_at is not None
    assert list(annotation.labels.values_list("name", flat=True)) == ["fear"]
    assert "fear" not in [row["name"] for row in label_tree(project=project, parent_id=None)["labels"]]
    assert "deprecated" in Activity.objects.filter(project=project).first().message
    label_deprecate(project=project, user=manager, label_id=fear.pk, deprecated=False)
    fear.refresh_from_db()
    assert fear.deprecated_at is None
    assert "fear" in [row["name"] for row in label_tree(project=project, parent_id=None)["labels"]]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("patch", "", {"description": "x"}),
        ("post", "merge/", {"into": 1}),
        ("post", "deprecate/", None),
        ("post", "restore/", None),
    ],
)
def test_annotators_may_not_change_labels_and_outsiders_see_nothing(
    project, annotator_client, outsider, method, suffix, body
):
    joy = Label.objects.get(project=project, name="joy")
    url = f"/api/v1/projects/{project.pk}/labels/{joy.pk}/{suffix}"
    assert getattr(annotator_client, method)(url, body, format="json").status_code == 403
    assert getattr(client_for(outsider), method)(url, body, format="json").status_code == 404
    joy.refresh_from_db()
    assert (joy.description, joy.deprecated_at) == ("", None)
    assert not Activity.objects.filter(project=project, kind=Activity.Kind.LABELS).exists()


# The hierarchy API and the manager's label list -------------------------------------------------------------------


def test_tree_api_lists_one_level_by_name_with_child_counts(project, manager, annotator_client):
    _import(project, manager, "gnd.csv", GND_CSV + "Makrosoziologie,,,,Soziologie\nAlt,,,,Soziologie\n")
    alt = Label.objects.get(project=project, name="Alt")
    label_deprecate(project=project, user=manager, label_id=alt.pk)
    url = f"/api/v1/projects/{project.pk}/labels/tree/"
    roots = annotator_client.get(url).json()  # every member may read it
    assert roots["parent"] is None
    names = [row["name"] for row in roots["labels"]]
    assert names == sorted(names) and "Architektur" in names and "Soziologie" not in names
    social = next(row for row in roots["labels"] if row["name"] == "Sozialwissenschaften")
    assert social["children"] == 1 and social["external_id"] == "gnd:4055916-6"
    soziologie = Label.objects.get(project=project, name="Soziologie")
    level = annotator_client.get(url, {"parent": soziologie.pk}).json()
    assert level["parent"] == soziologie.pk
    assert [row["name"] for row in level["labels"]] == ["Desintegration (Soziologie)", "Makrosoziologie"]
    assert level["count"] == 2
    page = annotator_client.get(url, {"parent": soziologie.pk, "limit": 1, "offset": 1}).json()
    assert [row["name"] for row in page["labels"]] == ["Makrosoziologie"]
    assert annotator_client.get(url, {"parent": 10**9}).status_code == 404
    assert annotator_client.get(url, {"parent": "x"}).status_code == 400


def test_managers_see_taxonomy_fields_in_label_lists(project, manager, manager_client, annotator_client):
    _import(project, manager, "gnd.csv", GND_CSV)
    hits = manager_client.get(f"/api/v1/projects/{project.pk}/labels/", {"q": "soziologie"}).json()
    soziologie = next(hit for hit in hits if hit["name"] == "Soziologie")
    assert soziologie["external_id"] == "gnd:4077624-4"
    assert soziologie["alt_names"] == ["Sociology", "Gesellschaftslehre"]
    assert soziologie["deprecated"] is False
    plain = annotator_client.get(f"/api/v1/projects/{project.pk}/labels/", {"q": "soziologie"}).json()
    assert "external_id" not in plain[0]
    listed = manager_client.get(f"/api/v1/projects/{project.pk}/labels/taxonomy/", {"q": "sociology"}).json()
    assert [row["name"] for row in listed["labels"]] == ["Soziologie"]  # found by its alternative name
    by_id = manager_client.get(f"/api/v1/projects/{project.pk}/labels/taxonomy/", {"q": "gnd:4002851-3"}).json()
    assert [row["name"] for row in by_id["labels"]] == ["Architektur"]
    assert annotator_client.get(f"/api/v1/projects/{project.pk}/labels/taxonomy/").status_code == 403


def test_tree_and_import_queries_do_not_grow_with_the_labels(
    project, manager, annotator_client, django_assert_max_num_queries
):
    lines = ["name,external_id,parent,alt_names"] + [
        f"Label {i},x:{i},{'' if i < 10 else f'x:{i % 10}'},Alias {i}|Other {i}" for i in range(300)
    ]
    with django_assert_max_num_queries(40):  # bulk writes: not one query per label
        result = _import(project, manager, "many.csv", "\n".join(lines) + "\n")
    assert result["created"] == 300 and result["alt_names"] == 600
    with django_assert_max_num_queries(8):
        roots = annotator_client.get(f"/api/v1/projects/{project.pk}/labels/tree/").json()
    assert roots["count"] == 15  # 10 roots of the file and the project's 5 labels
    assert next(row for row in roots["labels"] if row["name"] == "Label 3")["children"] == 29


# A taxonomy at project creation --------------------------------------------------------------------------------------


def test_the_create_page_takes_a_label_file(manager):
    from django.test import Client

    from annotator.models import Project

    client = Client()
    client.force_login(manager)
    page = client.get("/projects/new/")
    assert b'enctype="multipart/form-data"' in page.content and b'name="label_file"' in page.content
    response = client.post(
        "/projects/new/",
        {
            "name": "GND subjects",
            "retrain_every": 20,
            "strategy": "default",
            "label_file": SimpleUploadedFile("gnd.csv", GND_CSV.encode()),
        },
    )
    assert response.status_code == 302, response.content[:2000]
    project = Project.objects.get(name="GND subjects")
    soziologie = Label.objects.get(project=project, name="Soziologie")
    assert soziologie.external_id == "gnd:4077624-4" and soziologie.parent.name == "Sozialwissenschaften"
    assert sorted(soziologie.aliases.values_list("name", flat=True)) == ["Gesellschaftslehre", "Sociology"]
    assert Activity.objects.filter(project=project, kind=Activity.Kind.LABELS).exists()

    # A bad file: the page names the line, and no project is created.
    bad = client.post(
        "/projects/new/",
        {
            "name": "Broken",
            "retrain_every": 20,
            "strategy": "default",
            "label_file": SimpleUploadedFile("bad.csv", b"name,parent\nA,Nowhere\n"),
        },
    )
    assert bad.status_code == 200
    assert "unknown parent" in bad.content.decode()
    assert not Project.objects.filter(name="Broken").exists()


def test_the_api_creates_a_project_with_a_taxonomy_all_or_nothing(manager):
    from annotator.models import Project

    client = client_for(manager)
    labels = [
        {"name": "Soziologie", "alt_names": ["Sociology"], "external_id": "gnd:4077624-4"},
        {"name": "Desintegration (Soziologie)", "parent": "gnd:4077624-4"},
    ]
    response = client.post("/api/v1/projects/", {"name": "GND", "labels": labels}, format="json")
    assert response.status_code == 201, response.content
    project = Project.objects.get(pk=response.json()["id"])
    child = Label.objects.get(project=project, name="Desintegration (Soziologie)")
    assert child.parent.external_id == "gnd:4077624-4"
    assert LabelAlias.objects.filter(label__project=project, name="Sociology").exists()

    bad = [*labels, {"name": "Orphan", "parent": "Nowhere"}]
    response = client.post("/api/v1/projects/", {"name": "GND 2", "labels": bad}, format="json")
    assert response.status_code == 400
    assert "unknown parent 'Nowhere'" in json.dumps(response.json())
    assert not Project.objects.filter(name="GND 2").exists()
