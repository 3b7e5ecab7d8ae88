"""Does active learning pay here? The ESTIMATE job, its trigger, the API, adopting the favoured strategy, the page."""

from __future__ import annotations

import pytest
from django.test import Client

from annotator import selectors, services
from annotator.exceptions import ProjectError
from annotator.importing import ImportRecord
from annotator.models import Activity, Annotation, Job, Project, SavingsEstimate
from annotator.services.savings import SAVINGS_BOOTSTRAP, SAVINGS_ORDERS

from .conftest import LABELS, client_for

pytestmark = pytest.mark.usefixtures("tiny_encoder")

WORDS = {
    "joy": "happy smile laugh",
    "anger": "furious shout rage",
    "sadness": "tears grief lonely",
    "fear": "scared dark danger",
    "surprise": "sudden unexpected wow",
}


def _gold(i: int) -> list[str]:
    first = LABELS[i % len(LABELS)]
    return [first] if i % 3 else [first, LABELS[(i + 2) % len(LABELS)]]


def _records(n: int) -> list[ImportRecord]:
    return [
        ImportRecord(
            line=i + 1,
            external_id=f"doc-{i}",
            text=f"story {i}: " + " ".join(WORDS[label] for label in _gold(i)) + f" and the number {i}",
            labels=None,
        )
        for i in range(n)
    ]


@pytest.fixture
def evaluated(manager, annotator_user, settings):
    """A project of 70 documents with a 40 % evaluation set, every document answered with its gold labels through
    `next` (cold-start picks, the random fallback and the interleaved evaluation documents), no model trained."""
    settings.ALABEL_COLD_START_SIZE = 50
    project = services.project_create(
        user=manager,
        name="Emotions <b>bold</b>",
        labels=LABELS,
        retrain_every=1000,
        eval_fraction=0.4,
        eval_share=0.4,
        queue_size=50,
    )
    services.member_add(project=project, username=annotator_user.username, role="annotator")
    services.documents_import(project=project, user=manager, records=_records(70))
    services.encode_run(job_id=Job.objects.get(project=project, kind="encode", status="PENDING").pk)
    services.scoring_run(job_id=Job.objects.get(project=project, kind="score", status="PENDING").pk)
    gold = {doc.pk: _gold(int(doc.external_id.split("-")[1])) for doc in project.documents.all()}
    while True:
        served = services.queue_lease_next(project=project, user=annotator_user)
        if isinstance(served, services.NothingToServe):
            break
        services.annotation_submit(
            project=project, user=annotator_user, document_id=served.document.pk, labels=gold[served.document.pk]
        )
    Job.objects.filter(project=project, status="PENDING").delete()
    return project


def _stored(project, **result) -> SavingsEstimate:
    base = {
        "verdict": "costs",
        "favoured": "random",
        "headline": "Not so far: random picks would have been better",
        "summary": "To reach the micro-F1 that 60 random picks reach (0.41), this project's picks needed more than "
        "the 80 labels they have (95 % interval: never in 98% of the draws).",
        "strategy": "default",
        "target": 0.41,
        "n_random": 60,
        "labels_picks": None,
        "picks_max": 80,
        "ratio": {"value": None, "low": None, "high": None, "never": 0.98},
        "curves": {
            "random": [
                {"n": 10, "value": 0.2, "low": 0.1, "high": 0.3},
                {"n": 60, "value": 0.41, "low": 0.3, "high": 0.5},
            ],
            "picks": [
                {"n": 10, "value": 0.1, "low": 0.05, "high": 0.2},
                {"n": 80, "value": 0.3, "low": 0.2, "high": 0.4},
            ],
        },
        "caveats": ["It compares the picks with random picks up to 60 labels only."],
        "seconds": 12.0,
    }
    base.update(result)
    return SavingsEstimate.objects.create(project=project, picks=80, evaluation_documents=120, result=base)


def test_the_picks_are_the_queue_s_documents_in_answer_order_without_evaluation_or_imports(evaluated):
    picks = selectors.savings_pick_ids(project=evaluated)
    answers = Annotation.objects.filter(project=evaluated).order_by("created_at", "id")

    assert picks == [a.document_id for a in answers if not a.document.is_evaluation]
    assert {a.strategy for a in answers if a.document_id in picks} <= {"cold_start", "random"}
    assert {a.strategy for a in answers if a.document.is_evaluation} == {"evaluation"}
    assert len(picks) >= 20 and len(answers) - len(picks) >= 20


def test_an_estimate_job_stores_the_estimate_for_the_project(evaluated, manager):
    job = services.savings_request(project=evaluated, user=manager)
    assert services.savings_request(project=evaluated, user=manager) == job  # coalesced
    services.savings_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED", job.error

    estimate = SavingsEstimate.objects.get(project=evaluated)
    n_picks = len(selectors.savings_pick_ids(project=evaluated))
    n_eval = Annotation.objects.filter(project=evaluated, document__is_evaluation=True).count()
    assert (estimate.job_id, estimate.picks, estimate.evaluation_documents) == (job.pk, n_picks, n_eval)
    result = estimate.result
    assert result["verdict"] in {"saves", "costs", "undecided"}
    assert result["n_random"] == n_eval // 2 and result["picks_max"] == n_picks
    assert result["strategy"] == "default" and result["caveats"]
    assert [p["n"] for p in result["curves"]["random"]] == result["sizes"]["random"]
    assert (result["orders"], result["n_boot"]) == (SAVINGS_ORDERS, SAVINGS_BOOTSTRAP)
    assert job.message.startswith(result["headline"])
    # a duplicate delivery of the finished job stores nothing more
    services.savings_run(job_id=job.pk)
    assert SavingsEstimate.objects.filter(project=evaluated).count() == 1


def test_an_estimate_without_enough_data_is_refused_with_what_is_missing(project, manager, documents):
    with pytest.raises(ProjectError, match=r"at least 20 labelled evaluation documents \(has 0\)"):
        services.savings_request(project=project, user=manager)
    assert not Job.objects.filter(kind="estimate").exists()
    assert services.savings_maybe_request(project=project) is None


def test_a_training_run_queues_an_estimate_once_the_labelled_set_grew_by_a_fifth(evaluated, manager):
    services.training_run(job_id=services.training_request(project=evaluated, user=manager).pk)
    job = Job.objects.get(project=evaluated, kind="estimate", status="PENDING")
    assert job.requested_by is None and "picks" in job.reason
    job.delete()

    n_picks = len(selectors.savings_pick_ids(project=evaluated))
    n_eval = Annotation.objects.filter(project=evaluated, document__is_evaluation=True).count()
    last = _stored(evaluated)
    SavingsEstimate.objects.filter(pk=last.pk).update(picks=n_picks, evaluation_documents=n_eval - 1)
    assert services.savings_maybe_request(project=evaluated) is None  # grew by one document only
    SavingsEstimate.objects.filter(pk=last.pk).update(picks=n_picks // 2, evaluation_documents=n_eval)
    job = services.savings_maybe_request(project=evaluated)
    assert job is not None and job.kind == "estimate" and "grew from" in job.reason
    Job.objects.filter(pk=job.pk).update(status="FAILED")
    assert services.savings_maybe_request(project=evaluated) is None  # a failed one waits for a manager


def test_who_may_read_and_ask_for_an_estimate(evaluated, manager, annotator_user, outsider):
    url = f"/api/v1/projects/{evaluated.pk}/savings/"
    empty = client_for(annotator_user).get(url)
    assert empty.status_code == 200
    assert empty.json()["estimate"] is None and empty.json()["job"] is None and not empty.json()["adoptable"]

    assert client_for(annotator_user).post(url).status_code == 403
    assert client_for(outsider).get(url).status_code == 404
    assert client_for(outsider).post(url).status_code == 404
    assert Client().get(url).status_code in (401, 403)
    assert not Job.objects.filter(kind="estimate").exists()

    response = client_for(manager).post(url)
    assert response.status_code == 202 and response.json()["kind"] == "estimate"
    again = client_for(manager).post(url)
    assert again.status_code == 202 and again.json()["id"] == response.json()["id"]
    assert client_for(annotator_user).get(url).json()["active"] is True

    services.savings_run(job_id=response.json()["id"])
    body = client_for(annotator_user).get(url).json()
    assert body["active"] is False and body["job"]["status"] == "SUCCEEDED" and "worker" not in body["job"]
    assert body["estimate"]["result"]["verdict"] in {"saves", "costs", "undecided"}
    assert body["estimate"]["picks"] >= 20 and body["estimate"]["model_version"] is None


def test_asking_without_enough_data_is_a_400_naming_what_is_missing(project, manager_client, documents):
    response = manager_client.post(f"/api/v1/projects/{project.pk}/savings/")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "at least 20 labelled evaluation documents (has 0)" in detail
    assert "at least 20 labelled documents picked by the queue (has 0)" in detail


def test_adopting_sets_the_favoured_strategy_and_records_it(project, manager, annotator_user):
    url = f"/api/v1/projects/{project.pk}/savings/adopt/"
    response = client_for(manager).post(url)
    assert response.status_code == 400 and "no estimate" in response.json()["detail"]

    _stored(project, verdict="undecided", favoured=None, headline="No evidence either way yet")
    response = client_for(manager).post(url)
    assert (
        response.status_code == 400 and "favours no strategy (no evidence either way yet)" in response.json()["detail"]
    )
    assert Project.objects.get(pk=project.pk).strategy == "default"

    _stored(project)  # favours random
    assert client_for(manager).get(f"/api/v1/projects/{project.pk}/savings/").json()["adoptable"] is True
    assert client_for(annotator_user).post(url).status_code == 403
    assert Project.objects.get(pk=project.pk).strategy == "default"
    response = client_for(manager).post(url)
    assert response.status_code == 200 and response.json()["strategy"] == "random"
    assert Project.objects.get(pk=project.pk).strategy == "random"
    # The setup's lines (the member added, the import) aside.
    feed = Activity.objects.filter(project=project).exclude(kind__in=[Activity.Kind.DATA, Activity.Kind.ADMIN])
    activity = feed.get()
    assert activity.message.startswith("Strategy set to random (was default) by manager")
    assert client_for(manager).get(f"/api/v1/projects/{project.pk}/savings/").json()["adoptable"] is False
    assert client_for(manager).post(url).status_code == 200  # already adopted: nothing changes
    assert feed.count() == 1


def test_the_manager_page_shows_the_verdict_chart_and_caveats_escaped(project, manager):
    Project.objects.filter(pk=project.pk).update(name="Emotions <script>alert(1)</script>")
    _stored(project, caveats=["<script>alert('caveat')</script> small set"], strategy="<i>default</i>")
    client = Client()
    client.force_login(manager)
    page = client.get(f"/projects/{project.pk}/").content.decode()

    assert "Does active learning pay here?" in page
    assert "Not so far: random picks would have been better." in page
    assert "this project&#x27;s picks needed more than the 80 labels they have" in page
    assert 'id="adopt-strategy">Adopt random</button>' in page and 'id="estimate-now"' in page
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in page and 'class="arm arm-picks"' in page
    assert "&lt;script&gt;alert(&#x27;caveat&#x27;)&lt;/script&gt; small set" in page
    assert "<script>alert" not in page
    assert "Emotions &lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_page_buttons_queue_an_estimate_and_adopt(evaluated, manager, annotator_user):
    client = Client()
    client.force_login(manager)
    page = client.post(f"/projects/{evaluated.pk}/manage/estimate/", follow=True).content.decode()
    assert "Estimate of the labels saved against random queued" in page
    assert Job.objects.filter(project=evaluated, kind="estimate", status="PENDING").count() == 1
    assert "Estimating (pending" in page

    page = client.post(f"/projects/{evaluated.pk}/manage/adopt-strategy/", follow=True).content.decode()
    assert "there is no estimate of the labels saved against random yet" in page
    _stored(evaluated)
    page = client.post(f"/projects/{evaluated.pk}/manage/adopt-strategy/", follow=True).content.decode()
    assert "Strategy set to random" in page
    assert Project.objects.get(pk=evaluated.pk).strategy == "random"

    annotator = Client()
    annotator.force_login(annotator_user)
    response = annotator.post(f"/projects/{evaluated.pk}/manage/estimate/")
    assert response.status_code == 302 and "/annotate/" in response["Location"]  # the page is for managers
