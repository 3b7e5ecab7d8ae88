"""The input rules shared by serializers, forms, import parsing and services (annotator/validation.py)."""

from __future__ import annotations

import pytest

from annotator.validation import INT_MAX, json_text_problem, spreadsheet_safe, whole_number


@pytest.mark.parametrize(
    "value,expected",
    [
        *[("0", 0), ("42", 42), (7, 7), (str(INT_MAX), INT_MAX), (str(INT_MAX + 1), None), ("²", None), ("١", None)],
        *[("-1", None), (-1, None), (True, None), (" 1", None), ("1" * 5000, None), ("", None), (None, None)],
    ],
)
def test_whole_number_takes_ascii_digits_within_the_column(value, expected):
    assert whole_number(value) == expected


@pytest.mark.parametrize(
    "cell,written",
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_cells_a_spreadsheet_would_run_are_written_as_text(cell, written):
    assert spreadsheet_safe(cell) == written


def test_json_text_problem_looks_into_keys_and_nested_values():
    assert json_text_problem({"a": [1, {"b": "ok"}], "c": None}) is None
    assert "NUL" in json_text_problem({"a": [1, {"b\x00": 2}]})
    assert "surrogate" in json_text_problem(["fine", ["\udfff"]])
