"""Pre-ticks under a precision floor: a suggestion is pre-ticked only where the model's scores were right at least
the project's floor of the time (its tick curve plus the experts' decisions), or at a manager's threshold."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.utils import timezone

from annotator import selectors, services
from annotator.exceptions import ProjectError
from annotator.models import Job, Label, ModelVersion, QueueItem, SuggestionDecision

from .conftest import LABELS


def _url(project, what: str) -> str:
    return f"/api/v1/projects/{project.pk}/{what}/"


def _curve(pairs, *, documents: int = 40) -> dict:
    """A tick curve (learner.decision.tick_curve's shape) from (probability, right) pairs, built by hand."""
    return {
        "grid": 100,
        "ticked": [sum(1 for p, _ in pairs if p >= j / 100 - 1e-9) for j in range(101)],
        "correct": [sum(1 for p, right in pairs if right and p >= j / 100 - 1e-9) for j in range(101)],
        "positives": 30,
        "documents": documents,
    }


# Validation shortlists: 18 entries at 0.9 (all right), 10 at 0.7 (6 right), 30 at 0.59 (none right). Pre-ticks at
# >= 0.60 are right 24/28 = 0.86 (at least 0.70 with 95 % confidence), from 0.71 up 18/18 (at least 0.85); at 0.59
# and below 24/58.
FLOOR_CASE = [(0.9, True)] * 18 + [(0.7, i < 6) for i in range(10)] + [(0.59, False)] * 30
CHECKED = "checked on 40 labelled documents the model did not train on"


def _version(project, curve: dict | None, number: int = 1, serving: bool = True) -> ModelVersion:
    config: dict = {"threshold": 0.3}
    if curve is not None:
        config["tick_curve"] = curve
    return ModelVersion.objects.create(
        project=project,
        number=number,
        is_serving=serving,
        artifact_path=f"v{number}",
        n_annotations=40,
        n_labels=len(LABELS),
        data_cutoff=timezone.now(),
        config=config,
    )


def _queue(project, version, document, pairs, score: float = 1.0) -> None:
    ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
    QueueItem.objects.create(
        project=project,
        document=document,
        model_version=version,
        strategy="uncertainty" if version else "cold_start",
        score=score,
        suggestions=[[ids[name], p] for name, p in pairs],
    )


def _ticked(served: dict) -> set[str]:
    return {s["label"] for s in served["suggestions"] if s["preselected"]}


# --- the rule --------------------------------------------------------------------------------------------------------
def test_only_suggestions_scoring_where_ticks_were_right_often_enough_are_preticked(
    project, annotator_client, documents
):
    version = _version(project, _curve(FLOOR_CASE))
    _queue(project, version, documents[0], [("joy", 0.65), ("anger", 0.55)])

    served = annotator_client.get(_url(project, "next")).json()

    assert _ticked(served) == {"joy"}
    assert served["pretick"] == {"threshold": 0.6, "precision": pytest.approx(24 / 28), "floor": 0.7, "source": CHECKED}

    project.pretick_floor = 0.8  # from 0.71 up ticks are right 18/18; 0.60-0.70 24/28 cannot show 0.8 with 95 %
    project.save()
    served = annotator_client.get(_url(project, "next")).json()  # the same document, lease renewed

    assert served["document"]["id"] == documents[0].pk
    assert _ticked(served) == set()
    assert served["pretick"] == {"threshold": 0.71, "precision": pytest.approx(1.0), "floor": 0.8, "source": CHECKED}
    response = annotator_client.post(
        _url(project, "annotations"), {"document": documents[0].pk, "labels": ["joy"]}, format="json"
    )
    assert response.status_code == 201
    assert dict(SuggestionDecision.objects.values_list("label__name", "preselected")) == {
        "joy": False,
        "anger": False,
    }


def test_preticks_switched_off_tick_nothing_and_a_managers_threshold_still_wins(project, annotator_client, documents):
    version = _version(project, _curve(FLOOR_CASE))
    _queue(project, version, documents[0], [("joy", 0.65), ("anger", 0.55)])
    project.preticks_enabled = False
    project.save()

    served = annotator_client.get(_url(project, "next")).json()

    assert _ticked(served) == set()
    assert served["pretick"] == {"threshold": None, "floor": 0.7, "reason": "a project manager switched pre-ticks off"}

    project.decision_threshold = 0.5
    project.save()
    served = annotator_client.get(_url(project, "next")).json()

    assert _ticked(served) == {"joy", "anger"}
    assert served["pretick"] == {
        "threshold": 0.5,
        "precision": pytest.approx(24 / 58),  # what the curve says of ticks at >= 0.5
        "floor": 0.7,
        "source": "set by a project manager",
    }


def test_nothing_is_preticked_before_a_model_with_checked_scores(project, annotator_client, documents):
    _queue(project, None, documents[0], [("joy", 0.99)])

    served = annotator_client.get(_url(project, "next")).json()

    assert _ticked(served) == set()
    assert served["pretick"] == {
        "threshold": None,
        "floor": 0.7,
        "reason": "no model is trained yet (suggestions come from the label names alone)",
    }
    unchecked = {
        "threshold": None,
        "floor": 0.7,
        "reason": "this model's scores are not checked yet (that needs 20 labelled documents)",
    }
    assert selectors.pretick_rule(project=project, version=_version(project, None)) == unchecked
    broken = _version(project, {"grid": 100, "ticked": [3]}, number=2, serving=False)  # a curve that cannot be read
    assert selectors.pretick_rule(project=project, version=broken) == unchecked


def test_experts_rejections_raise_the_threshold_and_then_stop_preticks(project, annotator_client, documents):
    version = _version(project, _curve(FLOOR_CASE))

    def serve_and_answer(document, score: float, **answer) -> dict:
        _queue(project, version, document, [("joy", score)])
        served = annotator_client.get(_url(project, "next")).json()
        assert served["document"]["id"] == document.pk
        body = {"document": document.pk, "labels": [], **answer}
        assert annotator_client.post(_url(project, "annotations"), body, format="json").status_code == 201
        return served

    first = serve_and_answer(documents[0], 0.65, rejected=["joy"])
    assert _ticked(first) == {"joy"} and first["pretick"]["threshold"] == 0.6
    # Then five suggestions at 0.95 that the experts leave unticked (not chosen: wrong ticks), each served after the
    # answers before it (lower bounds at 95 % confidence): 1 rejection at 0.65 leaves 0.60-0.65 right 24/29 (0.67:
    # from 0.66); 1 wrong tick at 0.95 makes 0.66-0.70 right 24/29 (from 0.71: 18/19, 0.77); 2 leave 0.71 at 18/20
    # (0.72); 3 make it 18/21 (0.67) and nothing qualifies.
    served = [serve_and_answer(doc, 0.95) for doc in documents[1:6]]
    assert [s["pretick"]["threshold"] for s in served] == [0.66, 0.71, 0.71, None, None]
    assert [_ticked(s) for s in served] == [{"joy"}] * 3 + [set()] * 2
    assert served[0]["pretick"]["source"] == CHECKED + " and 1 expert decision on its suggestions"
    version.refresh_from_db()
    assert version.decision_counts == {"decisions": 6, "bins": [[65, 1, 0], [95, 5, 0]]}

    _queue(project, version, documents[6], [("joy", 0.95)])
    last = annotator_client.get(_url(project, "next")).json()
    assert _ticked(last) == set()
    assert last["pretick"] == {
        "threshold": None,
        "floor": 0.7,
        "reason": "no score is shown, with 95 % confidence, to be right at least 70 % of the time yet ("
        + CHECKED
        + " and 6 expert decisions on its suggestions)",
    }

    # A revised answer replaces its decisions in the counts.
    response = annotator_client.post(
        _url(project, "annotations"), {"document": documents[0].pk, "labels": ["joy"]}, format="json"
    )
    assert response.status_code == 201
    version.refresh_from_db()
    assert version.decision_counts == {"decisions": 6, "bins": [[65, 1, 1], [95, 5, 0]]}


def test_the_rule_costs_next_no_query(project, annotator_client, documents, django_assert_max_num_queries):
    version = _version(project, _curve(FLOOR_CASE))
    version.decision_counts = {"decisions": 3, "bins": [[65, 2, 1], [95, 1, 1]]}
    version.save()
    labels = list(Label.objects.filter(project=project).values_list("name", flat=True))
    for rank, doc in enumerate(documents[:10]):
        _queue(project, version, doc, [(name, 0.9 - 0.1 * i) for i, name in enumerate(labels)], score=rank)
    with django_assert_max_num_queries(15):  # as without a model (tests/annotator/test_api.py)
        served = annotator_client.get(_url(project, "next")).json()
    # 0.60-0.65 right (24 + 1 + 1) / (28 + 2 + 1) with the stored decisions, not enough for 0.7: pre-ticks from 0.66
    assert served["pretick"]["threshold"] == 0.66 and _ticked(served) == {labels[0], labels[1], labels[2]}
    # + the version's decision counts: one aggregate, one update; + quota; + the audit row, the answer count (raised and
    # read) and the webhook look-up (issues 18, 19), as in tests/annotator/test_api.py
    with django_assert_max_num_queries(32):
        response = annotator_client.post(
            _url(project, "annotations"), {"document": served["document"]["id"], "labels": labels}, format="json"
        )
    assert response.status_code == 201


# --- settings ------------------------------------------------------------------------------------------------------
def test_a_manager_sets_the_floor_or_switches_preticks_off_through_the_api(project, manager_client, annotator_client):
    url = f"/api/v1/projects/{project.pk}/"
    assert {k: manager_client.get(url).json()[k] for k in ("pretick_floor", "preticks_enabled")} == {
        "pretick_floor": 0.7,
        "preticks_enabled": True,
    }

    response = manager_client.patch(url, {"pretick_floor": 0.85, "preticks_enabled": False}, format="json")

    assert response.status_code == 200, response.json()
    assert (response.json()["pretick_floor"], response.json()["preticks_enabled"]) == (0.85, False)
    project.refresh_from_db()
    assert (project.pretick_floor, project.preticks_enabled) == (0.85, False)
    assert annotator_client.patch(url, {"pretick_floor": 0.5}, format="json").status_code == 403


@pytest.mark.parametrize(
    "body,message",
    [
        ({"pretick_floor": 0}, "pretick_floor must be a share strictly between 0 and 1"),
        ({"pretick_floor": 1}, "pretick_floor must be a share strictly between 0 and 1"),
        ({"pretick_floor": 1.5}, "pretick_floor: Ensure this value is less than or equal to 1.0."),
        ({"pretick_floor": "often"}, "pretick_floor: A valid number is required."),
        ({"pretick_floor": None}, "pretick_floor: This field may not be null."),
        ({"preticks_enabled": "maybe"}, "preticks_enabled: Must be a valid boolean."),
    ],
)
def test_bad_pretick_settings_are_clear_400s_and_change_nothing(project, manager_client, body, message):
    response = manager_client.patch(f"/api/v1/projects/{project.pk}/", body, format="json")

    assert response.status_code == 400
    assert message in json.dumps(response.json())
    project.refresh_from_db()
    assert (project.pretick_floor, project.preticks_enabled) == (0.7, True)


def test_the_service_refuses_what_the_api_would_not_send(project):
    with pytest.raises(ProjectError, match="preticks_enabled must be true or false"):
        services.project_update(project=project, preticks_enabled="yes")
    with pytest.raises(ProjectError, match="pretick_floor must be a share strictly between 0 and 1"):
        services.project_update(project=project, pretick_floor=True)


def _settings_post(**changes) -> dict:
    form = {
        "suggestions_k": "10",
        "preticks_enabled": "on",
        "pretick_floor": "0.7",
        "decision_threshold": "",
        "lease_seconds": "600",
        "eval_size": "0",
        "eval_fraction": "",
        "eval_share": "0.2",
        "stop_min_gain": "0.005",
        "overlap_share": "0",
        "overlap_k": "2",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def test_the_settings_page_sets_the_floor_and_switches_preticks(project, manager):
    client = Client()
    client.force_login(manager)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "Pre-tick only where ticks are right at least" in page and 'name="preticks_enabled"' in page

    settings_url = f"/projects/{project.pk}/manage/settings/"
    assert client.post(settings_url, _settings_post(pretick_floor="0.9")).status_code == 302
    project.refresh_from_db()
    assert (project.pretick_floor, project.preticks_enabled) == (0.9, True)
    assert client.post(settings_url, _settings_post(preticks_enabled=None)).status_code == 302
    project.refresh_from_db()
    assert (project.pretick_floor, project.preticks_enabled) == (0.7, False)

    response = client.post(settings_url, _settings_post(pretick_floor="1.5"), follow=True)
    assert "pretick_floor: Ensure this value is less than or equal to 0.99." in response.content.decode()
    project.refresh_from_db()
    assert project.pretick_floor == 0.7


def test_the_annotate_page_has_a_place_for_the_rule(project, annotator_user):
    client = Client()
    client.force_login(annotator_user)
    page = client.get(f"/projects/{project.pk}/annotate/").content.decode()
    assert 'id="pretick-rule"' in page


# --- from training to the page ---------------------------------------------------------------------------------------
@pytest.mark.usefixtures("tiny_encoder")
def test_a_trained_version_carries_its_tick_curve_to_the_rule(project, annotator_user, documents):
    Job.objects.get(project=project, kind="encode", status="PENDING")
    services.encode_run(job_id=Job.objects.get(project=project, kind="encode").pk)
    gold = [["joy"], ["anger"], ["sadness", "fear"], [], ["surprise"], ["joy", "surprise"]]
    for i, doc in enumerate(documents[:24]):
        services.annotation_submit(project=project, user=annotator_user, document_id=doc.pk, labels=gold[i % 6])
    Job.objects.filter(project=project, kind="train").delete()
    job, _ = services.job_request(project=project, kind="train", reason="test")
    services.training_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED", job.error

    version = ModelVersion.objects.get(project=project)
    curve = version.config["tick_curve"]
    assert curve["documents"] == 24 and curve["positives"] == 28 and len(curve["ticked"]) == 101
    rule = selectors.pretick_rule(project=project, version=version)
    assert rule["floor"] == 0.7
    if rule["threshold"] is None:
        assert rule["reason"].startswith(
            "no score is shown, with 95 % confidence, to be right at least 70 % of the time yet (checked on 24 labelled"
        )
    else:
        assert rule["source"] == "checked on 24 labelled documents the model did not train on"
        assert rule["precision"] >= 0.7
