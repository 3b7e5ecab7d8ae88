"""The API's token authentication (its own module: DRF imports it while loading `rest_framework.views`, so it must
not import views)."""

from __future__ import annotations

from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from .. import selectors

OBTAIN_HINT = "obtain a new one with POST /api/v1/auth/token/"


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's `Token <key>` header, checked against ApiToken digests: an unknown, revoked or expired key is a 401 that
    says which (an anonymous request is a 401 with `WWW-Authenticate: Token` too, this class being listed first)."""

    def authenticate_credentials(self, key: str) -> tuple:
        token = selectors.token_for_key(key=key)
        if token is None:
            raise AuthenticationFailed(f"invalid or revoked token: {OBTAIN_HINT}")
        if token.expires_at <= timezone.now():
            raise AuthenticationFailed(f"token expired at {token.expires_at.isoformat()}: {OBTAIN_HINT}")
        if not token.user.is_active:
            raise AuthenticationFailed("the token's user is inactive")
        return token.user, token
