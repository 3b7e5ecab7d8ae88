"""A live server (pytest-django's `live_server`, a real HTTP server on the test database) for the Python client
and the `alabel` command line, with the real Celery worker and broker of tests/integration/conftest.py for the tests
that train (they must use `transactional_db`: the worker only sees committed rows)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alabel_client import Client
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from annotator.services.demo import demo_labels, demo_records
from annotator.services.tokens import token_create

from ..integration.conftest import broker_url, celery_worker, wait_for

__all__ = ["broker_url", "celery_worker", "goemotions", "goemotions_labels", "wait_for"]

PASSWORD = "correct horse battery"


def goemotions(n: int, *, start: int = 0, with_labels: bool = True) -> list[dict[str, Any]]:
    """`n` GoEmotions records (`{"id", "text", "labels"}`) from `start`, from the sample the demo ships
    (annotator/demo/goemotions-sample.jsonl.gz: in the repository, so the tests do not depend on ../shared)."""
    return [
        {"id": r.external_id, "text": r.text, **({"labels": r.labels or []} if with_labels else {})}
        for r in demo_records(start + n, with_labels=True)[start:]
    ]


def goemotions_labels() -> list[dict[str, str]]:
    """The 28 GoEmotions labels with their descriptions (`{"name", "description"}`)."""
    return demo_labels()


@pytest.fixture(autouse=True)
def _broker(broker_url: str) -> str:
    """Imports and answers dispatch jobs: the embedded broker (or CELERY_BROKER_URL) is there to take them."""
    return broker_url


@pytest.fixture
def server(transactional_db, live_server) -> str:
    """The live server's URL. The test database is asked for first, so that the server (session-scoped) stops
    before the database is dropped."""
    return str(live_server.url)


@pytest.fixture
def make_user(transactional_db) -> Callable[..., Any]:
    def make(username: str, *, can_create: bool = False) -> Any:
        user = get_user_model().objects.create_user(username=username, password=PASSWORD)
        if can_create:
            user.user_permissions.add(
                Permission.objects.get(codename="add_project", content_type__app_label="annotator")
            )
        return user

    return make


@pytest.fixture
def connect(server: str, make_user: Callable[..., Any]) -> Iterator[Callable[..., Client]]:
    """A client with a token for a new user (tokens issued directly: the login endpoint is throttled per address).
    Closed afterwards: an open keep-alive connection would keep a live-server thread, and its database session."""
    clients: list[Client] = []

    def connect(username: str, *, can_create: bool = False) -> Client:
        user = make_user(username, can_create=can_create)
        _, key = token_create(user=user, name="tests")
        clients.append(Client(server, key, timeout=120))
        return clients[-1]

    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def manager(connect: Callable[..., Client]) -> Client:
    return connect("manager", can_create=True)


@pytest.fixture
def annotator(connect: Callable[..., Client]) -> Client:
    return connect("annotator")
