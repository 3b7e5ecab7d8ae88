"""Fixtures for the annotation app: users, a project with labels, documents, API clients, a tiny encoder."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from annotator import services
from annotator.importing import ImportRecord

LABELS = ["joy", "anger", "sadness", "fear", "surprise"]


def make_user(username: str, *, can_create: bool = False):
    user = get_user_model().objects.create_user(username=username, password="correct horse battery")
    if can_create:
        user.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
        user = get_user_model().objects.get(pk=user.pk)
    return user


def records(n: int, *, start: int = 0, labels: list[list[str]] | None = None) -> list[ImportRecord]:
    return [
        ImportRecord(
            line=i + 1,
            external_id=f"doc-{start + i}",
            text=f"document number {start + i} about the cat and the game",
            labels=labels[i] if labels else None,
        )
        for i in range(n)
    ]


@pytest.fixture
def manager(db):
    return make_user("manager", can_create=True)


@pytest.fixture
def annotator_user(db):
    return make_user("annotator")


@pytest.fixture
def outsider(db):
    return make_user("outsider", can_create=True)


@pytest.fixture
def project(manager, annotator_user):
    # No evaluation set (eval_size=0): these tests pin which documents are served; test_evaluation.py covers it.
    project = services.project_create(user=manager, name="Emotions", labels=LABELS, retrain_every=5, eval_size=0)
    services.member_add(project=project, username=annotator_user.username, role="annotator")
    return project


@pytest.fixture
def documents(project, manager):
    services.documents_import(project=project, user=manager, records=records(30))
    return list(project.documents.order_by("id"))


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def manager_client(manager):
    return client_for(manager)


@pytest.fixture
def annotator_client(annotator_user):
    return client_for(annotator_user)


@pytest.fixture(scope="session")
def tiny_encoder_path(tmp_path_factory):
    from learner.testing import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture
def tiny_encoder(settings, tiny_encoder_path):
    """Workers in this test encode with a tiny BERT built offline instead of the pretrained MiniLM."""
    settings.ALABEL_ENCODER_PATH = tiny_encoder_path
    return tiny_encoder_path
