"""The pages under their Content-Security-Policy in a real browser, and the login lockout as a user sees it."""

from __future__ import annotations

import pytest

from annotator import services
from annotator.models import Project
from annotator.services.demo import demo_setup

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def demo(transactional_db, tmp_path):
    info = demo_setup(data_dir=tmp_path)
    return info.project_id, info.credentials


def test_no_page_breaks_the_content_security_policy(page, live_server, demo):
    from playwright.sync_api import expect

    project_id, credentials = demo
    # With a budget the manager page draws the budget bar (a <progress>: no inline style to refuse).
    services.project_update(project=Project.objects.get(pk=project_id), label_budget=100)
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Security Policy" in message.text else None)
    login(page, live_server, "demo-manager", credentials["demo-manager"])

    page.goto(f"{live_server.url}/projects/{project_id}/annotate/")
    expect(page.locator("#doc-text")).not_to_have_text("Loading…")  # the page's script ran and fetched `next`
    page.goto(f"{live_server.url}/projects/{project_id}/")
    expect(page.locator('progress[data-stat="budget-bar"]')).to_have_attribute("max", "100")
    page.wait_for_load_state("networkidle")  # manage.js has polled the stats once

    assert violations == []


def test_the_login_form_says_when_an_account_is_locked(page, live_server, demo):
    _, credentials = demo
    for _ in range(5):
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", "demo-annotator")
        page.fill("#id_password", "wrong")
        page.click("button[type=submit]")
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "demo-annotator")
    page.fill("#id_password", credentials["demo-annotator"])
    page.click("button[type=submit]")
    assert "Too many failed logins" in page.text_content("#locked")
    assert page.url.endswith("/accounts/login/")
    # Another user at the same address is not held back.
    login(page, live_server, "demo-manager", credentials["demo-manager"])


def test_the_admin_site_works_under_the_content_security_policy(page, live_server, demo):
    """The Django admin (managers of the installation use it for users and tokens) under the same strict policy:
    its pages load their own scripts and styles only, and a change form still works."""
    from django.contrib.auth import get_user_model
    from playwright.sync_api import expect

    project_id, _ = demo
    get_user_model().objects.create_superuser("root", "root@example.org", "a-long-admin-password")
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Security Policy" in message.text else None)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "a-long-admin-password")
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()
    page.goto(f"{live_server.url}/admin/annotator/project/")
    expect(page.locator("#result_list")).to_be_visible()
    page.goto(f"{live_server.url}/admin/annotator/project/{project_id}/change/")
    expect(page.locator("#project_form")).to_be_visible()
    page.goto(f"{live_server.url}/admin/auth/user/add/")
    page.fill("#id_username", "newcomer")
    page.fill("#id_password1", "another-long-password-1")
    page.fill("#id_password2", "another-long-password-1")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("newcomer")
    # API tokens: listed by their prefix (never the key), revoked by deleting them.
    from annotator.models import ApiToken
    from annotator.services.tokens import token_create

    token, key = token_create(user=get_user_model().objects.get(username="newcomer"), name="nightly script")
    page.goto(f"{live_server.url}/admin/annotator/apitoken/")
    expect(page.locator("#result_list")).to_contain_text("nightly script")
    expect(page.locator("#result_list")).to_contain_text(token.prefix)
    assert key not in page.content()
    page.goto(f"{live_server.url}/admin/annotator/apitoken/{token.pk}/delete/")
    page.click("input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("deleted")
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    page.wait_for_load_state("networkidle")
    assert violations == []
