"""The manager's dashboard in a real browser: the learning-curve chart, the forecast, budgets and versions."""

from __future__ import annotations

import os

import pytest
from django.utils import timezone

from annotator import services
from annotator.models import ModelVersion, Project
from annotator.services.curves import learning_curve_refresh
from annotator.services.demo import demo_labels, demo_records, demo_setup

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MEASURED = [(20, 0.21, 0.07), (60, 0.33, 0.06), (120, 0.39, 0.05), (200, 0.43, 0.05), (300, 0.455, 0.045)]


@pytest.fixture
def measured_project(transactional_db, tmp_path):
    info = demo_setup(data_dir=tmp_path)
    manager = Project.objects.get(pk=info.project_id).created_by
    project = services.project_create(
        user=manager, name="Dashboard check", labels=demo_labels(), label_budget=400, eval_size=40
    )
    services.documents_import(project=project, user=manager, records=demo_records(400, with_labels=False))
    for number, (labels, value, half) in enumerate(MEASURED, start=1):
        ModelVersion.objects.create(
            project=project,
            number=number,
            is_serving=number == len(MEASURED),
            artifact_path=f"projects/{project.pk}/models/v{number}",
            n_annotations=labels,
            n_labels=28,
            data_cutoff=timezone.now(),
            metrics={"micro_f1": value + 0.03},
            config={"strategy": "cardinality+kmeans", "mode": "full"},
            agreement=None if number == 1 else 0.8 + 0.03 * number,
            evaluation={
                "n_documents": 40,
                "metrics": {"micro_f1": {"value": value, "low": value - half, "high": value + half}},
            },
        )
    learning_curve_refresh(project=project)
    return project, info.credentials


def test_dashboard_draws_the_learning_curve_and_shows_the_forecast(page, live_server, measured_project):
    project, credentials = measured_project
    login(page, live_server, "demo-manager", credentials["demo-manager"])
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    chart = page.locator("#learning-curve svg.chart")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    assert chart.locator("circle").count() == len(MEASURED)
    assert chart.locator("polygon.band").count() == 1 and chart.locator("polyline.fit").count() == 1
    forecast = page.text_content("#forecast")
    assert "The next 500 labels:" in forecast and "To reach" in forecast
    assert page.text_content("#advice").startswith("Keep labelling: the next 500 labels are expected to add")
    assert "v5 (serving)" in page.text_content("#versions")
    if os.environ.get("ALABEL_SCREENSHOT"):
        page.set_viewport_size({"width": 1280, "height": 1060})
        page.screenshot(path=os.environ["ALABEL_SCREENSHOT"])


def test_manager_rolls_back_from_the_dashboard(page, live_server, measured_project):
    project, credentials = measured_project
    login(page, live_server, "demo-manager", credentials["demo-manager"])
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.get_by_role("button", name="Serve v3").click()
    page.wait_for_selector(".messages li.success")
    assert ModelVersion.objects.get(project=project, is_serving=True).number == 3
    assert "v3 promoted to serving (was v5)" in page.text_content("#activity")


def test_the_savings_panel_shows_the_verdict_the_chart_and_adopts_the_favoured_strategy(
    page, live_server, measured_project
):
    from annotator.models import SavingsEstimate

    project, credentials = measured_project
    random_arm = [(10, 0.18), (20, 0.24), (40, 0.31), (60, 0.35)]
    picks_arm = [(10, 0.14), (20, 0.2), (40, 0.27), (60, 0.31), (90, 0.36), (135, 0.4)]
    SavingsEstimate.objects.create(
        project=project,
        picks=135,
        evaluation_documents=120,
        result={
            "verdict": "costs",
            "favoured": "random",
            "headline": "Not so far: random picks would have been better",
            "summary": "To reach the micro-F1 that 60 random picks reach (0.35), this project's picks needed 84 "
            "labels: 1.40x, 95 % interval 1.10-2.05.",
            "strategy": "default",
            "target": 0.35,
            "n_random": 60,
            "labels_picks": 84,
            "picks_max": 135,
            "ratio": {"value": 1.4, "low": 1.1, "high": 2.05, "never": 0.0},
            "curves": {
                "random": [{"n": n, "value": v, "low": v - 0.04, "high": v + 0.04} for n, v in random_arm],
                "picks": [{"n": n, "value": v, "low": v - 0.03, "high": v + 0.03} for n, v in picks_arm],
            },
            "caveats": ["It compares the picks with random picks up to 60 labels only."],
        },
    )
    login(page, live_server, "demo-manager", credentials["demo-manager"])
    page.goto(f"{live_server.url}/projects/{project.pk}/")

    assert page.text_content("#savings-verdict").startswith("Not so far: random picks would have been better.")
    chart = page.locator("#savings svg")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    assert "up to 60 labels only" in page.text_content("#savings-caveats")
    if os.environ.get("ALABEL_SCREENSHOT_SAVINGS"):
        page.locator("#savings").screenshot(path=os.environ["ALABEL_SCREENSHOT_SAVINGS"])
    page.get_by_role("button", name="Adopt random").click()
    page.wait_for_selector(".messages li")
    project.refresh_from_db()
    assert project.strategy == "random"
    assert page.locator("#adopt-strategy").count() == 0  # nothing left to adopt
