"""The review page in a real browser: a reviewer sees two disagreeing answers side by side, ticks the gold labels,
saves, and the page moves on to the next disagreement; an annotator may not open it.

With ALABEL_SCREENSHOT_REVIEW=path/to.png it also saves the README's screenshot of the page (docs/img/review.png):
    ALABEL_SCREENSHOT_REVIEW=docs/img/review.png .venv/bin/python -m pytest tests/browser/test_review.py
"""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from annotator import services
from annotator.importing import ImportRecord
from annotator.models import Adjudication, Document

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery"
TEXTS = [
    "I can't believe they cancelled the show after that cliffhanger. Honestly I'm furious, but also kind of sad.",
    "Thanks so much for the help yesterday, it really made my week!",
]


@pytest.fixture
def review_project(transactional_db):
    users = get_user_model().objects
    manager = users.create_user(username="lead", password=PASSWORD)
    manager.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
    manager = users.get(pk=manager.pk)
    project = services.project_create(
        user=manager,
        name="Emotions review",
        labels=["anger", "sadness", "joy", "gratitude", "surprise", "<b>relief</b>"],
    )
    for name, role in (("ana", "annotator"), ("ben", "annotator"), ("rita", "reviewer")):
        users.create_user(username=name, password=PASSWORD)
        services.member_add(project=project, username=name, role=role, user=manager)
    services.documents_import(
        project=project,
        user=manager,
        records=[
            ImportRecord(line=i + 1, external_id=f"comment-{i + 1}", text=t, labels=None) for i, t in enumerate(TEXTS)
        ],
    )
    docs = list(Document.objects.filter(project=project).order_by("id"))
    answers = {0: (["anger"], ["sadness", "surprise"]), 1: (["joy", "gratitude"], ["gratitude", "<b>relief</b>"])}
    for index, (first, second) in answers.items():
        services.annotation_submit(
            project=project, user=users.get(username="ana"), document_id=docs[index].pk, labels=first, seconds_spent=12
        )
        services.annotation_submit(
            project=project, user=users.get(username="ben"), document_id=docs[index].pk, labels=second, seconds_spent=9
        )
    return project, docs


def test_reviewer_decides_gold_and_moves_on(page, live_server, review_project):
    from playwright.sync_api import expect

    project, docs = review_project
    login(page, live_server, "rita", PASSWORD)
    page.goto(f"{live_server.url}/projects/{project.pk}/review/")
    page.wait_for_url(f"{live_server.url}/projects/{project.pk}/review/{docs[0].pk}/")  # the worst agreement first
    columns = page.locator("#answers .answer")
    expect(columns).to_have_count(2)
    expect(columns.nth(0)).to_contain_text("ana")
    expect(columns.nth(0)).to_contain_text("anger")
    expect(columns.nth(1)).to_contain_text("ben")
    expect(columns.nth(1)).to_contain_text("surprise")
    boxes = page.locator("#votes input[type=checkbox]")
    expect(boxes).to_have_count(3)
    assert page.locator("#votes input:checked").count() == 0  # no strict majority: nothing pre-ticked
    if os.environ.get("ALABEL_SCREENSHOT_REVIEW"):
        page.screenshot(path=os.environ["ALABEL_SCREENSHOT_REVIEW"], full_page=True)
    page.get_by_label("anger").check()
    page.get_by_label("sadness").check()
    page.fill("#id_note", "both: furious and sad")
    page.get_by_role("button", name="Save as gold").click()
    page.wait_for_url(f"{live_server.url}/projects/{project.pk}/review/{docs[1].pk}/")  # on to the next one
    expect(page.locator(".messages")).to_contain_text("Gold answer of comment-1 saved.")
    expect(page.locator("#votes input:checked")).to_have_count(1)  # gratitude: two of two
    expect(page.locator("#answers")).to_contain_text("<b>relief</b>")  # a label name with markup shown as text
    gold = Adjudication.objects.get(document=docs[0])
    assert gold.reviewer.username == "rita" and gold.note == "both: furious and sad"
    assert sorted(gold.labels.values_list("name", flat=True)) == ["anger", "sadness"]
    page.keyboard.press("Tab")  # the form works from the keyboard: focus moves onto the page's controls
    page.locator("#save-gold").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#review-empty")).to_be_visible()


def test_an_annotator_gets_403_on_the_review_page(page, live_server, review_project):
    project, docs = review_project
    login(page, live_server, "ana", PASSWORD)
    response = page.goto(f"{live_server.url}/projects/{project.pk}/review/{docs[0].pk}/")
    assert response is not None and response.status == 403
    assert not Adjudication.objects.exists()
