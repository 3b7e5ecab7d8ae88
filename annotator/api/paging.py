"""Paging and filters of the list endpoints that answer a JSON array (docs/api.md, "Paging").

The body stays the array; `?limit=` (1-1000, default 100) and `?offset=` (0 or more) pick the page, the headers
`X-Total-Count` (how many match) and `Link` (RFC 8288: rel="next" / rel="prev", absolute URLs) describe it. A bad
value is a 400 naming the parameter. Endpoints that page by keyset (`after=`/`next`) keep their own paging."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from ..exceptions import ProjectError
from ..validation import INT_MAX, whole_number

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
TRUE, FALSE = {"1", "true", "yes"}, {"0", "false", "no"}


def page_parameters(*, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> list[OpenApiParameter]:
    """The OpenAPI description of `limit`, `offset` and the two response headers, for `extend_schema(parameters=)`."""
    return [
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": maximum},
            description=f"items per page, 1-{maximum} (default {default})",
        ),
        OpenApiParameter(
            "offset", {"type": "integer", "minimum": 0, "maximum": INT_MAX}, description="items to skip (default 0)"
        ),
        OpenApiParameter(
            "X-Total-Count",
            int,
            location=OpenApiParameter.HEADER,
            response=[200],
            description="how many items match the request, over all pages",
        ),
        OpenApiParameter(
            "Link",
            str,
            location=OpenApiParameter.HEADER,
            response=[200],
            description='RFC 8288: `<url>; rel="next"` when there is a next page, `<url>; rel="prev"` after the first',
        ),
    ]


PAGE_PARAMETERS = page_parameters()


def page_bounds(request: Request, *, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> tuple[int, int]:
    """`(limit, offset)` from the query string; a 400 naming the parameter when one is not a whole number in range."""
    limit = whole_number(request.query_params.get("limit") or default, maximum=maximum)  # `?limit=`: the default
    if limit is None or limit < 1:
        raise ProjectError(f"limit must be an integer from 1 to {maximum}")
    offset = whole_number(request.query_params.get("offset") or 0, maximum=INT_MAX)
    if offset is None:
        raise ProjectError(f"offset must be an integer from 0 to {INT_MAX}")
    return limit, offset


def _page_url(request: Request, *, limit: int, offset: int) -> str:
    query = request.query_params.copy()
    query["limit"] = str(limit)
    query["offset"] = str(offset)
    return request.build_absolute_uri(request.path) + "?" + query.urlencode()


def page_headers(request: Request, *, total: int | None, limit: int, offset: int, more: bool = False) -> dict[str, str]:
    """`X-Total-Count` and, when there is another page, `Link` with rel="next" and rel="prev". `total` None: not
    known (a search that ranked only as far as this page), `more` says whether a next page may follow."""
    headers = {} if total is None else {"X-Total-Count": str(total)}
    links = []
    if (offset + limit < total) if total is not None else more:
        links.append(f'<{_page_url(request, limit=limit, offset=offset + limit)}>; rel="next"')
    if offset > 0:
        last = offset if total is None else min(offset, total)
        links.append(f'<{_page_url(request, limit=limit, offset=max(0, last - limit))}>; rel="prev"')
    if links:
        headers["Link"] = ", ".join(links)
    return headers


def paged(
    request: Request,
    rows: QuerySet | Sequence,
    render: Callable[[list], Any] = list,
    *,
    default: int = DEFAULT_LIMIT,
    maximum: int = MAX_LIMIT,
) -> Response:
    """The page of `rows` (a queryset: a COUNT and a sliced query; a list: sliced) the request asks for, rendered by
    `render` (a list of items in, the JSON array out), with the paging headers."""
    limit, offset = page_bounds(request, default=default, maximum=maximum)
    total = rows.count() if isinstance(rows, QuerySet) else len(rows)
    page = list(rows[offset : offset + limit]) if offset < total else []
    return Response(render(page), headers=page_headers(request, total=total, limit=limit, offset=offset))


def bool_filter(request: Request, name: str) -> bool | None:
    """`?name=1/0` (also true/false, yes/no) as a bool, None when absent; a 400 naming it otherwise."""
    raw = request.query_params.get(name, "").lower()
    if raw == "":
        return None
    if raw not in TRUE | FALSE:
        raise ProjectError(f"{name} must be 1 or 0")
    return raw in TRUE


def choice_filter(request: Request, name: str, choices: Sequence[str]) -> str | None:
    """`?name=` as one of `choices`, None when absent; a 400 naming it and the choices otherwise."""
    raw = request.query_params.get(name, "")
    if raw == "":
        return None
    if raw not in choices:
        raise ProjectError(f"{name} must be one of {', '.join(choices)}")
    return raw


def bool_parameter(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, str, enum=["1", "0", "true", "false", "yes", "no"], description=description)
