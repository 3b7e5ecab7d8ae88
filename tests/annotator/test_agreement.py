"""Inter-annotator agreement: the AGREEMENT job end to end, its trigger, the API (permissions, empty state, filters)
and the manager page's card."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotator import selectors, services
from annotator.models import (
    Adjudication,
    AdjudicationLabel,
    AgreementReport,
    Annotation,
    AnnotationLabel,
    Document,
    Job,
    Label,
)
from annotator.services.agreement import AGREEMENT_EVERY_SECONDS

from .conftest import client_for, make_user

HTML_LABEL = "<b>bold</b> & co"


@pytest.fixture
def team(project, manager, annotator_user):
    """The project with a reviewer, a second annotator and a label whose name is HTML."""
    reviewer = make_user("reviewer")
    second = make_user("second")
    services.member_add(project=project, username="reviewer", role="reviewer")
    services.member_add(project=project, username="second", role="annotator")
    services.labels_add(project=project, labels=[HTML_LABEL])
    return {"manager": manager, "annotator": annotator_user, "reviewer": reviewer, "second": second}


def answer(document: Document, user, names: list[str]) -> Annotation:
    """An answer written with the ORM, keeping Document.answers_count as the answer services do."""
    annotation = Annotation.objects.create(document=document, project=document.project, annotator=user)
    for label in Label.objects.filter(project=document.project, name__in=names):
        AnnotationLabel.objects.create(annotation=annotation, label=label)
    Document.objects.filter(pk=document.pk).update(answers_count=document.annotations.count())
    return annotation


def gold(document: Document, reviewer, names: list[str]) -> None:
    adjudication = Adjudication.objects.create(project=document.project, document=document, reviewer=reviewer)
    for label in Label.objects.filter(project=document.project, name__in=names):
        AdjudicationLabel.objects.create(adjudication=adjudication, label=label)


@pytest.fixture
def overlapped(team, documents):
    """Six documents answered by the annotator and the second annotator: they agree on "joy" everywhere it is
    ticked and disagree on "anger" and the HTML label; gold on two documents."""
    a, b = team["annotator"], team["second"]
    plan = [
        (["joy"], ["joy"]),
        (["joy", "anger"], ["joy"]),
        (["sadness"], ["sadness", HTML_LABEL]),
        ([], []),
        (["joy"], ["joy", "anger"]),
        (["fear", HTML_LABEL], ["fear"]),
    ]
    for document, (first, second) in zip(documents, plan, strict=False):
        answer(document, a, first)
        answer(document, b, second)
    answer(documents[10], a, ["surprise"])  # one answer: no agreement, but compared with its gold
    gold(documents[1], team["reviewer"], ["joy", "anger"])
    gold(documents[10], team["reviewer"], ["surprise"])
    return documents


def run_requested(project, user=None) -> AgreementReport:
    job = services.agreement_request(project=project, requested_by=user)
    services.agreement_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    return AgreementReport.objects.get(job=job)


def test_the_job_stores_a_report_with_names_usernames_and_gold(project, team, overlapped):
    report = run_requested(project, team["manager"])

    result = report.result
    assert report.documents == 6 and report.answers == 12
    assert report.fingerprint == selectors.agreement_fingerprint(project=project)
    rows = {row["label"]: row for row in result["labels"]}
    assert set(rows) == {"joy", "anger", "sadness", "fear", HTML_LABEL}  # names, not ids
    assert rows["joy"]["alpha"]["value"] == 1.0 and rows["joy"]["positives"] == 6
    assert rows["anger"]["alpha"]["value"] < 0.5
    assert result["cohen_applies"] and rows["sadness"]["cohen"]["value"] == 1.0
    people = {entry["annotator"]: entry for entry in result["annotators"]}
    assert set(people) == {"annotator", "second"}
    # The annotator matches gold on document 1 ({joy, anger}) and on the single-answer document 10.
    assert people["annotator"]["vs_gold"]["units"] == 2
    assert people["annotator"]["vs_gold"]["f1"]["value"] == 1.0
    assert people["second"]["vs_gold"]["recall"]["value"] == 0.5  # ticked joy of {joy, anger}
    assert Job.objects.get(pk=report.job_id).message.startswith("alpha (MASI)")


def test_the_report_equals_learner_agreement_on_the_same_answers(project, team, overlapped):
    from learner.agreement import agreement

    report = run_requested(project)

    data = selectors.agreement_data(project=project)
    direct = agreement(data.units, labels=data.label_ids, gold=data.gold, n_boot=1000, seed=project.pk)
    assert report.result["overall"] == direct["overall"]
    assert [row["alpha"] for row in report.result["labels"]] == [row["alpha"] for row in direct["labels"]]


def test_maybe_request_queues_once_per_change_and_is_cheap(project, team, documents, django_assert_max_num_queries):
    assert services.agreement_maybe_request(project=project) is None  # no overlap yet
    answer(documents[0], team["annotator"], ["joy"])
    assert services.agreement_maybe_request(project=project) is None  # one answer is no overlap
    answer(documents[0], team["second"], ["joy"])

    job = services.agreement_maybe_request(project=project)
    assert job is not None and job.kind == Job.Kind.AGREEMENT
    assert services.agreement_maybe_request(project=project) is None  # queued already

    services.agreement_run(job_id=job.pk)
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(seconds=AGREEMENT_EVERY_SECONDS + 1))
    with django_assert_max_num_queries(4):  # the newest job, the two aggregates of the fingerprint, the report
        assert services.agreement_maybe_request(project=project) is None  # nothing changed since the report
    assert not selectors.agreement_overview(project=project)["stale"]

    answer(documents[0], team["manager"], ["anger"])
    assert selectors.agreement_overview(project=project)["stale"]
    second = services.agreement_maybe_request(project=project)
    assert second is not None
    services.agreement_run(job_id=second.pk)
    assert not selectors.agreement_overview(project=project)["stale"]

    answer(documents[1], team["annotator"], ["joy"])
    answer(documents[1], team["second"], ["fear"])
    with django_assert_max_num_queries(1):  # the last one was queued within the window: one query, nothing queued
        assert services.agreement_maybe_request(project=project) is None
    assert selectors.agreement_overview(project=project)["stale"]  # shown as such until the next computation


def test_request_without_overlap_is_a_clear_400_and_queues_nothing(project, team, documents):
    response = client_for(team["manager"]).post(f"/api/v1/projects/{project.pk}/agreement/")

    assert response.status_code == 400
    assert "set an overlap share in the project settings" in response.json()["detail"]
    assert not Job.objects.filter(project=project, kind=Job.Kind.AGREEMENT).exists()


def test_empty_state_says_how_many_documents_have_two_answers(project, team, documents):
    answer(documents[0], team["annotator"], ["joy"])
    answer(documents[0], team["second"], ["joy"])

    body = client_for(team["reviewer"]).get(f"/api/v1/projects/{project.pk}/agreement/").json()

    assert body["report"] is None and body["documents"] == 1 and body["gold_documents"] == 0
    assert "No agreement computed yet: 1 documents have two or more answers" in body["message"]


@pytest.mark.parametrize(
    ("who", "get_status", "post_status"),
    [("manager", 200, 202), ("reviewer", 200, 202), ("annotator", 403, 403), ("outsider", 404, 404)],
)
def test_permissions(project, team, overlapped, outsider, who, get_status, post_status):
    user = outsider if who == "outsider" else team[who]
    client = client_for(user)
    url = f"/api/v1/projects/{project.pk}/agreement/"

    assert client.get(url).status_code == get_status
    assert client.post(url).status_code == post_status
    assert Job.objects.filter(project=project, kind=Job.Kind.AGREEMENT).exists() == (post_status == 202)
    assert Client().get(url).status_code in (401, 403)


def test_api_returns_the_report_filtered_and_limited(project, team, overlapped):
    run_requested(project)
    client = client_for(team["reviewer"])
    url = f"/api/v1/projects/{project.pk}/agreement/"

    body = client.get(url).json()
    assert body["stale"] is False and body["active"] is False
    report = body["report"]
    assert report["labels_total"] == 5 and len(report["labels"]) == 5
    alphas = [row["alpha"]["value"] for row in report["labels"] if row["alpha"]["value"] is not None]
    assert alphas == sorted(alphas)  # worst first
    assert report["overall"]["alpha_masi"]["low"] <= report["overall"]["alpha_masi"]["value"]

    limited = client.get(url, {"limit": 2}).json()["report"]
    assert [row["label"] for row in limited["labels"]] == [row["label"] for row in report["labels"][:2]]
    assert [row["label"] for row in client.get(url, {"label": "JO"}).json()["report"]["labels"]] == ["joy"]
    assert client.get(url, {"limit": "many"}).status_code == 400


def test_the_manager_page_card_shows_the_report_escaped(project, team, overlapped):
    run_requested(project)
    client = Client()
    client.force_login(team["manager"])

    page = client.get(f"/projects/{project.pk}/").content.decode()

    assert 'id="agreement"' in page and "Krippendorff" in page and 'id="agreement-now"' in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page
    assert "<b>bold</b>" not in page
    assert 'id="agreement-stale"' not in page
    assert "<td>annotator</td>" in page and "<td>second</td>" in page


def test_the_page_says_how_to_get_overlap_and_its_button_queues_a_job(project, team, documents):
    client = Client()
    client.force_login(team["manager"])

    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "set an overlap share in the project settings" in page

    page = client.post(f"/projects/{project.pk}/manage/agreement/", follow=True).content.decode()
    assert "set an overlap share in the project settings" in page  # the request's error, as a message
    answer(documents[0], team["annotator"], ["joy"])
    answer(documents[0], team["second"], ["anger"])
    page = client.post(f"/projects/{project.pk}/manage/agreement/", follow=True).content.decode()
    assert "Inter-annotator agreement is being computed" in page
    assert Job.objects.filter(project=project, kind=Job.Kind.AGREEMENT, status="PENDING").count() == 1
    assert "Computing (pending" in page


def test_only_the_newest_reports_are_kept(project, team, overlapped, monkeypatch):
    monkeypatch.setattr("annotator.services.agreement.AGREEMENT_KEEP", 2)
    reports = [run_requested(project).pk for _ in range(3)]

    assert list(AgreementReport.objects.filter(project=project).values_list("pk", flat=True)) == reports[:0:-1]


def test_a_failed_run_stores_nothing(project, team, overlapped, monkeypatch):
    from annotator import ml

    def broken(**kwargs):
        raise ValueError("bad data")

    monkeypatch.setattr(ml, "agreement_compute", broken)
    job = services.agreement_request(project=project)
    services.agreement_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "bad data" in job.error
    assert not AgreementReport.objects.filter(project=project).exists()
    services.agreement_run(job_id=job.pk)  # a second delivery of a finished job does nothing
    assert not AgreementReport.objects.filter(project=project).exists()
