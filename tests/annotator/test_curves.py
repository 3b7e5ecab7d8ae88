"""The learning curve: points from the versions' stored evaluations, the fit and forecasts, the stopping advice."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone

from annotator import selectors
from annotator.models import ModelVersion
from annotator.services.curves import learning_curve_refresh

# (training labels, micro-F1, interval) of five versions on a curve 0.6 - 0.9 n^-0.5
MEASURED = [(20, 0.40, 0.06), (40, 0.46, 0.05), (80, 0.50, 0.05), (160, 0.53, 0.04), (320, 0.55, 0.04)]


def _versions(project, measured=MEASURED, agreements=None, evaluated_on=60):
    versions = []
    for number, (labels, value, half) in enumerate(measured, start=1):
        versions.append(
            ModelVersion.objects.create(
                project=project,
                number=number,
                is_serving=number == len(measured),
                artifact_path=f"projects/{project.pk}/models/v{number}",
                n_annotations=labels,
                n_labels=5,
                data_cutoff=timezone.now(),
                agreement=None if agreements is None else agreements[number - 1],
                evaluation={
                    "n_documents": evaluated_on,
                    "metrics": {
                        "micro_f1": {"value": value, "low": max(0.0, value - half), "high": min(1.0, value + half)}
                    },
                },
            )
        )
    return versions


def test_the_curve_endpoint_serves_the_stored_points_the_fit_and_a_csv(project, manager_client):
    _versions(project)
    project.refresh_from_db()
    learning_curve_refresh(project=project)
    body = manager_client.get(f"/api/v1/projects/{project.pk}/learning-curve/").json()
    assert [(p["version"], p["labels"], p["value"], p["low"], p["high"]) for p in body["points"]] == [
        (n, labels, value, pytest.approx(value - half), pytest.approx(value + half))  # all inside [0, 1] here
        for n, (labels, value, half) in enumerate(MEASURED, start=1)
    ]
    fit = body["fit"]
    assert body["fit_pending"] is False and fit["n_points"] == 5 and fit["last_labels"] == 320
    assert 0.55 < fit["level"]["value"] < 0.7
    gain = fit["next_500"]
    assert gain["low"] <= gain["value"] <= gain["high"] and 0 < gain["value"] < 0.1
    assert body["advice"]["stop"] is False and body["advice"]["text"].startswith("Keep labelling: the next 500 labels")
    response = manager_client.get(f"/api/v1/projects/{project.pk}/learning-curve/", {"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(int(r["version"]), int(r["training_labels"]), float(r["value"])) for r in rows] == [
        (n, labels, value) for n, (labels, value, _) in enumerate(MEASURED, start=1)
    ]


def test_a_new_measurement_marks_the_fit_pending_until_refreshed(project):
    versions = _versions(project)
    project.refresh_from_db()
    learning_curve_refresh(project=project)
    versions[0].evaluation = {"n_documents": 80, "metrics": {"micro_f1": {"value": 0.41, "low": 0.36, "high": 0.46}}}
    versions[0].save()
    project.refresh_from_db()
    curve = selectors.learning_curve(project=project)
    assert curve["fit"] is None and curve["fit_pending"] is True
    learning_curve_refresh(project=project)
    project.refresh_from_db()
    assert selectors.learning_curve(project=project)["fit"] is not None


def test_stabilised_predictions_advise_stopping(project):
    _versions(project, agreements=[None, 0.97, 0.995, 0.993, 0.999])
    project.refresh_from_db()
    learning_curve_refresh(project=project)
    advice = selectors.learning_curve(project=project)["advice"]
    assert advice["stop"] and advice["stabilised"]
    assert "the last 3 models agree on the stop set (Cohen's kappa 0.995, 0.993, 0.999" in advice["text"]


def test_a_small_forecast_gain_advises_stopping(project):
    _versions(project)
    project.stop_min_gain = 0.5  # micro-F1 per 100 labels: more than any curve can promise
    project.save()
    learning_curve_refresh(project=project)
    advice = selectors.learning_curve(project=project)["advice"]
    assert advice["stop"] and advice["low_gain"] and not advice["stabilised"]
    assert "per 100 more labels, below the 0.5000 set for this project" in advice["text"]


def test_too_few_points_give_no_forecast(project):
    _versions(project, measured=MEASURED[:2])
    project.refresh_from_db()
    learning_curve_refresh(project=project)
    curve = selectors.learning_curve(project=project)
    assert curve["fit"] is None and len(curve["points"]) == 2
    assert "a forecast needs three at different label counts" in curve["advice"]["text"]


def test_annotators_cannot_read_the_curve(project, annotator_client):
    assert annotator_client.get(f"/api/v1/projects/{project.pk}/learning-curve/").status_code == 403


def test_the_dashboard_draws_the_curve(project, manager):
    from django.test import Client

    _versions(project)
    project.refresh_from_db()
    learning_curve_refresh(project=project)
    client = Client()
    client.force_login(manager)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert page.count('<circle cx="') == 5 and 'class="band"' in page and 'class="fit"' in page
    assert "The next 500 labels:" in page and "Keep labelling" in page


# --- never misleading: a table of small and pathological curves ----------------------------------------------------
def _table_points(n: int, shape: str) -> list[tuple[int, float, float]]:
    labels = [10 * (i + 1) for i in range(n)]
    if shape == "flat":
        values = [0.42] * n
    elif shape == "noisy":
        values = [min(1.0, max(0.0, 0.5 + 0.12 * ((-1) ** i) * (1 + (i % 3)) / 3)) for i in range(n)]
    elif shape == "decreasing":
        values = [0.8 - 0.5 * i / max(n - 1, 1) for i in range(n)]
    elif shape == "perfect":
        values = [1.0] * n
    else:  # steep: an unbounded power law would level off far above 1
        values = [min(1.0, 0.2 + 0.2 * i) for i in range(n)]
    return [(x, v, 0.04) for x, v in zip(labels, values, strict=True)]


def _assert_forecast(f: dict) -> None:
    assert 0.0 <= f["low"] <= f["value"] <= f["high"] <= 1.0, f


@pytest.mark.parametrize("shape", ["flat", "noisy", "decreasing", "perfect", "steep"])
@pytest.mark.parametrize("n_points", [0, 1, 5, 14])
def test_every_stored_forecast_is_in_0_1_with_its_value_inside_its_interval(project, n_points, shape):
    measured = _table_points(n_points, shape)
    _versions(project, measured=measured)
    project.refresh_from_db()
    learning_curve_refresh(project=project)
    curve = selectors.learning_curve(project=project)
    fit = curve["fit"]
    if n_points < 3:
        assert fit is None and not curve["fit_pending"]
        return
    assert fit is not None
    for forecast in [fit["level"], fit["per_100"], fit["next_500"], *fit["curve"]]:
        _assert_forecast(forecast)
    best = max(v for _, v, _ in measured)
    assert [r["target"] for r in fit["to_reach"]] == sorted(
        {round(best + step, 2) for step in (0.02, 0.05) if best + step <= 1.0}
    )
    for reach in fit["to_reach"]:
        labels = reach["labels"]
        if labels is None:
            continue
        assert labels["low"] <= labels["value"] and (labels["high"] is None or labels["value"] <= labels["high"])
        assert labels["more_low"] <= labels["more"] and (
            labels["more_high"] is None or labels["more"] <= labels["more_high"]
        )
        assert labels["more"] == max(0, labels["value"] - fit["last_labels"])


def test_below_the_minimum_of_evaluation_answers_the_forecast_says_so(project, manager):
    from django.test import Client

    minimum = selectors.curves.MIN_EVALUATION_ANSWERS
    _versions(project, evaluated_on=minimum - 1)
    project.refresh_from_db()
    learning_curve_refresh(project=project)
    curve = selectors.learning_curve(project=project)
    assert curve["fit"] is None and not curve["fit_pending"] and not curve["enough_evaluation"]
    assert "not enough evaluation answers yet" in curve["advice"]["text"]
    assert f"a forecast needs at least {minimum}" in curve["advice"]["text"]
    client = Client()
    client.force_login(manager)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "Forecast: not enough evaluation answers yet" in page and "The next 500 labels:" not in page
    assert f"forecasts from {minimum} on" in page
    # One more answer and the same versions forecast.
    for number, (_, value, half) in enumerate(MEASURED, start=1):
        ModelVersion.objects.filter(project=project, number=number).update(
            evaluation={
                "n_documents": minimum,
                "metrics": {"micro_f1": {"value": value, "low": value - half, "high": value + half}},
            }
        )
    project.refresh_from_db()
    stored = learning_curve_refresh(project=project)
    assert stored["fit"] is not None, stored
    assert selectors.learning_curve(project=project)["fit"] is not None


def test_labels_to_reach_shows_its_interval_in_more_labels(project, manager):
    from django.test import Client

    _versions(project)
    project.refresh_from_db()
    learning_curve_refresh(project=project)
    reach = next(r["labels"] for r in selectors.learning_curve(project=project)["fit"]["to_reach"] if r["labels"])
    client = Client()
    client.force_login(manager)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    high = "never" if reach["more_high"] is None else str(reach["more_high"])
    assert (
        f"about <strong>{reach['more']}</strong> more labels (95% interval {reach['more_low']} to {high} more;" in page
    )
