"""Reads about API tokens: the token a key names, and a user's tokens."""

from __future__ import annotations

import hashlib

from django.db.models import QuerySet

from ..models import ApiToken


def token_digest(key: str) -> str:
    """The SHA-256 of a token key, hex: what is stored and looked up instead of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def token_for_key(*, key: str) -> ApiToken | None:
    """The token with this key (expired or not), with its user; None when no token has it."""
    return ApiToken.objects.select_related("user").filter(digest=token_digest(key)).first()


def tokens_for_user(*, user) -> QuerySet[ApiToken]:
    """The user's tokens, newest first."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-pk")
