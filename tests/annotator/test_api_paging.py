"""Every list endpoint that answers a JSON array pages with `limit`/`offset` and says so in `X-Total-Count` and `Link`
(RFC 8288); bad paging or filter values are a 400 naming the parameter; the filters users expect work."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from annotator import services
from annotator.models import Job, ModelVersion, Webhook, WebhookDelivery

from .conftest import client_for, make_user


def _url(project, what: str) -> str:
    return f"/api/v1/projects/{project.pk}/{what}/"


def _links(response) -> dict[str, str]:
    """rel -> URL of the Link header."""
    found = re.findall(r'<([^>]+)>;\s*rel="(\w+)"', response.get("Link", ""))
    return {rel: url for url, rel in found}


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def lists(project, manager, annotator_user, documents, monkeypatch):
    """At least three items in every list endpoint of the project (and of the manager)."""
    from annotator.services import webhooks

    monkeypatch.setattr(webhooks, "webhook_dispatch", lambda *args, **kwargs: True)
    for name in ("Second", "Third"):
        services.project_create(user=manager, name=name, labels=["a"])
    for name in ("zoe", "yann"):
        make_user(name)
        services.member_add(project=project, username=name, role="reviewer")
    for number in (1, 2, 3):
        ModelVersion.objects.create(
            project=project,
            number=number,
            is_serving=number == 2,
            artifact_path=f"x/v{number}",
            n_annotations=3,
            n_labels=5,
            data_cutoff=timezone.now(),
        )
    for kind, status in (("train", "SUCCEEDED"), ("score", "FAILED"), ("train", "PENDING"), ("encode", "SUCCEEDED")):
        Job.objects.create(project=project, kind=kind, status=status)
    for at in ("01:00", "02:00", "03:00"):
        services.schedule_save(project=project, data={"kind": "daily", "at": at, "mode": "full"})
    services.schedule_save(project=project, data={"kind": "daily", "at": "04:00", "mode": "full", "enabled": False})
    for _ in range(3):
        services.token_create(user=manager, name="script")
    for events in (["job.failed"], ["model.published"], ["job.failed", "answer.created"]):
        services.webhook_create(project=project, user=manager, url="https://example.org/hook", events=events)
    for user in (annotator_user, manager, *make_users_answering(project)):
        services.annotation_submit(project=project, user=user, document_id=documents[0].pk, labels=["joy"])
    return project


def make_users_answering(project) -> list:
    user = make_user("third-annotator")
    services.member_add(project=project, username=user.username, role="annotator")
    return [user]


LISTS = [
    ("/api/v1/projects/", 3),
    ("members", 5),
    ("models", 3),
    ("jobs", None),  # the four made above and those the import queued
    ("schedules", 4),
    ("/api/v1/auth/tokens/", 3),
    ("webhooks", 3),
    ("annotators", 3),
]  # the label search ranks only as far as the page: test_label_search_pages_the_ranked_hits


def test_every_list_endpoint_pages_with_total_and_links(lists, manager_client):
    for what, total in LISTS:
        url = what if what.startswith("/") else _url(lists, what)
        total = total or Job.objects.filter(project=lists).count()
        whole = manager_client.get(url)
        assert whole.status_code == 200, (url, whole.content)
        assert whole["X-Total-Count"] == str(total) and len(whole.json()) == total, url
        assert "Link" not in whole, url  # one page holds them all

        first = manager_client.get(url, {"limit": 2})
        assert first["X-Total-Count"] == str(total) and first.json() == whole.json()[:2], url
        links = _links(first)
        assert set(links) == {"next"}, url
        assert links["next"].startswith("http://testserver" + url)
        assert _query(links["next"]) == {"limit": "2", "offset": "2"}

        second = manager_client.get(links["next"])
        assert second.json() == whole.json()[2:4], url
        links = _links(second)
        assert _query(links["prev"]) == {"limit": "2", "offset": "0"}, url
        assert ("next" in links) == (total > 4), url

        beyond = manager_client.get(url, {"offset": total + 10})
        assert beyond.status_code == 200 and beyond.json() == [] and beyond["X-Total-Count"] == str(total), url


def test_bad_paging_values_are_a_400_naming_them(lists, manager_client):
    bad = [({"limit": 0}, "limit"), ({"limit": "x"}, "limit"), ({"limit": 1001}, "limit"), ({"offset": -1}, "offset")]
    for what, _ in LISTS:
        url = what if what.startswith("/") else _url(lists, what)
        for query, named in bad:
            response = manager_client.get(url, query)
            assert response.status_code == 400, (url, query)
            assert response["Content-Type"] == "application/problem+json"
            assert response.json()["detail"].startswith(named), (url, query)


def test_the_link_keeps_the_filters(lists, manager_client):
    response = manager_client.get(_url(lists, "jobs"), {"kind": "train", "limit": 1})
    assert response["X-Total-Count"] == "2"
    assert _query(_links(response)["next"]) == {"kind": "train", "limit": "1", "offset": "1"}


def test_label_search_pages_the_ranked_hits(lists, manager_client):
    whole = manager_client.get(_url(lists, "labels"), {"q": "", "limit": 100}).json()
    page = manager_client.get(_url(lists, "labels"), {"q": "", "limit": 2, "offset": 2})
    # ranked only as far as the page: more may follow (Link next), the total is not known yet
    assert page.json() == whole[2:4] and "X-Total-Count" not in page
    assert _query(_links(page)["next"])["offset"] == "4"
    last = manager_client.get(_url(lists, "labels"), {"q": "", "limit": 50, "offset": 2})
    assert last.json() == whole[2:] and last["X-Total-Count"] == str(len(whole)) and "next" not in _links(last)
    too_many = manager_client.get(_url(lists, "labels"), {"limit": 101})
    assert too_many.status_code == 400 and "limit" in too_many.json()["detail"]


# --- filters ---------------------------------------------------------------------------------------------------------
def test_project_filters(lists, manager, annotator_user):
    client = client_for(manager)
    services.project_archive(project=lists, user=manager, archived=True)
    names = lambda query: [p["name"] for p in client.get("/api/v1/projects/", query).json()]  # noqa: E731
    assert names({"q": "sEcO"}) == ["Second"]
    assert names({"archived": "1"}) == ["Emotions"]
    assert names({"archived": "0"}) == ["Third", "Second"]
    assert names({"role": "manager"}) == ["Third", "Second", "Emotions"]
    assert [p["name"] for p in client_for(annotator_user).get("/api/v1/projects/", {"role": "annotator"}).json()] == [
        "Emotions"
    ]
    assert names({"role": "reviewer"}) == []


def test_member_model_job_schedule_filters(lists, manager_client):
    assert [m["username"] for m in manager_client.get(_url(lists, "members"), {"role": "reviewer"}).json()] == [
        "yann",
        "zoe",
    ]
    assert [v["number"] for v in manager_client.get(_url(lists, "models"), {"serving": "1"}).json()] == [2]
    assert [v["number"] for v in manager_client.get(_url(lists, "models"), {"serving": "0"}).json()] == [3, 1]
    jobs = manager_client.get(_url(lists, "jobs"), {"kind": "train", "status": "PENDING"}).json()
    assert [(j["kind"], j["status"]) for j in jobs] == [("train", "PENDING")]
    assert [s["at"] for s in manager_client.get(_url(lists, "schedules"), {"enabled": "0"}).json()] == ["04:00:00"]
    assert len(manager_client.get(_url(lists, "schedules"), {"enabled": "true"}).json()) == 3


def test_webhook_and_delivery_filters(lists, manager_client):
    hooks = manager_client.get(_url(lists, "webhooks"), {"event": "job.failed"}).json()
    assert [sorted(h["events"]) for h in hooks] == [["job.failed"], ["answer.created", "job.failed"]]
    hook = Webhook.objects.filter(project=lists).order_by("id").first()
    for status in ("pending", "failed", "delivered"):
        WebhookDelivery.objects.create(webhook=hook, event="job.failed", status=status)
    url = _url(lists, f"webhooks/{hook.pk}/deliveries")
    page = manager_client.get(url, {"status": "failed"}).json()
    assert [d["status"] for d in page["results"]] == ["failed"] and page["next"] is None
    assert len(manager_client.get(url).json()["results"]) >= 3


BAD_FILTERS = [
    ("/api/v1/projects/", {"archived": "maybe"}),
    ("/api/v1/projects/", {"role": "boss"}),
    ("members", {"role": "boss"}),
    ("models", {"serving": "2"}),
    ("jobs", {"kind": "bake"}),
    ("jobs", {"status": "done"}),
    ("schedules", {"enabled": "on?"}),
    ("webhooks", {"event": "nope"}),
    ("webhooks/{hook}/deliveries", {"status": "lost"}),
]


def test_bad_filter_values_are_a_400_naming_them(lists, manager_client):
    hook = Webhook.objects.filter(project=lists).first()
    for what, query in BAD_FILTERS:
        url = what if what.startswith("/") else _url(lists, what.format(hook=hook.pk))
        response = manager_client.get(url, query)
        assert response.status_code == 400, (url, query)
        assert response["Content-Type"] == "application/problem+json"
        (name,) = query
        assert response.json()["detail"].startswith(f"{name} must be"), response.json()


def test_member_counts_take_one_query_whatever_the_page(lists, manager_client, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):  # session, user, membership, count, page, spent
        response = manager_client.get(_url(lists, "members"))
    spent = {m["username"]: m["spent"] for m in response.json()}
    assert spent["annotator"] == 1 and spent["manager"] == 1 and spent["zoe"] == 0
