"""The annotate page in a real browser: keyboard and mouse, suggestions from a real trained model."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest
from django.utils import timezone

from annotator import services
from annotator.importing import ImportRecord
from annotator.models import Annotation, Job, ModelVersion, Project, QueueItem
from annotator.services.demo import demo_labels, demo_records, demo_setup
from learner.strategies import DEFAULT_STRATEGY

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.slow]
DATA = Path(__file__).resolve().parents[1] / "data"


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


def _chips(page) -> set[str]:
    return set(page.eval_on_selector_all("#chosen .chip span", "xs => xs.map(x => x.textContent)"))


def _wait_for_new_text(page, old: str) -> str:
    page.wait_for_function("t => document.querySelector('#doc-text').textContent !== t", arg=old)
    return page.text_content("#doc-text")


def test_keyboard_flow_accept_reject_search_submit_undo_change_resubmit(page, live_server, trained_project):
    project, credentials = trained_project
    project.decision_threshold = 0.999  # nothing pre-ticked: every choice below is the expert's
    project.save()
    login(page, live_server, "demo-annotator", credentials["demo-annotator"])
    page.get_by_role("row", name="Browser check").get_by_role("link", name="Annotate").click()

    page.wait_for_selector("#suggestions li")
    first_text = page.text_content("#doc-text")
    assert first_text and first_text != "Loading…"
    names = page.eval_on_selector_all("#suggestions li", "xs => xs.map(x => x.dataset.label)")
    assert len(names) == 10
    scores = [float(s) for s in page.eval_on_selector_all("#suggestions .score", "xs => xs.map(x => x.textContent)")]
    assert scores == sorted(scores, reverse=True)
    assert _chips(page) == set()
    rule = page.text_content("#pretick-rule")  # the pre-tick rule, in words, next to the suggestions
    assert rule.startswith("Pre-ticked: suggestions scoring ≥ 0.999") and "set by a project manager" in rule

    # Accept two suggestions, reject the third (Shift+3), add a label by search: all from the keyboard.
    page.locator("body").press("1")
    page.keyboard.press("2")
    page.keyboard.press("Shift+Digit3")
    assert page.locator("#suggestions li").nth(2).get_attribute("class") == "suggestion rejected"
    searched = next(
        x["name"] for x in demo_labels() if x["name"] not in names[:3] and x["name"] not in ("approval", "joy")
    )
    page.keyboard.press("/")
    page.keyboard.type(searched)
    page.wait_for_function(
        "n => (document.querySelector('#search-results li.active .name') || {}).textContent === n", arg=searched
    )
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    assert _chips(page) == {names[0], names[1], searched}

    page.keyboard.press("Enter")  # submit
    second_text = _wait_for_new_text(page, first_text)
    assert page.text_content("#done-count") == "1"
    document = Annotation.objects.get(document__project=project, document__text=first_text).document

    # Undo: the first document comes back with its answer, editable; untick suggestion 1 and resubmit.
    page.keyboard.press("u")
    page.wait_for_function("t => document.querySelector('#doc-text').textContent === t", arg=first_text)
    assert page.is_visible("#revising")
    assert _chips(page) == {names[0], names[1], searched}
    assert "rejected" in page.locator("#suggestions li").nth(2).get_attribute("class")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    assert _wait_for_new_text(page, first_text) == second_text  # back to the document it was on
    assert page.text_content("#done-count") == "1"  # a revision is not a new document

    annotations = Annotation.objects.filter(document=document)
    assert annotations.count() == 1
    annotation = annotations.get()
    assert set(annotation.labels.values_list("name", flat=True)) == {names[1], searched}
    assert annotation.annotator.username == "demo-annotator" and annotation.source == "ui"
    assert annotation.model_version.number == 1 and annotation.strategy == DEFAULT_STRATEGY
    decisions = dict(annotation.decisions.values_list("label__name", "decision"))
    expected = dict.fromkeys(names, "not_chosen")
    expected.update({names[1]: "accepted", names[2]: "rejected"})
    if searched in expected:
        expected[searched] = "accepted"
    assert decisions == expected
    assert annotation.seconds_spent is not None and annotation.seconds_spent > 0


def test_help_overlay_guidelines_and_mouse(page, live_server, trained_project):
    project, credentials = trained_project
    login(page, live_server, "demo-annotator", credentials["demo-annotator"])
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    page.wait_for_selector("#suggestions li")
    page.locator("body").press("?")
    assert page.is_visible("#help") and "undo" in page.text_content("#help")
    page.keyboard.press("Escape")
    assert not page.is_visible("#help")
    page.keyboard.press("g")
    assert page.eval_on_selector("#guidelines", "d => d.open") is True
    # With the mouse: tick a box, reject another with its button, remove a chip.
    preticked = _chips(page)
    names = page.eval_on_selector_all("#suggestions li", "xs => xs.map(x => x.dataset.label)")
    page.locator("#suggestions input[type=checkbox]").nth(1).click()
    page.get_by_role("button", name=f"Reject {names[0]}").click()
    expected = (preticked ^ {names[1]}) - {names[0]}
    assert _chips(page) == expected
    page.click("#submit")
    page.wait_for_selector("#status:has-text('Saved.')")
    annotation = Annotation.objects.get(document__project=project, source="ui")
    assert set(annotation.labels.values_list("name", flat=True)) == expected
    assert annotation.decisions.get(label__name=names[0]).decision == "rejected"


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


def test_label_search_finds_umlaut_names_among_41218_labels_without_loading_them(
    page, live_server, transactional_db, tmp_path
):
    info = demo_setup(data_dir=tmp_path)
    manager = Project.objects.get(pk=info.project_id).created_by
    with gzip.open(DATA / "tibkat-labels.txt.gz", "rt", encoding="utf-8") as handle:
        names = [line.rstrip("\n") for line in handle if line.strip()]
    assert len(names) == 41218
    project = services.project_create(user=manager, name="GND", labels=names)
    services.member_add(project=project, username="demo-annotator", role="annotator")
    services.documents_import(
        project=project,
        user=manager,
        records=[ImportRecord(line=1, external_id="t1", text="Maschinelles Lernen in Bibliotheken", labels=None)],
    )
    login(page, live_server, "demo-annotator", info.credentials["demo-annotator"])
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    page.wait_for_function("() => document.querySelector('#doc-text').textContent.includes('Bibliotheken')")
    page.keyboard.press("/")
    page.keyboard.type("kunstliche int")
    # Within one second of the last key: among the first results.
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#search-results li .name')).slice(0, 5)"
        ".some(x => x.textContent === 'Künstliche Intelligenz')",
        timeout=1000,
    )
    page.keyboard.press("Enter")
    assert "Künstliche Intelligenz" in _chips(page)
    sizes = page.evaluate(
        "() => performance.getEntriesByType('resource').filter(e => e.name.includes('/labels/'))"
        ".map(e => e.decodedBodySize)"
    )
    assert sizes and max(sizes) < 10_000  # a page of results, never the 41,218 names


def test_two_annotators_get_different_documents_and_an_expired_lease_frees_one(
    browser, live_server, transactional_db, tmp_path
):
    info = demo_setup(data_dir=tmp_path)
    manager = Project.objects.get(pk=info.project_id).created_by
    project = services.project_create(user=manager, name="Leases", labels=["a", "b"])
    project.lease_seconds = 10
    project.save()
    services.member_add(project=project, username="demo-annotator", role="annotator")
    services.documents_import(
        project=project,
        user=manager,
        records=[ImportRecord(line=i, external_id=f"d{i}", text=f"text number {i}", labels=None) for i in (1, 2)],
    )
    pages = {}
    for username in ("demo-annotator", "demo-manager"):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        pages[username] = context.new_page()
        pages[username].set_default_timeout(15_000)
        login(pages[username], live_server, username, info.credentials[username])
        pages[username].goto(f"{live_server.url}/projects/{project.pk}/annotate/")
        pages[username].wait_for_function("() => document.querySelector('#doc-text').textContent.startsWith('text')")
    first, second = (pages[u].text_content("#doc-text") for u in ("demo-annotator", "demo-manager"))
    assert {first, second} == {"text number 1", "text number 2"}

    # The first annotator closes the page; once the lease expired (or was released) the document is free.
    pages["demo-annotator"].context.close()
    held = QueueItem.objects.get(project=project, document__text=first)
    deadline = time.monotonic() + 30
    while held.leased_to_id is not None and held.lease_expires_at > timezone.now() and time.monotonic() < deadline:
        time.sleep(0.5)
        held.refresh_from_db()
    other = pages["demo-manager"]
    other.keyboard.press("n")  # submit the second document: "none apply", on purpose
    other.wait_for_function("t => document.querySelector('#doc-text').textContent === t", arg=first)
    assert Annotation.objects.filter(document__project=project).count() == 1
    other.context.close()


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
