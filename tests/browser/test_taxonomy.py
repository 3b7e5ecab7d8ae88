"""The taxonomy on the manage page in a real browser: upload a label file, see a bad one refused, rename a label."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from annotator import services
from annotator.models import Label, LabelAlias

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery"
LABEL_FILE = (
    "name,description,alt_names,external_id,parent\n"
    "Soziologie,Wissenschaft vom Zusammenleben,Sociology,gnd:4077624-4,\n"
    "Desintegration (Soziologie),,Social disintegration,gnd:4149373-4,gnd:4077624-4\n"
    "<b>Architektur</b>,,Architecture,gnd:4002851-3,\n"
)


@pytest.fixture
def taxonomy_project(transactional_db):
    user = get_user_model().objects.create_user(username="curator", password=PASSWORD)
    user.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    user = get_user_model().objects.get(pk=user.pk)
    return services.project_create(user=user, name="Subject headings", labels=["joy"])


def test_upload_a_label_file_and_rename_a_label_on_the_manage_page(page, live_server, taxonomy_project):
    from playwright.sync_api import expect

    project = taxonomy_project
    login(page, live_server, "curator", PASSWORD)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    section = page.locator("#taxonomy")

    # A bad file: every bad line named, nothing imported.
    page.set_input_files(
        "#label-file-form input[type=file]",
        {"name": "bad.csv", "mimeType": "text/csv", "buffer": b"name,parent\nA,Nowhere\n"},
    )
    section.get_by_role("button", name="Import labels").click()
    expect(page.locator("#taxonomy-status")).to_contain_text("Nothing was imported")
    expect(page.locator("#taxonomy-errors")).to_contain_text("line 2 ('A'): unknown parent 'Nowhere'")
    assert not Label.objects.filter(project=project, name="A").exists()

    page.set_input_files(
        "#label-file-form input[type=file]",
        {"name": "gnd.csv", "mimeType": "text/csv", "buffer": LABEL_FILE.encode()},
    )
    section.get_by_role("button", name="Import labels").click()
    expect(page.locator("#taxonomy-status")).to_contain_text("3 created, 0 updated")
    rows = page.locator("#taxonomy-labels tbody tr")
    expect(rows).to_have_count(4)
    # The markup in a name is shown as text, never run as HTML.
    expect(rows.filter(has_text="<b>Architektur</b>")).to_have_count(1)
    assert page.locator("#taxonomy-labels b").count() == 0
    child = rows.filter(has_text="Desintegration (Soziologie)")
    expect(child).to_contain_text("gnd:4149373-4")
    expect(child.locator("td").nth(2)).to_have_text("Soziologie")  # the parent

    # Rename: the old name stays findable as an alternative name.
    page.get_by_role("button", name="Edit Soziologie").click()
    editor = page.locator("#label-edit-form")
    expect(editor).to_be_visible()
    editor.locator("input[name=name]").fill("Soziologie (Wissenschaft)")
    editor.get_by_role("button", name="Save label").click()
    expect(page.locator("#taxonomy-status")).to_have_text('Saved "Soziologie (Wissenschaft)".')
    label = Label.objects.get(project=project, external_id="gnd:4077624-4")
    expect(page.locator(f'#taxonomy-labels tr[data-label="{label.pk}"]')).to_contain_text("Sociology | Soziologie")
    label.refresh_from_db()
    assert label.name == "Soziologie (Wissenschaft)"
    assert LabelAlias.objects.filter(label=label, name="Soziologie").exists()

    # Search by the old name finds the renamed label; deprecate it from the editor.
    page.locator("#label-search-form input[name=q]").fill("soziologie")
    page.get_by_role("button", name="Search labels").click()
    expect(page.locator("#taxonomy-count")).to_have_text("Showing 2 of 2 label(s).")
    editor.get_by_role("button", name="Deprecate").click()
    expect(page.locator("#taxonomy-status")).to_have_text('Deprecated "Soziologie (Wissenschaft)".')
    label.refresh_from_db()
    assert label.deprecated_at is not None


def test_merge_a_duplicate_label_on_the_manage_page_and_its_answers_follow(page, live_server, taxonomy_project):
    from playwright.sync_api import expect

    from annotator.importing import ImportRecord
    from annotator.models import Activity, AnnotationLabel

    project = taxonomy_project
    services.labels_add(project=project, labels=["Soziologie", "Sociology (duplicate)"])
    user = get_user_model().objects.get(username="curator")
    services.documents_import(
        project=project,
        user=user,
        records=[ImportRecord(1, "d1", "A history of sociology", ["Sociology (duplicate)", "joy"])],
    )
    login(page, live_server, "curator", PASSWORD)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))

    page.get_by_role("button", name="Edit Sociology (duplicate)").click()
    editor = page.locator("#label-edit-form")
    editor.locator("input[name=into]").fill("Nowhere")
    editor.get_by_role("button", name="Merge").click()
    expect(page.locator("#taxonomy-status")).to_contain_text(
        'merge into: no label is named or has the external id "Nowhere"'
    )
    assert Label.objects.filter(project=project, name="Sociology (duplicate)").exists()  # nothing changed

    editor.locator("input[name=into]").fill("Soziologie")
    editor.get_by_role("button", name="Merge").click()
    expect(page.locator("#taxonomy-status")).to_have_text('Merged "Sociology (duplicate)" into "Soziologie".')
    assert dialogs == ['Merge "Sociology (duplicate)" into "Soziologie"?']
    expect(page.locator("#taxonomy-labels tbody tr").filter(has_text="Sociology (duplicate)")).to_contain_text(
        "Soziologie"
    )  # the kept label's row lists the merged name as an alternative name
    assert not Label.objects.filter(project=project, name="Sociology (duplicate)").exists()
    answered = AnnotationLabel.objects.filter(annotation__document__external_id="d1", annotation__project=project)
    assert sorted(answered.values_list("label__name", flat=True)) == ["Soziologie", "joy"]  # the answer followed
    assert Activity.objects.filter(project=project, message__contains="merged into 'Soziologie'").exists()
    page.reload()
    expect(page.locator("#activity")).to_contain_text(
        "Label 'Sociology (duplicate)' merged into 'Soziologie' (1 answer(s) moved)"
    )
