"""The server-rendered pages: what managers change there and what the annotate page sends."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django.utils import timezone

from annotator import services
from annotator.models import Label, Project


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_manager_changes_the_annotation_settings(project, manager):
    client = _client(manager)
    response = client.post(
        f"/projects/{project.pk}/manage/settings/",
        {
            "guidelines": "Tick every emotion.",
            "suggestions_k": "5",
            "decision_threshold": "0.4",
            "pretick_floor": "0.8",
            "lease_seconds": "120",
            "eval_size": "0",
            "eval_fraction": "",
            "eval_share": "0.25",
            "stop_min_gain": "0.01",
            "overlap_share": "0.1",
            "overlap_k": "3",
        },
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.overlap_share, project.overlap_k, project.overlap_evaluation) == (0.1, 3, False)
    assert (project.guidelines, project.suggestions_k, project.decision_threshold, project.lease_seconds) == (
        "Tick every emotion.",
        5,
        0.4,
        120,
    )
    assert (project.eval_share, project.stop_min_gain) == (0.25, 0.01)
    assert (project.pretick_floor, project.preticks_enabled) == (0.8, False)  # an unticked box is not sent
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "Annotation settings saved." in page


def test_bad_settings_are_named_and_change_nothing(project, manager):
    before = Project.objects.values().get(pk=project.pk)
    response = _client(manager).post(
        f"/projects/{project.pk}/manage/settings/",
        {"suggestions_k": "500", "lease_seconds": "3", "decision_threshold": ""},
        follow=True,
    )
    page = response.content.decode()
    assert "suggestions_k: Ensure this value is less than or equal to 100." in page
    assert "lease_seconds: Ensure this value is greater than or equal to 10." in page
    assert Project.objects.values().get(pk=project.pk) == before


def test_annotators_cannot_change_settings(project, annotator_user):
    response = _client(annotator_user).post(
        f"/projects/{project.pk}/manage/settings/",
        {"suggestions_k": "3", "lease_seconds": "60", "eval_size": "0", "eval_share": "0"},
    )
    assert response.status_code == 302 and response["Location"].endswith(f"/projects/{project.pk}/annotate/")
    project.refresh_from_db()
    assert project.suggestions_k == 10


def test_the_annotate_page_never_ships_the_label_set(manager, annotator_user):
    names = [f"Schlagwort {i}" for i in range(3000)]
    project = services.project_create(user=manager, name="Many", labels=names, guidelines="<b>bold</b> rules")
    services.member_add(project=project, username=annotator_user.username, role="annotator")
    page = _client(annotator_user).get(f"/projects/{project.pk}/annotate/").content.decode()
    assert "Schlagwort" not in page
    assert "&lt;b&gt;bold&lt;/b&gt; rules" in page  # guidelines are escaped
    assert len(page) < 20_000


def _label_buttons(page: str) -> list[dict]:
    match = re.search(r'<script id="label-buttons-data" type="application/json">(.*?)</script>', page, re.S)
    assert match, "the page has no label-buttons-data script"
    return json.loads(match.group(1))


def test_a_small_label_set_comes_with_the_page_without_deprecated_labels(project, annotator_user):
    Label.objects.filter(project=project, name="fear").update(deprecated_at=timezone.now())
    Label.objects.filter(project=project, name="joy").update(description="glad </script><script>alert(1)</script>")
    page = _client(annotator_user).get(f"/projects/{project.pk}/annotate/").content.decode()
    buttons = _label_buttons(page)
    assert [b["name"] for b in buttons] == ["anger", "joy", "sadness", "surprise"]  # by name; "fear" is deprecated
    assert buttons[1]["description"] == "glad </script><script>alert(1)</script>"
    assert "<script>alert(1)" not in page  # escaped inside the JSON
    assert 'data-has-hierarchy="false"' in page


def test_a_label_set_above_the_button_limit_is_not_sent(project, annotator_user, settings):
    settings.ALABEL_LABEL_BUTTONS = 4  # five labels in the project
    page = _client(annotator_user).get(f"/projects/{project.pk}/annotate/").content.decode()
    assert _label_buttons(page) == []
    Label.objects.filter(project=project, name="fear").update(deprecated_at=timezone.now())  # four in use now
    page = _client(annotator_user).get(f"/projects/{project.pk}/annotate/").content.decode()
    assert len(_label_buttons(page)) == 4
    settings.ALABEL_LABEL_BUTTONS = 0  # off
    page = _client(annotator_user).get(f"/projects/{project.pk}/annotate/").content.decode()
    assert _label_buttons(page) == []


def test_the_annotate_page_says_when_the_labels_have_a_hierarchy(project, annotator_user):
    parent = Label.objects.get(project=project, name="sadness")
    Label.objects.filter(project=project, name="fear").update(parent=parent)
    page = _client(annotator_user).get(f"/projects/{project.pk}/annotate/").content.decode()
    assert 'data-has-hierarchy="true"' in page
    assert f'data-tree-url="/api/v1/projects/{project.pk}/labels/tree/"' in page


def test_the_annotate_page_of_another_project_is_a_404(project, outsider):
    assert _client(outsider).get(f"/projects/{project.pk}/annotate/").status_code == 404


def test_favicon_is_served_and_linked(project, annotator_user):
    response = Client().get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert "max-age=86400" in response["Cache-Control"]
    assert Client().post("/favicon.ico").status_code == 405
    page = _client(annotator_user).get(f"/projects/{project.pk}/annotate/").content.decode()
    assert re.search(r'<link rel="icon" href="[^"]*favicon\.svg"', page)


def test_manager_page_shows_budget_notices_burn_rate_and_activity(project, manager, annotator_user, documents):
    client = _client(manager)
    response = client.post(
        f"/projects/{project.pk}/manage/budget/",
        {
            "label_budget": "2",
            "budget_mode": "hard",
            "cost_per_document": "2.5",
            "currency": "EUR",
            "budget_alerts": "50%, 100",
        },
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.label_budget, project.budget_alerts, str(project.cost_per_document)) == (2, [50, 100], "2.5000")
    services.annotation_submit(project=project, user=annotator_user, document_id=documents[0].pk, labels=[])
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "50% of the label budget spent (1 of 2 documents)" in page  # the notice
    assert "50% of the label budget spent: 1 of 2 documents." in page  # the activity feed
    assert "documents a day (over the 1 minute since the first answer, counted as an hour)" in page
    assert "2.50 EUR spent, 2.50 EUR left" in page


def test_bad_budget_form_input_is_named_and_changes_nothing(project, manager):
    response = _client(manager).post(
        f"/projects/{project.pk}/manage/budget/",
        {"label_budget": "", "budget_mode": "hard", "budget_alerts": "half"},
        follow=True,
    )
    assert "budget_alerts: a comma-separated list of whole percentages" in response.content.decode()
    project.refresh_from_db()
    assert project.budget_alerts == [50, 80, 100]


BIG = str(2**31)  # one more than an integer column holds on PostgreSQL
TOO_BIG = "Ensure this value is less than or equal to 2147483647."


@pytest.mark.parametrize(
    "action,data,message",
    [
        ("budget", {"label_budget": BIG, "budget_mode": "hard", "budget_alerts": "50"}, f"label_budget: {TOO_BIG}"),
        (
            "settings",
            {"suggestions_k": "5", "lease_seconds": BIG, "eval_size": "0", "eval_share": "0", "stop_min_gain": "0"},
            f"lease_seconds: {TOO_BIG}",
        ),
        (
            "retraining",
            {"retrain_every": BIG, "retrain_mode": "full", "full_retrain_growth": "1", "replay_size": "0"},
            f"retrain_every: {TOO_BIG}",
        ),
        ("member", {"username": "annotator", "role": "annotator", "quota": BIG}, TOO_BIG),  # shown on the form
        ("schedule", {"mode": "full", "kind": "interval", "every": str(10**12), "unit": "hours"}, f"every: {TOO_BIG}"),
        ("budget", {"budget_mode": "hard", "budget_alerts": "²"}, "budget_alerts: a comma-separated list"),
    ],
)
def test_numbers_beyond_the_database_column_are_named_and_change_nothing(project, manager, action, data, message):
    """Issue 16: integers >= 2**31 on the manager page were a 500 from PostgreSQL."""
    before = Project.objects.values().get(pk=project.pk)
    members = list(project.memberships.values())
    url = f"/projects/{project.pk}/manage/{action}/"
    response = _client(manager).post(url, {"timezone": "UTC", **data}, follow=True)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Project.objects.values().get(pk=project.pk) == before
    assert list(project.memberships.values()) == members and not project.schedules.exists()


def test_the_new_project_form_names_a_number_beyond_the_database_column(manager):
    response = _client(manager).post(
        "/projects/new/", {"name": "P", "label_budget": "2147483648", "retrain_every": "5"}
    )
    assert response.status_code == 200
    assert "Ensure this value is less than or equal to 2147483647." in response.content.decode()
    assert not Project.objects.exists()


def test_a_label_search_with_a_nul_is_ignored_with_a_message(project, manager):
    response = _client(manager).get(f"/projects/{project.pk}/", {"label_q": "jo\x00y"})
    assert response.status_code == 200
    assert "label_q contains a NUL character" in response.content.decode()
