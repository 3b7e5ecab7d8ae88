"""Hooks of the login lockout (django-axes, configured in webapp/settings.py): the client's address and the answer
to a locked-out login, on the login form and on POST /api/v1/auth/token/ alike."""

from __future__ import annotations

import math

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.throttling import BaseThrottle

from .api.errors import problem_response


def client_ip(request: HttpRequest) -> str:
    """The address lockouts count by: the same rule as the API throttles (REMOTE_ADDR, or behind
    DJANGO_NUM_PROXIES reverse proxies the address the nearest of them put into X-Forwarded-For)."""
    return BaseThrottle().get_ident(request)


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """429 with Retry-After: problem details (`detail`, `retry_after`) on the API, the login form in the browser."""
    seconds = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds())
    minutes = max(1, math.ceil(seconds / 60))
    message = f"Too many failed logins: this account is locked here for {minutes} minutes. Try again later."
    if request.path.startswith("/api/"):
        response: HttpResponse = problem_response(request, 429, message, retry_after=seconds)
    else:
        next_url = request.POST.get("next", "") if request.method == "POST" else ""
        response = render(request, "annotator/login.html", {"locked": message, "next": next_url}, status=429)
    response["Retry-After"] = str(seconds)
    return response
