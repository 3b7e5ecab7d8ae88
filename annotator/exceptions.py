"""The one exception type services raise. The API turns it into a 4xx with its message, never a 500."""

from __future__ import annotations


class ProjectError(Exception):
    """A request that breaks a rule of the platform. `status` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str, *, errors: list[str] | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []
        if status is not None:
            self.status = status


class NotFound(ProjectError):
    status = 404


class PermissionDenied(ProjectError):
    status = 403
