"""One exception hierarchy: `ApiError` for every 4xx/5xx answer (a subclass per status), `JobFailed` for a job that
ended FAILED or CANCELLED, `ClientError` for what the client itself refuses (a missing optional dependency, a file
it cannot read)."""

from __future__ import annotations

from typing import Any

import requests

__all__ = [
    "AlabelError",
    "ApiError",
    "AuthenticationError",
    "ClientError",
    "Conflict",
    "JobFailed",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "ValidationError",
    "error_for",
]


class AlabelError(Exception):
    """Every error this package raises."""


class ClientError(AlabelError):
    """Refused by the client before anything was sent (a missing optional dependency, an unreadable file)."""


class ApiError(AlabelError):
    """The server answered with a 4xx or 5xx status. `detail` is the server's one-sentence reason (the message),
    `errors` every problem it named (one per bad field, line or item), `body` the parsed body (or its text)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[str] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors: list[str] = list(errors or [])
        self.body = body

    def __str__(self) -> str:
        return self.detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, detail={self.detail!r})"


class ValidationError(ApiError):
    """400: the request was invalid; nothing of it was applied."""


class AuthenticationError(ApiError):
    """401: not logged in, or the token is unknown, expired or revoked."""


class PermissionDenied(ApiError):
    """403: your role in the project does not allow this."""


class NotFound(ApiError):
    """404: no such object, or you are not a member of its project."""


class Conflict(ApiError):
    """409: refused because of the current state (someone else holds the document, the last manager, ...)."""


class PayloadTooLarge(ApiError):
    """413: the upload or body is above the server's limit."""


class RateLimited(ApiError):
    """429: too many requests; `retry_after` is the seconds to wait (None when the server did not say)."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: the server failed; the request may be retried."""


class JobFailed(AlabelError):
    """A job ended FAILED or CANCELLED; `job` is its last state (with `status`, `error`, `message`)."""

    def __init__(self, job: dict[str, Any]) -> None:
        reason = job.get("error") or job.get("message") or ""
        text = f"job {job.get('id')} ({job.get('kind')}) ended {job.get('status')}"
        super().__init__(f"{text}: {reason}" if reason else text)
        self.job = job


_BY_STATUS: dict[int, type[ApiError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(_text(item) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_text(item)}" for key, item in value.items())
    return "" if value is None else str(value)


def _retry_after(response: requests.Response, body: Any) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None and isinstance(body, dict):
        raw = body.get("retry_after")
    try:
        return None if raw is None else float(raw)
    except (TypeError, ValueError):
        return None


def error_for(response: requests.Response) -> ApiError:
    """The exception for an error answer: problem+json or plain JSON (`detail`, `errors`, `title`), else the text."""
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = response.text
    reason = response.reason or ""
    if isinstance(body, dict):
        title = _text(body.get("title")) or reason
        errors_raw = body.get("errors")
        errors = [_text(item) for item in errors_raw] if isinstance(errors_raw, list) else []
        detail = _text(body.get("detail")) or (errors[0] if errors else "") or title
        if not body.get("detail") and "detail" not in body and not errors:
            detail = _text(body) or title  # DRF field errors: {"field": ["message"]}
    else:
        title = reason
        errors = []
        text = str(body).strip()
        detail = text if text and len(text) < 300 and "<" not in text else f"{response.status_code} {reason}".strip()
    status = response.status_code
    kwargs: dict[str, Any] = {"errors": errors, "body": body}
    if status == 429:
        return RateLimited(status, title, detail, retry_after=_retry_after(response, body), **kwargs)
    if status >= 500:
        return ServerError(status, title, detail, **kwargs)
    return _BY_STATUS.get(status, ApiError)(status, title, detail, **kwargs)
