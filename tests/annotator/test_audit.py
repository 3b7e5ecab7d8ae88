"""The audit log: taxonomy changes write rows with before and after (services.taxonomy), the API pages through
them newest first for managers only, and the audit page shows them escaped."""

from __future__ import annotations

from django.test import Client

from annotator import services
from annotator.importing import LabelRecord
from annotator.models import AuditEntry, Label
from annotator.services.taxonomy import label_deprecate, label_merge, label_update, labels_import

from .conftest import client_for, make_user


def _label(project, name: str) -> Label:
    return Label.objects.get(project=project, name=name)


def _rows(project) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(project=project, target="label").order_by("id"))


def test_label_changes_write_audit_rows_with_before_and_after(project, manager):
    joy = _label(project, "joy")
    label_update(project=project, user=manager, label_id=joy.pk, name="happiness", description="glad")
    label_update(project=project, user=manager, label_id=joy.pk, description="glad")  # nothing changes: no row
    label_deprecate(project=project, user=manager, label_id=joy.pk)
    label_deprecate(project=project, user=manager, label_id=joy.pk, deprecated=False)
    label_merge(project=project, user=manager, label_id=_label(project, "anger").pk, into_id=_label(project, "fear").pk)
    rows = _rows(project)
    assert [(r.action, r.username) for r in rows] == [("update", "manager")] * 3 + [("delete", "manager")]
    assert rows[0].before == {"name": "joy", "description": "", "alt_names": []}
    assert rows[0].after == {"name": "happiness", "description": "glad", "alt_names": ["joy"]}
    assert (rows[1].before, rows[1].after) == ({"deprecated": False}, {"deprecated": True})
    assert (rows[2].before, rows[2].after) == ({"deprecated": True}, {"deprecated": False})
    assert rows[3].before["name"] == "anger" and rows[3].after["merged_into"] == "fear"


def test_a_label_file_writes_one_row_with_counts(project, manager):
    records = [LabelRecord(line=i + 2, name=f"new{i}") for i in range(30)]
    records.append(LabelRecord(line=40, name="joy", description="glad"))
    labels_import(project=project, user=manager, records=records)
    (row,) = _rows(project)
    assert row.action == "create" and row.before == {"labels": 5}
    assert row.after["created"] == 30 and row.after["updated"] == 1 and row.after["labels"] == 35


def test_audit_api_pages_newest_first_and_is_for_managers(project, manager, annotator_user, outsider):
    for i in range(5):
        label_update(project=project, user=manager, label_id=_label(project, "joy").pk, description=f"d{i}")
    client = client_for(manager)
    url = f"/api/v1/projects/{project.pk}/audit/"
    seen, after = [], None
    while True:
        page = client.get(url, {"target": "label", "limit": 2, **({"after": after} if after else {})}).json()
        seen += [entry["after"]["description"] for entry in page["entries"]]
        after = page["next"]
        if after is None:
            break
    assert seen == ["d4", "d3", "d2", "d1", "d0"]
    assert len(client.get(url, {"target": "label"}).json()["entries"]) == 5
    assert client.get(url, {"target": "gold"}).json() == {"entries": [], "next": None}
    response = client.get(url, {"target": "nonsense"})
    assert response.status_code == 400 and "target must be one of" in response.json()["detail"]
    assert client.get(url, {"after": "x"}).status_code == 400
    reviewer = make_user("reviewer")
    services.member_add(project=project, username="reviewer", role="reviewer", user=manager)
    assert client_for(reviewer).get(url).status_code == 403
    assert client_for(annotator_user).get(url).status_code == 403
    assert client_for(outsider).get(url).status_code == 404


def test_audit_page_shows_the_rows_escaped(project, manager):
    label_update(project=project, user=manager, label_id=_label(project, "joy").pk, name="<script>x</script>")
    client = Client()
    client.force_login(manager)
    page = client.get(f"/projects/{project.pk}/audit/").content.decode()
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x</script>" not in page
    assert "label update" in page
    assert f"/projects/{project.pk}/audit/" in client.get(f"/projects/{project.pk}/").content.decode()
