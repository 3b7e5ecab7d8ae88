"""A typed client for the alabel platform's REST API (/api/v1/) and the `alabel` command line."""

from __future__ import annotations

__version__ = "0.1.0"

from .client import Client
from .errors import (
    AlabelError,
    ApiError,
    AuthenticationError,
    ClientError,
    Conflict,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    ValidationError,
)

__all__ = [
    "AlabelError",
    "ApiError",
    "AuthenticationError",
    "Client",
    "ClientError",
    "Conflict",
    "JobFailed",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "ValidationError",
    "__version__",
]
