"""Every error the API answers, in one shape: RFC 9457 problem details (`application/problem+json`).

`{"type": "about:blank", "title": <the HTTP reason phrase>, "status": <the code>, "detail": <one sentence>,
"errors": [<"field: message">, ...]}`: `errors` only when the request had a list of problems (one per field or
line). Platform errors (ProjectError), DRF's exceptions (validation, authentication with its `WWW-Authenticate`,
permission, not found, method, media type, parse, throttling with `Retry-After` and `retry_after`), a body over the
size limit (413), and Django's own 400, 403, 404 and 500 for paths under /api/ (handler400 ... handler500,
webapp/urls.py)."""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..exceptions import ProjectError

PROBLEM_MEDIA_TYPE = "application/problem+json"
API_PREFIX = "/api/"


def problem(status: int, detail: str, errors: list[str] | None = None, **extensions: Any) -> dict[str, Any]:
    """The problem details body."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    body.update(extensions)
    return body


def _flatten(detail: Any, prefix: str = "") -> list[str]:
    """DRF's error detail (a string, a list, a dict of them, nested) as "field: message" lines."""
    if isinstance(detail, dict):
        lines: list[str] = []
        for key, value in detail.items():
            name = str(key) if key != "non_field_errors" else ""
            lines += _flatten(value, f"{prefix}.{name}" if prefix and name else prefix or name)
        return lines
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            text = " ".join(str(item) for item in detail)
            return [f"{prefix}: {text}" if prefix else text] if text else []
        lines = []
        for index, item in enumerate(detail):
            lines += _flatten(item, f"{prefix}[{index}]" if prefix else f"item {index + 1}")
        return lines
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ProjectError):
        return Response(
            problem(exc.status, exc.message, exc.errors), status=exc.status, content_type=PROBLEM_MEDIA_TYPE
        )
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)
        body = problem(413, f"the request body is larger than the {limit} MB limit")
        return Response(body, status=413, content_type=PROBLEM_MEDIA_TYPE)
    response = drf_exception_handler(exc, context)  # sets WWW-Authenticate and Retry-After
    if response is None:  # not an API error: a 500, answered by handler500
        return None
    extensions: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail) or ["invalid request"]
        detail = errors[0] if len(errors) == 1 else "invalid request: " + "; ".join(errors)
        errors = errors if isinstance(exc.detail, dict) or len(errors) > 1 else []
    else:
        errors = []
        detail = " ".join(_flatten(exc.detail)) if isinstance(exc, exceptions.APIException) else str(exc)
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        extensions["retry_after"] = math.ceil(exc.wait)
    response.data = problem(response.status_code, detail, errors, **extensions)
    response.content_type = PROBLEM_MEDIA_TYPE
    return response


def problem_response(request: HttpRequest, status: int, detail: str, **extensions: Any) -> JsonResponse:
    """A problem details answer outside DRF (Django's 404 and 500, django-axes' lockout)."""
    return JsonResponse(problem(status, detail, **extensions), status=status, content_type=PROBLEM_MEDIA_TYPE)


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 (a request refused before any view, e.g. a form body over DATA_UPLOAD_MAX_MEMORY_SIZE read by a
    middleware): problem details under /api/ (413 for a body too large), the HTML page elsewhere."""
    if request.path.startswith(API_PREFIX):
        if isinstance(exception, RequestDataTooBig):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)
            return problem_response(request, 413, f"the request body is larger than the {limit} MB limit")
        return problem_response(request, 400, "the request could not be read")
    return defaults.bad_request(request, exception)


def handler403(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 403 outside DRF's views: problem details under /api/, the HTML page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return problem_response(request, 403, "you may not do this")
    return defaults.permission_denied(request, exception)


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 (a path no URL pattern matches): problem details under /api/, the HTML page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return problem_response(request, 404, f"no API endpoint at {request.path}; see docs/api.md or /api/schema/")
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    """Django's 500: problem details under /api/ (nothing of the error leaks), the HTML page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return problem_response(request, 500, "the server failed to answer this request; the error was logged")
    return defaults.server_error(request)
