"""The OpenAPI schema's shared pieces: the `Problem` component (RFC 9457, annotator/api/errors.py) described as the
answer of every operation's errors, by the schema class REST_FRAMEWORK names (DEFAULT_SCHEMA_CLASS)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from .errors import PROBLEM_MEDIA_TYPE


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details (the schema of every error answer)."""

    type = serializers.CharField(help_text='Always "about:blank": `status` and `title` say what happened.')
    title = serializers.CharField(help_text="The HTTP reason phrase, e.g. Bad Request.")
    status = serializers.IntegerField(help_text="The HTTP status code.")
    detail = serializers.CharField(help_text="What went wrong, in one sentence.")
    errors = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text='Each problem of the request ("field: message", "line 3: ..."), when it had a list of them.',
    )
    retry_after = serializers.IntegerField(required=False, help_text="429: seconds to wait (also `Retry-After`).")


ERROR_RESPONSES = {
    "400": "Invalid input: `detail` says what, `errors` lists each problem",
    "401": "Not logged in, or a bad, revoked or expired token (`WWW-Authenticate: Token`)",
    "403": "Not allowed for your role",
    "404": "Unknown project (or not a member), or an unknown object in it",
    "405": "Method not allowed",
    "409": "Conflicts with the current state",
    "413": "The request body is too large",
    "415": "Unsupported media type",
    "429": "Too many requests (`Retry-After`)",
}


class ProblemAutoSchema(AutoSchema):
    """drf-spectacular's schema, with the error answers of every operation described as a shared `Problem`."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, description in ERROR_RESPONSES.items():
            if code not in responses:
                response = self._get_response_for_code(ProblemSerializer, code, [PROBLEM_MEDIA_TYPE], direction)
                response["description"] = description
                responses[code] = response
        return responses
