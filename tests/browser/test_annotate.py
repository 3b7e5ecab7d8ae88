"""The annotate page in a real browser: keyboard and mouse, suggestions from a real trained model."""

from __future__ import annotations

import pytest

from annotator import services
from annotator.importing import ImportRecord
from annotator.models import Annotation, Job, ModelVersion, Project
from annotator.services.demo import demo_labels, demo_records, demo_setup
from learner.strategies import DEFAULT_STRATEGY

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _run_pending(project: Project, kind: str, runner) -> None:
    job, _ = services.job_request(project=project, kind=kind, reason="test")
    runner(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED", job.error


@pytest.fixture
def trained_project(transactional_db, tmp_path):
    """The demo users, and a small project of demo documents with a model trained on 20 seed labels."""
    info = demo_setup(data_dir=tmp_path)
    manager = Project.objects.get(pk=info.project_id).created_by
    project = services.project_create(user=manager, name="Browser check", labels=demo_labels())
    services.member_add(project=project, username="demo-annotator", role="annotator")
    sample = demo_records(60, with_labels=True)
    for index, record in enumerate(sample):
        record.labels = record.labels if index < 20 else None
    services.documents_import(project=project, user=manager, records=sample)
    _run_pending(project, "encode", services.encode_run)
    _run_pending(project, "train", services.training_run)
    _run_pending(project, "score", services.scoring_run)
    assert ModelVersion.objects.filter(project=project, is_serving=True).exists()
    return project, info.credentials


def test_annotator_labels_with_keyboard_and_mouse_and_gets_the_next_document(page, live_server, trained_project):
    project, credentials = trained_project
    login(page, live_server, "demo-annotator", credentials["demo-annotator"])
    page.get_by_role("row", name="Browser check").get_by_role("link", name="Annotate").click()

    page.wait_for_selector("#suggestions li")
    first_text = page.text_content("#doc-text")
    assert first_text and first_text != "Loading…"
    suggestions = page.eval_on_selector_all(
        "#suggestions input[type=checkbox]", "boxes => boxes.map(b => [b.dataset.label, b.checked])"
    )
    assert len(suggestions) == 10
    scores = [float(s) for s in page.eval_on_selector_all("#suggestions .score", "xs => xs.map(x => x.textContent)")]
    assert scores == sorted(scores, reverse=True)
    chosen = {label for label, checked in suggestions if checked}

    # Keyboard: "1" toggles the first suggestion; "/" searches; arrows + Enter pick a result.
    page.locator("body").press("1")
    chosen ^= {suggestions[0][0]}
    page.keyboard.press("/")
    page.keyboard.type("gratit")
    page.wait_for_selector("#search-results li.active")
    page.keyboard.press("ArrowDown")  # wraps around to the only result
    page.keyboard.press("Enter")
    chosen.add("gratitude")
    page.keyboard.press("Escape")
    # Mouse: tick the second suggestion's box.
    page.locator("#suggestions input[type=checkbox]").nth(1).click()
    chosen ^= {suggestions[1][0]}
    chips = set(page.eval_on_selector_all("#chosen .chip span", "xs => xs.map(x => x.textContent)"))
    assert chips == chosen

    page.keyboard.press("Enter")  # focus is on the ticked checkbox: Enter still submits
    page.wait_for_function("t => document.querySelector('#doc-text').textContent !== t", arg=first_text)
    assert page.text_content("#done-count") == "1"

    document_text = first_text
    annotation = Annotation.objects.get(document__project=project, document__text=document_text, source="ui")
    assert set(annotation.labels.values_list("name", flat=True)) == chosen
    assert annotation.annotator.username == "demo-annotator"
    assert annotation.model_version.number == 1 and annotation.strategy == DEFAULT_STRATEGY
    assert len(annotation.suggestions) == 10
    assert annotation.seconds_spent is not None and annotation.seconds_spent > 0


def test_document_text_is_escaped(page, live_server, transactional_db, tmp_path):
    info = demo_setup(data_dir=tmp_path)
    manager = Project.objects.get(pk=info.project_id).created_by
    project = services.project_create(user=manager, name="Escaping", labels=["a"])
    services.member_add(project=project, username="demo-annotator", role="annotator")
    payload = "<img src=x onerror=alert(1)> <script>alert(2)</script> <b>bold</b>"
    services.documents_import(
        project=project,
        user=manager,
        records=[ImportRecord(line=1, external_id="x", text=payload, labels=None)],
    )
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    login(page, live_server, "demo-annotator", info.credentials["demo-annotator"])
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    page.wait_for_function("() => document.querySelector('#doc-text').textContent.includes('onerror')")
    assert page.text_content("#doc-text") == payload
    assert page.locator("#doc-text img, #doc-text script, #doc-text b").count() == 0
    assert dialogs == []


def test_manager_page_shows_budget_model_and_jobs(page, live_server, trained_project):
    project, credentials = trained_project
    login(page, live_server, "demo-manager", credentials["demo-manager"])
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    assert "Serving v1" in page.text_content("body")
    jobs = page.text_content("#jobs")
    assert "train" in jobs and "SUCCEEDED" in jobs
    page.click("#train-now")
    page.wait_for_selector(".messages li.success")
    assert Job.objects.filter(project=project, kind="train", status="PENDING").count() == 1
    # The manager switches the query strategy in the browser; the queue is re-scored with it.
    page.select_option("#strategy-form select[name=strategy]", "rarity+kmeans")
    page.click("#strategy-form button[type=submit]")
    page.wait_for_selector(".messages li.success")
    project.refresh_from_db()
    assert project.strategy == "rarity+kmeans" and "rarity+kmeans" in page.text_content("[data-stat=strategy]")
    assert Job.objects.filter(project=project, kind="score", status="PENDING").exists()
