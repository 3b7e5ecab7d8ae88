"""API tokens: obtaining one with a username and password (throttled, and locked out by django-axes together with
the login form), listing and revoking your own. Checking them: authentication.py."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from .. import selectors, services
from ..exceptions import ProjectError
from ..models import ApiToken
from .paging import PAGE_PARAMETERS, paged
from .views import _valid


class TokenObtainSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, help_text="What it is for.")


class TokenSerializer(serializers.ModelSerializer):
    expired = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "expires_at", "expired"]

    def get_expired(self, token: ApiToken) -> bool:
        return token.expires_at <= timezone.now()


class NewTokenSerializer(TokenSerializer):
    token = serializers.CharField(help_text="The key: send it as `Authorization: Token <key>`. Shown only now.")

    class Meta(TokenSerializer.Meta):
        fields = ["token", *TokenSerializer.Meta.fields]


class TokenObtainView(APIView):
    """The credentials are in the body: no authentication, a scoped throttle per client address ("auth")."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(
        request=TokenObtainSerializer,
        responses={200: NewTokenSerializer},
        summary="Obtain a token that expires after ALABEL_TOKEN_HOURS (429 after too many attempts)",
    )
    def post(self, request: Request) -> Response:
        data = _valid(TokenObtainSerializer, request.data)
        # The Django request, so that django-axes counts the failure and its middleware answers a lockout.
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            raise ProjectError("unable to log in with the username and password given")
        token, key = services.token_create(user=user, name=data.get("name", ""))
        return Response({"token": key, **TokenSerializer(token).data}, status=status.HTTP_200_OK)


class TokenListView(APIView):
    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses=TokenSerializer(many=True),
        summary="Your tokens (never their keys), newest first",
    )
    def get(self, request: Request) -> Response:
        tokens = selectors.tokens_for_user(user=request.user)
        return paged(request, tokens, lambda page: TokenSerializer(page, many=True).data)


class TokenDetailView(APIView):
    @extend_schema(request=None, responses={204: None}, summary="Revoke one of your tokens")
    def delete(self, request: Request, token_id: int) -> Response:
        services.token_revoke(user=request.user, token_id=token_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
