"""Label budgets, quotas, thresholds that fire once, burn rate and projection, and who may see and change them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from annotator import selectors, services
from annotator.models import Activity, Annotation, BudgetAlert, Project, QueueItem

from .conftest import client_for, make_user


def _url(project, what: str) -> str:
    return f"/api/v1/projects/{project.pk}/{what}/"


def _label(project, user, n: int) -> list:
    """The user labels `n` documents, each served by `next` (with "none apply")."""
    done = []
    for _ in range(n):
        served = services.queue_lease_next(project=project, user=user)
        assert isinstance(served, services.Served), served
        services.annotation_submit(project=project, user=user, document_id=served.document.pk, labels=[])
        done.append(served.document)
    return done


def test_hard_budget_stops_serving_and_a_soft_one_keeps_serving(project, annotator_user, documents):
    services.project_update(project=project, label_budget=3)
    _label(project, annotator_user, 3)
    stopped = services.queue_lease_next(project=project, user=annotator_user)
    assert isinstance(stopped, services.NothingToServe) and stopped.reason == "budget"
    services.project_update(project=project, budget_mode="soft")
    _label(project, annotator_user, 2)  # over the budget, still served
    assert selectors.budget_for(project=project).spent == 5


def test_a_hard_budget_is_never_exceeded_by_answers_sent_directly(project, manager, annotator_user, documents):
    """Issue 16: an annotator with quota 1 in a project with a hard budget of 3 answered 7 documents directly."""
    services.project_update(project=project, label_budget=3)
    services.member_add(project=project, username=annotator_user.username, role="annotator", quota=1)
    client = client_for(annotator_user)
    url = _url(project, "annotations")
    assert client.post(url, {"document": documents[0].pk, "labels": []}, format="json").status_code == 201
    refused = client.post(url, {"document": documents[1].pk, "labels": ["joy"]}, format="json")
    assert refused.status_code == 409 and "quota of 1" in refused.json()["detail"]
    for doc in documents[2:4]:
        services.annotation_submit(project=project, user=manager, document_id=doc.pk, labels=[])
    refused = client_for(manager).post(url, {"document": documents[4].pk, "labels": []}, format="json")
    assert refused.status_code == 409 and "label budget of 3 documents is spent" in refused.json()["detail"]
    assert selectors.budget_for(project=project).spent == 3
    assert not Annotation.objects.filter(document__in=[documents[1], documents[4]]).exists()
    revised = client.post(url, {"document": documents[0].pk, "labels": ["joy"]}, format="json")
    assert revised.status_code == 201  # a revision spends nothing: always possible
    services.project_update(project=project, budget_mode="soft")
    assert client.post(url, {"document": documents[1].pk, "labels": []}, format="json").status_code == 201


def test_a_lease_renewal_does_not_claim_a_new_document_once_the_budget_is_spent(project, manager, documents):
    """Issue 16: `lease/` renew claimed any free document even after the budget was spent."""
    services.project_update(project=project, label_budget=1)
    services.annotation_submit(project=project, user=manager, document_id=documents[0].pk, labels=[])
    QueueItem.objects.create(project=project, document=documents[1], strategy="cold_start", score=1.0)
    response = client_for(manager).post(_url(project, "lease"), {"document": documents[1].pk}, format="json")
    assert response.status_code == 200 and response.json()["held"] is False
    assert QueueItem.objects.get(document=documents[1]).leased_to is None


@pytest.mark.django_db(transaction=True)
def test_a_hard_budget_holds_under_concurrent_annotators(manager):
    """Issue 16: under 50 concurrent annotators a hard budget of 600 ended at 602. Here 8 annotators race for a
    budget of 12 (each thread: next + submit until nothing is served); exactly 12 documents end up answered."""
    import threading

    from django.db import connection

    from .conftest import records

    project = services.project_create(user=manager, name="Race", labels=["joy", "anger"], eval_size=0)
    services.documents_import(project=project, user=manager, records=records(40))
    services.project_update(project=project, label_budget=12, retrain_every=10_000)
    users = [make_user(f"racer{i}") for i in range(8)]
    for user in users:
        services.member_add(project=project, username=user.username, role="annotator")
    errors: list[BaseException] = []
    start = threading.Barrier(len(users))

    def annotate(user) -> None:
        try:
            start.wait()
            while True:
                served = services.queue_lease_next(project=project, user=user)
                if not isinstance(served, services.Served):
                    break
                services.annotation_submit(project=project, user=user, document_id=served.document.pk, labels=[])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=annotate, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert selectors.budget_for(project=project).spent == 12
    assert Annotation.objects.filter(project=project).count() == 12


def test_a_refused_next_leaves_nothing_behind(project, manager, annotator_user, documents):
    """`next` leases first and counts after (so that the budget lock is held only while counting): a refusal must
    roll its lease back, leaving the document free for the expert who still has room."""
    services.project_update(project=project, label_budget=2)
    _label(project, manager, 1)
    held = services.queue_lease_next(project=project, user=manager)  # the last unit, leased
    rows = QueueItem.objects.count()
    refused = services.queue_lease_next(project=project, user=annotator_user)
    assert isinstance(refused, services.NothingToServe) and refused.reason == "budget"
    assert not QueueItem.objects.filter(leased_to=annotator_user).exists()
    assert QueueItem.objects.count() == rows
    services.queue_release(project=project, user=manager)  # the unit is free again: the annotator gets it
    served = services.queue_lease_next(project=project, user=annotator_user)
    assert isinstance(served, services.Served) and served.document == held.document


@pytest.mark.django_db(transaction=True)
def test_serving_and_answering_never_wait_for_the_project_row(manager):
    """A budget check locks only the budget (an advisory lock on PostgreSQL), never the project row, which queue
    swaps and publishing hold while they work: experts keep getting and answering documents meanwhile."""
    import threading

    from django.db import connection

    from .conftest import records

    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite runs one writer at a time)")
    project = services.project_create(user=manager, name="Busy", labels=["joy", "anger"], eval_size=0)
    services.documents_import(project=project, user=manager, records=records(10))
    services.project_update(project=project, label_budget=5, retrain_every=10_000)
    locked, release = threading.Event(), threading.Event()

    def publisher() -> None:  # what queue_replace and publishing do: the project row, locked for a while
        from django.db import transaction

        try:
            with transaction.atomic():
                Project.objects.select_for_update(no_key=True).get(pk=project.pk)
                locked.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    thread = threading.Thread(target=publisher)
    thread.start()
    try:
        assert locked.wait(timeout=60)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")  # waiting on the row would fail the request instead
        served = services.queue_lease_next(project=project, user=manager)
        assert isinstance(served, services.Served)
        services.annotation_submit(project=project, user=manager, document_id=served.document.pk, labels=["joy"])
        assert selectors.budget_for(project=project).spent == 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
        release.set()
        thread.join(timeout=60)


def test_a_quota_stops_one_annotator_only(project, annotator_user, documents):
    second = make_user("second")
    services.member_add(project=project, username="second", role="annotator")
    services.member_add(project=project, username=annotator_user.username, role="annotator", quota=2)
    _label(project, annotator_user, 2)
    stopped = services.queue_lease_next(project=project, user=annotator_user)
    assert isinstance(stopped, services.NothingToServe) and stopped.reason == "quota"
    _label(project, second, 3)  # no quota
    assert Activity.objects.filter(project=project, kind="quota").count() == 1
    services.member_add(project=project, username=annotator_user.username, role="annotator", quota=None)
    _label(project, annotator_user, 1)


def test_a_held_document_counts_against_the_quota(project, annotator_user, documents):
    services.member_add(project=project, username=annotator_user.username, role="annotator", quota=1)
    first = services.queue_lease_next(project=project, user=annotator_user)
    again = services.queue_lease_next(project=project, user=annotator_user)
    assert again.document == first.document  # the held one comes back; no second document is handed out


def test_each_threshold_fires_exactly_once(
    project, manager, annotator_user, documents, django_capture_on_commit_callbacks
):
    manager.email = "manager@example.org"
    manager.save()
    services.project_update(project=project, label_budget=10)

    def label(n: int) -> list:
        with django_capture_on_commit_callbacks(execute=True):  # the emails go out after the commit
            return _label(project, annotator_user, n)

    labelled = label(4)
    assert not BudgetAlert.objects.exists() and not mail.outbox
    label(1)  # 5 of 10: 50 %
    assert list(BudgetAlert.objects.values_list("percent", "spent")) == [(50, 5)]
    # Revising an answer is not a new document: nothing fires again.
    with django_capture_on_commit_callbacks(execute=True):
        services.annotation_submit(project=project, user=annotator_user, document_id=labelled[0].pk, labels=["joy"])
    label(5)  # 10 of 10: 80 % and 100 %
    assert list(BudgetAlert.objects.values_list("percent", "spent")) == [(50, 5), (80, 8), (100, 10)]
    messages = list(
        Activity.objects.filter(project=project, kind="budget").order_by("id").values_list("message", flat=True)
    )
    assert messages == [
        "50% of the label budget spent: 5 of 10 documents.",
        "80% of the label budget spent: 8 of 10 documents.",
        "100% of the label budget spent: 10 of 10 documents. New documents are no longer served.",
    ]
    assert [m.to for m in mail.outbox] == [["manager@example.org"]] * 3
    assert "80% of the label budget spent" in mail.outbox[1].subject
    # A larger budget re-arms the thresholds not reached any more (10 of 20 is 50 %: that one stays).
    services.project_update(project=project, label_budget=20, budget_mode="soft")
    assert list(BudgetAlert.objects.values_list("percent", flat=True)) == [50]
    label(6)
    assert list(BudgetAlert.objects.values_list("percent", "spent")) == [(50, 5), (80, 16)]
    assert len(mail.outbox) == 4


def test_burn_rate_projection_and_cost(project, annotator_user, documents):
    services.project_update(project=project, label_budget=100, cost_per_document="0.35", currency="eur")
    labelled = _label(project, annotator_user, 14)
    # 7 documents labelled today, 7 three days ago, and (not counted in the week) 0 before.
    Annotation.objects.filter(document__in=labelled[:7]).update(created_at=timezone.now() - timedelta(days=3))
    overview = selectors.budget_overview(project=project)
    # The project's active period is the 3 days since its first answer, not a week: 14 documents in 3 days.
    assert overview["burn_rate_per_day"] == round(14 / 3, 2)
    assert overview["burn_period"] == "the 3.0 days since the first answer"
    assert overview["projected_exhaustion"] == timezone.localdate() + timedelta(days=19)  # 86 left at 4.67 a day
    assert overview["cost"] == {
        "per_document": "0.3500",
        "currency": "EUR",
        "spent": "4.90",
        "remaining": "30.10",
        "total": "35.00",
    }
    per_day = {row["date"]: row["documents"] for row in overview["per_day"]}
    assert per_day[timezone.localdate()] == 7 and per_day[timezone.localdate() - timedelta(days=3)] == 7
    assert sum(per_day.values()) == 14


def test_the_burn_rate_of_a_young_project_is_per_day_over_its_active_period(project, annotator_user, documents):
    services.project_update(project=project, label_budget=1000)
    labelled = _label(project, annotator_user, 14)
    # All 14 answers within the project's first ten minutes: averaged over 7 days that would be 2 a day and the
    # budget would "run out" in well over a year; over the active period (at least an hour) it is 14 an hour.
    Annotation.objects.filter(document__in=labelled).update(created_at=timezone.now() - timedelta(minutes=10))
    overview = selectors.budget_overview(project=project)
    assert overview["burn_rate_per_day"] == 14 * 24
    assert overview["burn_period"] == "the 10 minutes since the first answer, counted as an hour"
    assert overview["projected_exhaustion"] == timezone.localdate() + timedelta(days=3)  # 986 left at 336 a day
    # Five hours in: 14 documents in 5 hours.
    Annotation.objects.filter(document__in=labelled[:1]).update(created_at=timezone.now() - timedelta(hours=5))
    overview = selectors.budget_overview(project=project)
    assert overview["burn_rate_per_day"] == pytest.approx(14 / 5 * 24, abs=0.01)
    assert overview["burn_period"] == "the 5 hours since the first answer"
    # A project active for longer than a week: the last 7 days only (one answer of 30 days ago is not counted).
    Annotation.objects.filter(document__in=labelled[:1]).update(created_at=timezone.now() - timedelta(days=30))
    overview = selectors.budget_overview(project=project)
    assert overview["burn_rate_per_day"] == round(13 / 7, 2) and overview["burn_period"] == "the last 7 days"


def test_the_page_states_the_burn_rate_period(project, manager, annotator_user, documents):
    from django.test import Client

    _label(project, annotator_user, 2)
    page = Client()
    page.force_login(manager)
    html = page.get(f"/projects/{project.pk}/").content.decode()
    assert "documents a day (over the 0 minutes" not in html
    assert "documents a day (over the 1 minute since the first answer, counted as an hour)" in html
    assert '<span data-stat="burn">48.0</span>' in html


@pytest.mark.parametrize(
    "budget,share,size,labelled,reachable",
    [
        (300, 0.2, 200, 0, 60),  # every fifth of 300 served documents: 60 of 200
        (300, 0.2, 200, 70, 70),  # already more labelled than the share will add
        (300, 0.0, 50, 10, 10),  # no share: the set is never served
        (100, 0.2, 200, 0, 20),  # larger than the budget: no share can finish it
    ],
)
def test_a_budget_that_cannot_finish_the_evaluation_set_is_named(project, budget, share, size, labelled, reachable):
    project.label_budget, project.eval_share = budget, share
    check = selectors.evaluation_budget_check(project=project, evaluation={"size": size, "labelled": labelled})
    assert check is not None and check["reachable"] == reachable
    assert f"The budget of {budget:,} documents cannot finish the evaluation set" in check["text"]
    assert f"about {reachable} of its {size} documents get labelled before the budget is spent" in check["text"]
    if size <= budget:
        assert check["share_needed"] * budget >= size
        assert f"raise the evaluation share to {check['share_needed']:.0%}" in check["text"]
    else:
        assert check["share_needed"] is None and "evaluation share" not in check["text"]
    if share:
        assert int(share * check["budget_needed"] + 1e-9) >= size


@pytest.mark.parametrize(
    "budget,share,size,labelled",
    [(None, 0.2, 200, 0), (1000, 0.2, 200, 0), (300, 0.2, 0, 0), (300, 0.2, 60, 0), (300, 0.0, 50, 50)],
)
def test_a_budget_that_can_finish_the_evaluation_set_warns_nothing(project, budget, share, size, labelled):
    project.label_budget, project.eval_share = budget, share
    assert selectors.evaluation_budget_check(project=project, evaluation={"size": size, "labelled": labelled}) is None


def test_the_page_warns_when_the_budget_cannot_finish_the_evaluation_set(project, manager, documents):
    from django.test import Client

    services.project_update(project=project, eval_size=3, label_budget=10, eval_share=0.2)
    client = Client()
    client.force_login(manager)
    html = client.get(f"/projects/{project.pk}/").content.decode()
    assert 'id="evaluation-budget"' in html
    assert "about 2 of its 3 documents get labelled before the budget is spent" in html
    services.project_update(project=project, label_budget=15)
    assert 'id="evaluation-budget"' not in client.get(f"/projects/{project.pk}/").content.decode()


@pytest.mark.parametrize(
    "body,message",
    [
        ({"budget_mode": "maybe"}, "budget_mode"),
        ({"cost_per_document": -1}, "cost_per_document"),
        ({"currency": "EURO"}, "currency"),
        ({"budget_alerts": [50, 0]}, "budget_alerts"),
        ({"eval_fraction": 1.5}, "eval_fraction"),
        ({"eval_share": -0.1}, "eval_share"),
        ({"stop_min_gain": "lots"}, "stop_min_gain"),
    ],
)
def test_bad_budget_settings_are_clear_400s_and_change_nothing(project, manager_client, body, message):
    before = Project.objects.values().get(pk=project.pk)
    response = manager_client.patch(_url(project, "").rstrip("/") + "/", body, format="json")
    assert response.status_code == 400 and message in response.json()["detail"]
    assert Project.objects.values().get(pk=project.pk) == before


def test_annotators_can_neither_see_nor_change_budgets_or_quotas(project, annotator_user, annotator_client):
    assert annotator_client.get(_url(project, "stats")).status_code == 403
    response = annotator_client.patch(f"/api/v1/projects/{project.pk}/", {"label_budget": 5}, format="json")
    assert response.status_code == 403
    response = annotator_client.post(
        _url(project, "members"), {"username": annotator_user.username, "role": "annotator", "quota": 99}, format="json"
    )
    assert response.status_code == 403
    project.refresh_from_db()
    assert project.label_budget is None
    assert client_for(annotator_user).get(f"/projects/{project.pk}/").status_code == 302  # to the annotate page


def test_managers_set_budgets_and_quotas_through_the_api(project, manager_client, annotator_user):
    response = manager_client.patch(
        f"/api/v1/projects/{project.pk}/",
        {
            "label_budget": 50,
            "budget_mode": "soft",
            "cost_per_document": "1.20",
            "currency": "usd",
            "budget_alerts": [90, 25],
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    project.refresh_from_db()
    assert (project.label_budget, project.budget_mode, str(project.cost_per_document), project.currency) == (
        50,
        "soft",
        "1.2000",
        "USD",
    )
    assert project.budget_alerts == [25, 90]
    response = manager_client.post(
        _url(project, "members"), {"username": annotator_user.username, "role": "annotator", "quota": 7}, format="json"
    )
    assert response.status_code == 201 and response.json() == {
        "username": annotator_user.username,
        "role": "annotator",
        "quota": 7,
        "spent": 0,
    }
    members = {m["username"]: m for m in manager_client.get(_url(project, "members")).json()}
    assert members[annotator_user.username]["quota"] == 7
