"""API tokens: issued with an expiry (ALABEL_TOKEN_HOURS), listed and revoked by their owner."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..exceptions import NotFound, ProjectError
from ..models import ApiToken
from ..selectors.tokens import token_digest

MAX_NAME_LENGTH = 100


@transaction.atomic
def token_create(*, user, name: str = "") -> tuple[ApiToken, str]:
    """Issues a token valid for ALABEL_TOKEN_HOURS and returns it with its key (shown once: only a digest is kept).

    The user's tokens that have expired are deleted on the way."""
    if len(name) > MAX_NAME_LENGTH:
        raise ProjectError(f"a token name has at most {MAX_NAME_LENGTH} characters")
    hours = float(settings.ALABEL_TOKEN_HOURS)
    if hours <= 0:
        raise ProjectError("ALABEL_TOKEN_HOURS must be positive")
    now = timezone.now()
    ApiToken.objects.filter(user=user, expires_at__lte=now).delete()
    key = secrets.token_hex(20)
    token = ApiToken.objects.create(
        user=user,
        digest=token_digest(key),
        prefix=key[:8],
        name=name,
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    return token, key


@transaction.atomic
def token_revoke(*, user, token_id: int) -> None:
    """Deletes one of the user's own tokens; a request made with it is refused from then on."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    if not deleted:
        raise NotFound(f"you have no token {token_id}")
