"""Logins and API tokens: lockout after repeated failures (django-axes), the token endpoint's throttle, expiring and
revocable tokens (annotator/api/tokens.py, services/tokens.py, security.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from annotator import services
from annotator.models import ApiToken

from .conftest import client_for, make_user

PASSWORD = "correct horse battery"
TOKEN_URL = "/api/v1/auth/token/"


def _projects(key: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/projects/")


# --- the login form -------------------------------------------------------------------------------------------------
def test_login_form_locks_out_after_repeated_wrong_passwords(annotator_user):
    client = Client()
    for _ in range(60):
        client.post("/accounts/login/", {"username": "annotator", "password": "wrong"})

    response = client.post("/accounts/login/", {"username": "annotator", "password": PASSWORD})

    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert int(response["Retry-After"]) == 15 * 60
    assert "_auth_user_id" not in client.session  # the right password did not log in


def test_login_form_lockout_ends_after_the_cool_off(annotator_user, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/accounts/login/", {"username": "annotator", "password": "wrong"})
    assert client.post("/accounts/login/", {"username": "annotator", "password": PASSWORD}).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))

    response = client.post("/accounts/login/", {"username": "annotator", "password": PASSWORD})

    assert response.status_code == 302 and client.session["_auth_user_id"] == str(annotator_user.pk)


def test_a_few_wrong_passwords_do_not_lock_out(annotator_user, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert client.post("/accounts/login/", {"username": "annotator", "password": "wrong"}).status_code == 200
    assert client.post("/accounts/login/", {"username": "annotator", "password": PASSWORD}).status_code == 302


def test_a_lockout_holds_one_username_at_one_address(annotator_user, manager):
    client = Client()
    for _ in range(10):
        client.post("/accounts/login/", {"username": "annotator", "password": "wrong"})
    # Another user at the same address, and the same user from another address, still log in.
    assert client.post("/accounts/login/", {"username": "manager", "password": PASSWORD}).status_code == 302
    other = Client(REMOTE_ADDR="192.0.2.7")
    assert other.post("/accounts/login/", {"username": "annotator", "password": PASSWORD}).status_code == 302


def test_a_forged_forwarded_address_does_not_escape_the_lockout(annotator_user):
    client = Client()
    for i in range(10):
        client.post(
            "/accounts/login/", {"username": "annotator", "password": "wrong"}, HTTP_X_FORWARDED_FOR=f"198.51.100.{i}"
        )
    response = client.post(
        "/accounts/login/", {"username": "annotator", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="198.51.100.99"
    )
    assert response.status_code == 429  # without DJANGO_NUM_PROXIES, X-Forwarded-For is not the client's address


def test_behind_a_proxy_lockouts_count_the_forwarded_address(annotator_user, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = Client(REMOTE_ADDR="10.0.0.2")
    for _ in range(10):
        proxy.post(
            "/accounts/login/", {"username": "annotator", "password": "wrong"}, HTTP_X_FORWARDED_FOR="203.0.113.5"
        )
    locked = proxy.post(
        "/accounts/login/", {"username": "annotator", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="203.0.113.5"
    )
    assert locked.status_code == 429
    other = proxy.post(
        "/accounts/login/", {"username": "annotator", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="203.0.113.6"
    )
    assert other.status_code == 302  # another client behind the same proxy


# --- obtaining a token ----------------------------------------------------------------------------------------------
def test_token_endpoint_locks_out_after_repeated_wrong_passwords(annotator_user):
    client = APIClient()
    for _ in range(60):
        client.post(TOKEN_URL, {"username": "annotator", "password": "wrong"}, format="json")

    response = client.post(TOKEN_URL, {"username": "annotator", "password": PASSWORD}, format="json")

    assert response.status_code == 429  # the throttle or the lockout, whichever holds first
    assert not ApiToken.objects.exists()


def test_token_endpoint_shares_the_login_lockout(annotator_user, settings):
    client = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT):  # fewer requests than the throttle allows
        client.post(TOKEN_URL, {"username": "annotator", "password": "wrong"}, format="json")

    response = client.post(TOKEN_URL, {"username": "annotator", "password": PASSWORD}, format="json")

    assert response.status_code == 429
    assert "Too many failed logins" in response.json()["detail"]
    assert int(response["Retry-After"]) == 15 * 60
    assert not ApiToken.objects.exists()
    # ... and the login form holds the same username at the same address.
    form = Client().post("/accounts/login/", {"username": "annotator", "password": PASSWORD})
    assert form.status_code == 429


def test_token_endpoint_is_throttled_per_client_address(annotator_user):
    client = APIClient()
    statuses = [client.post(TOKEN_URL, {}, format="json").status_code for _ in range(10)]
    assert statuses == [400] * 10  # "10/minute" (ALABEL_AUTH_RATE)
    # The count lives in the database cache, which every web process shares (a per-process cache would let each
    # gunicorn worker allow its own 10).
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM alabel_cache")
        assert cursor.fetchone()[0] >= 1

    response = client.post(TOKEN_URL, {"username": "annotator", "password": PASSWORD}, format="json")

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    # Another address is not held back by this one.
    other = APIClient(REMOTE_ADDR="192.0.2.7")
    assert other.post(TOKEN_URL, {"username": "annotator", "password": PASSWORD}, format="json").status_code == 200


def test_a_wrong_password_is_a_clear_400(annotator_user):
    response = APIClient().post(TOKEN_URL, {"username": "annotator", "password": "wrong"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "unable to log in with the username and password given"


def test_a_token_expires_after_the_configured_hours(annotator_user, settings):
    settings.ALABEL_TOKEN_HOURS = 2
    before = timezone.now()
    body = APIClient().post(TOKEN_URL, {"username": "annotator", "password": PASSWORD}, format="json").json()
    expires = ApiToken.objects.get(pk=body["id"]).expires_at
    assert before + timedelta(hours=2) <= expires <= timezone.now() + timedelta(hours=2)
    assert _projects(body["token"]).status_code == 200
    ApiToken.objects.filter(pk=body["id"]).update(
        created_at=timezone.now() - timedelta(hours=3), expires_at=timezone.now() - timedelta(hours=1)
    )

    response = _projects(body["token"])

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["detail"].startswith("token expired at ")
    assert "POST /api/v1/auth/token/" in response.json()["detail"]


def test_only_a_digest_of_the_key_is_stored(annotator_user):
    token, key = services.token_create(user=annotator_user)
    stored = ApiToken.objects.values_list("digest", "prefix").get(pk=token.pk)
    assert key not in stored[0] and stored[1] == key[:8]
    assert _projects(key).status_code == 200
    assert _projects(key[:-1] + ("0" if key[-1] != "0" else "1")).status_code == 401


# --- listing and revoking -------------------------------------------------------------------------------------------
def test_users_list_and_revoke_their_own_tokens(annotator_user, manager):
    mine, key = services.token_create(user=annotator_user, name="nightly script")
    theirs, their_key = services.token_create(user=manager)
    client = client_for(annotator_user)

    listed = client.get("/api/v1/auth/tokens/").json()

    assert [(t["id"], t["name"], t["prefix"], t["expired"]) for t in listed] == [
        (mine.pk, "nightly script", key[:8], False)
    ]
    assert key not in str(listed)  # never the key again
    assert client.delete(f"/api/v1/auth/tokens/{theirs.pk}/").status_code == 404  # not yours
    assert _projects(their_key).status_code == 200
    assert client.delete(f"/api/v1/auth/tokens/{mine.pk}/").status_code == 204
    response = _projects(key)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_a_token_can_revoke_itself(annotator_user):
    token, key = services.token_create(user=annotator_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.delete(f"/api/v1/auth/tokens/{token.pk}/").status_code == 204
    assert client.get("/api/v1/auth/tokens/").status_code == 401


def test_a_new_token_clears_the_users_expired_ones(annotator_user):
    old, _ = services.token_create(user=annotator_user)
    ApiToken.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=3), expires_at=timezone.now() - timedelta(days=2)
    )
    other = make_user("other")
    kept, _ = services.token_create(user=other)
    ApiToken.objects.filter(pk=kept.pk).update(
        created_at=timezone.now() - timedelta(days=3), expires_at=timezone.now() - timedelta(days=2)
    )

    new, _ = services.token_create(user=annotator_user)

    assert set(ApiToken.objects.values_list("pk", flat=True)) == {new.pk, kept.pk}


def test_token_lifetime_must_be_positive(settings, annotator_user):
    from annotator.exceptions import ProjectError

    settings.ALABEL_TOKEN_HOURS = 0
    with pytest.raises(ProjectError, match="ALABEL_TOKEN_HOURS"):
        services.token_create(user=annotator_user)
