"""Project administration (issue 18, point 4): roles default to annotator, removing members, renaming, archiving and
deleting projects, every action in the activity feed, and who may do what (annotator / manager / outsider)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from annotator import ml, services
from annotator.exceptions import ProjectError
from annotator.models import (
    Activity,
    Annotation,
    AuditEntry,
    Document,
    Job,
    Label,
    Membership,
    Project,
    QueueItem,
)

from .conftest import client_for, make_user, records


def _feed(project) -> list[str]:
    return list(Activity.objects.filter(project=project).order_by("id").values_list("message", flat=True))


def _page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- members ----------------------------------------------------------------------------------------------------------
def test_a_new_member_is_an_annotator_unless_said_and_each_change_is_in_the_feed(project, manager):
    make_user("newcomer")
    services.member_add(project=project, username="newcomer", user=manager)
    assert Membership.objects.get(project=project, user__username="newcomer").role == "annotator"
    services.member_add(project=project, username="newcomer", quota=30, user=manager)  # no role: the role stays
    assert Membership.objects.get(project=project, user__username="newcomer").role == "annotator"
    services.member_add(project=project, username="newcomer", role="manager", user=manager)
    assert _feed(project)[-3:] == [
        "newcomer added as annotator by manager",
        "quota of newcomer set to 30 by manager",
        "newcomer is now manager (was annotator) by manager",
    ]


def test_the_api_and_the_page_add_annotators_by_default(project, manager, manager_client):
    make_user("viaapi")
    response = manager_client.post(f"/api/v1/projects/{project.pk}/members/", {"username": "viaapi"}, format="json")
    assert response.status_code == 201 and response.json()["role"] == "annotator"
    page = _page_client(manager).get(f"/projects/{project.pk}/")
    assert b'<option value="annotator" selected>' in page.content


def test_removing_a_member_keeps_their_answers_and_releases_what_they_hold(project, manager, annotator_user):
    services.documents_import(project=project, user=manager, records=records(6))
    served = services.queue_lease_next(project=project, user=annotator_user)
    services.annotation_submit(project=project, user=annotator_user, document_id=served.document.pk, labels=["joy"])
    held = services.queue_lease_next(project=project, user=annotator_user)
    services.member_remove(project=project, username="annotator", user=manager)
    assert not Membership.objects.filter(project=project, user=annotator_user).exists()
    answer = Annotation.objects.get(project=project, annotator=annotator_user)
    assert answer.document_id == served.document.pk  # kept, attributed to them
    assert not QueueItem.objects.filter(document=held.document, leased_to__isnull=False).exists()  # released at once
    assert _feed(project)[-1] == "annotator removed (1 answer(s) kept, 1 document(s) released) by manager"
    # They no longer see the project.
    assert client_for(annotator_user).get(f"/api/v1/projects/{project.pk}/next/").status_code == 404


def test_the_last_manager_cannot_be_removed_or_demoted(project, manager, manager_client):
    with pytest.raises(ProjectError, match="at least one manager"):
        services.member_remove(project=project, username="manager", user=manager)
    response = manager_client.delete(f"/api/v1/projects/{project.pk}/members/manager/")
    assert response.status_code == 409
    assert manager_client.delete(f"/api/v1/projects/{project.pk}/members/ghost/").status_code == 404
    assert Membership.objects.filter(project=project, user=manager, role="manager").exists()


# --- rename, settings, archive ----------------------------------------------------------------------------------------
def test_rename_and_settings_changes_are_in_the_feed_with_before_and_after(project, manager, manager_client):
    response = manager_client.patch(
        f"/api/v1/projects/{project.pk}/", {"name": "Emotions 2026", "retrain_every": 50}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Emotions 2026"
    feed = _feed(project)
    assert "project renamed from 'Emotions' to 'Emotions 2026' by manager" in feed
    assert "settings changed: retrain_every 5 -> 50 by manager" in feed
    change = Activity.objects.filter(project=project, message__startswith="settings changed").get()
    assert change.data["changed"] == {"retrain_every": [5, 50]}
    assert manager_client.patch(f"/api/v1/projects/{project.pk}/", {"name": "  "}, format="json").status_code == 400
    assert Project.objects.get(pk=project.pk).name == "Emotions 2026"


def test_an_archived_project_serves_nothing_and_trains_nothing_until_restored(project, manager, annotator_user):
    services.documents_import(project=project, user=manager, records=records(6, labels=[["joy"]] * 6))
    services.documents_import(project=project, user=manager, records=records(3, start=6))  # unlabelled
    services.project_archive(project=project, user=manager)
    project.refresh_from_db()
    assert project.archived_at is not None
    nothing = services.queue_lease_next(project=project, user=annotator_user)
    assert isinstance(nothing, services.NothingToServe) and nothing.reason == "archived"
    response = client_for(annotator_user).get(f"/api/v1/projects/{project.pk}/next/")
    assert response.status_code == 204 and response["X-Reason"] == "archived"
    Job.objects.filter(project=project, kind=Job.Kind.TRAIN).delete()
    assert services.training_maybe_request(project=project) is None
    with pytest.raises(ProjectError, match="archived"):
        services.training_request(project=project, user=manager)
    # Listed apart on the projects page.
    page = _page_client(manager).get("/").content.decode()
    assert 'id="archived-projects"' in page and "Emotions" in page.split('id="archived-projects"')[1]
    services.project_archive(project=project, user=manager, archived=False)
    project.refresh_from_db()
    assert project.archived_at is None
    assert not isinstance(services.queue_lease_next(project=project, user=annotator_user), services.NothingToServe)
    assert _feed(project)[-2:] == ["project archived by manager", "project restored from the archive by manager"]


# --- delete -----------------------------------------------------------------------------------------------------------
def test_delete_asks_for_the_name_and_removes_rows_and_files(
    project, manager, manager_client, django_capture_on_commit_callbacks
):
    services.documents_import(project=project, user=manager, records=records(4, labels=[["joy"]] * 4))
    folder = ml.project_dir(project.pk)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "artifact.npy").write_bytes(b"x")
    url = f"/api/v1/projects/{project.pk}/"
    response = manager_client.delete(url, {"confirm": "emotions"}, format="json")
    assert response.status_code == 400 and "type its name exactly" in response.json()["detail"]
    assert Project.objects.filter(pk=project.pk).exists() and Path(folder).exists()  # nothing changed
    with django_capture_on_commit_callbacks(execute=True):  # the files go once the rows are gone (on commit)
        assert manager_client.delete(url, {"confirm": "Emotions"}, format="json").status_code == 204
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not Document.objects.exists() and not Label.objects.exists() and not Annotation.objects.exists()
    assert not Path(folder).exists()


def test_the_page_deletes_after_the_name_and_goes_back_to_the_list(project, manager):
    client = _page_client(manager)
    response = client.post(f"/projects/{project.pk}/delete/", {"confirm": "wrong"}, follow=True)
    assert "type its name exactly" in response.content.decode()
    assert Project.objects.filter(pk=project.pk).exists()
    response = client.post(f"/projects/{project.pk}/delete/", {"confirm": "Emotions"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert not Project.objects.filter(pk=project.pk).exists()


# --- who may do what --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("delete", "", {"confirm": "Emotions"}),
        ("patch", "", {"name": "Mine now"}),
        ("post", "archive/", None),
        ("post", "restore/", None),
        ("delete", "members/manager/", None),
        ("post", "members/", {"username": "annotator", "role": "manager"}),
    ],
)
def test_only_managers_administer_and_outsiders_see_nothing(project, annotator_user, outsider, method, path, body):
    reviewer = make_user("reviewer")
    services.member_add(project=project, username="reviewer", role="reviewer")
    url = f"/api/v1/projects/{project.pk}/{path}"
    for user, expected in ((annotator_user, 403), (reviewer, 403), (outsider, 404)):
        response = getattr(client_for(user), method)(url, body, format="json")
        assert response.status_code == expected, (user.username, response.content)
    project.refresh_from_db()
    assert project.name == "Emotions" and project.archived_at is None
    assert Membership.objects.get(project=project, user=annotator_user).role == "annotator"
    assert Membership.objects.filter(project=project).count() == 3


def test_admin_actions_are_in_the_audit_log_with_before_and_after(project, manager, annotator_user):
    first = AuditEntry.objects.get(project=project, target="member", action="create", object_ref="annotator")
    assert first.after == {"role": "annotator", "quota": None}  # the fixture added them
    services.member_add(project=project, username="annotator", role="reviewer", user=manager)
    services.member_add(project=project, username="annotator", quota=50, user=manager)
    services.project_rename(project=project, name="Feelings", user=manager)
    services.project_archive(project=project, user=manager)
    services.project_archive(project=project, user=manager)  # already archived: nothing changes, no row
    services.project_update(project=project, user=manager, suggestions_k=7)
    services.member_remove(project=project, username="annotator", user=manager)
    rows = [
        (e.target, e.action, e.object_ref, e.before, e.after, e.username)
        for e in AuditEntry.objects.filter(project=project, id__gt=first.pk).order_by("id")
    ]
    assert rows == [
        (
            "member",
            "update",
            "annotator",
            {"role": "annotator", "quota": None},
            {"role": "reviewer", "quota": None},
            "manager",
        ),
        (
            "member",
            "update",
            "annotator",
            {"role": "reviewer", "quota": None},
            {"role": "reviewer", "quota": 50},
            "manager",
        ),
        ("project", "update", "name", {"name": "Emotions"}, {"name": "Feelings"}, "manager"),
        ("project", "update", "archived", {"archived": False}, {"archived": True}, "manager"),
        ("settings", "update", "suggestions_k", {"suggestions_k": 10}, {"suggestions_k": 7}, "manager"),
        ("member", "delete", "annotator", {"role": "reviewer", "quota": 50}, {"answers_kept": 0}, "manager"),
    ]


def test_an_annotator_posting_the_admin_forms_changes_nothing(project, annotator_user):
    client = _page_client(annotator_user)
    for action, data in (
        ("rename", {"name": "x"}),
        ("archive", {"archived": "1"}),
        ("member-remove", {"username": "manager"}),
    ):
        client.post(f"/projects/{project.pk}/manage/{action}/", data)
    client.post(f"/projects/{project.pk}/delete/", {"confirm": "Emotions"})
    project.refresh_from_db()
    assert (project.name, project.archived_at) == ("Emotions", None)
    assert Membership.objects.filter(project=project).count() == 2


def test_an_import_is_in_the_feed(project, manager):
    services.documents_import(project=project, user=manager, records=records(3, labels=[["joy"], [], ["anger"]]))
    assert _feed(project)[-1] == "3 document(s) imported (3 with answers) by manager"


def test_labels_added_through_the_api_are_one_audit_row(project, manager_client):
    response = manager_client.post(f"/api/v1/projects/{project.pk}/labels/", {"labels": ["awe", "envy"]}, format="json")
    assert response.status_code == 201, response.content
    entry = AuditEntry.objects.get(project=project, target="label")
    assert (entry.action, entry.username, entry.object_ref) == ("create", "manager", "2 label(s)")
    assert entry.after == {"count": 2, "labels": ["awe", "envy"]}
