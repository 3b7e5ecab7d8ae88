"""Input rules shared by the API's serializers, the pages' forms, import parsing and the services: text every
supported database can store, integers its columns hold, and CSV cells a spreadsheet will not run."""

from __future__ import annotations

import re
from typing import Any

# The largest value of a PositiveIntegerField column on PostgreSQL (`integer`); SQLite would store more, so an
# unchecked larger value passes one backend and fails the other with a 500.
INT_MAX = 2_147_483_647
ID_MAX = 9_223_372_036_854_775_807  # primary keys are BigAutoFields

_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Cells a spreadsheet reads as a formula (OWASP "CSV injection"): they are written with a leading single quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ColumnBoundedMixin:
    """For a form or serializer integer field: `max_value` defaults to INT_MAX, so a number larger than its integer
    column holds is an error naming the field on every database, never a 500 from PostgreSQL."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_value", INT_MAX)
        super().__init__(**kwargs)


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None. PostgreSQL refuses NUL characters in text and JSON, and a lone
    surrogate (half of a UTF-16 pair, which JSON can spell as "\\ud800") cannot be encoded as UTF-8."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    if _SURROGATE.search(value):
        return "contains an unpaired surrogate (\\ud800-\\udfff), which is not valid Unicode"
    return None


def json_text_problem(value: Any) -> str | None:
    """`text_problem` of the first bad string (keys included) anywhere inside a JSON value, or None."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        problem = json_text_problem(item)
        if problem:
            return problem
    return None


def whole_number(value: object, *, maximum: int = INT_MAX) -> int | None:
    """`value` (an int, or a string of ASCII digits) as an int from 0 to `maximum`, or None when it is not one.
    str.isdigit() alone is not enough: "²" passes it and int() refuses it; so does a 5,000-digit string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= maximum else None
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)):
        return None
    number = int(text)
    return number if number <= maximum else None


def spreadsheet_safe(cell: str) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with =, +, -, @, tab or CR gets a leading single quote."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell
