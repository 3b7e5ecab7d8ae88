"""Tests of annotator.services.projects."""

from __future__ import annotations

import pytest
from django.utils import timezone

from annotator import selectors, services
from annotator.exceptions import ProjectError
from annotator.models import Job, Label, Membership, ModelVersion


# --- projects and labels -------------------------------------------------------------------------------------------
def test_creator_becomes_manager_and_labels_are_created(manager):
    project = services.project_create(user=manager, name="P", labels=["a", {"name": "b", "description": "bee"}])
    assert Membership.objects.get(project=project, user=manager).role == "manager"
    assert list(project.labels.values_list("name", "description")) == [("a", ""), ("b", "bee")]


def test_creating_a_project_needs_the_permission(annotator_user):
    with pytest.raises(ProjectError, match="may not create projects"):
        services.project_create(user=annotator_user, name="P", labels=["a"])


def test_bad_labels_are_all_reported_and_nothing_is_created(manager):
    with pytest.raises(ProjectError) as caught:
        services.project_create(user=manager, name="P", labels=["a", "a", "", "x|y", "ok"])
    assert len(caught.value.errors) == 3
    assert not Label.objects.exists()


def test_a_project_supports_50000_labels(manager):
    names = [f"label {i:05d}" for i in range(50_000)]
    project = services.project_create(user=manager, name="Big", labels=names)
    assert project.labels.count() == 50_000
    hits = selectors.label_search(project=project, query="LABEL 4999", limit=20)
    # The ten names starting with the query first, then names holding both words: "label 04999", "label 14999", ...
    assert [label.name for label in hits[:10]] == [f"label {i}" for i in range(49990, 50000)]
    assert [label.name for label in hits[10:]] == [f"label {d}4999" for d in range(5)]
    assert [label.name for label in selectors.label_search(project=project, query="04999")] == ["label 04999"]


def test_member_roles_change_but_the_last_manager_stays(project, manager, annotator_user):
    services.member_add(project=project, username="annotator", role="manager")
    assert Membership.objects.get(project=project, user=annotator_user).role == "manager"
    services.member_add(project=project, username="annotator", role="annotator")
    with pytest.raises(ProjectError, match="at least one manager"):
        services.member_add(project=project, username="manager", role="annotator")
    with pytest.raises(ProjectError, match="no user"):
        services.member_add(project=project, username="ghost", role="annotator")


def test_changing_the_strategy_rescores_the_queue_only_when_a_model_serves(project, manager):
    Job.objects.all().delete()
    services.project_update(project=project, strategy="adaptive")
    assert not Job.objects.filter(kind="score").exists()  # no model yet: the cold-start queue stays
    ModelVersion.objects.create(
        project=project,
        number=1,
        is_serving=True,
        artifact_path="x",
        n_annotations=5,
        n_labels=5,
        data_cutoff=timezone.now(),
    )

    services.project_update(project=project, strategy="margin+ranked")
    services.project_update(project=project, strategy="margin+ranked")  # unchanged: nothing more to do

    assert Job.objects.filter(project=project, kind="score").count() == 1
    with pytest.raises(ProjectError, match="strategy must be one of default, random"):
        services.project_update(project=project, strategy="modal_avg_score")
    project.refresh_from_db()
    assert project.strategy == "margin+ranked"
