from __future__ import annotations

import pytest

from annotator.exceptions import ProjectError
from annotator.importing import parse_csv, parse_file, parse_jsonl, parse_records


def test_jsonl_parses_labels_and_keeps_none_apply_distinct_from_unlabelled():
    data = (
        b'{"id": "a", "text": "hello", "labels": ["joy"]}\n'
        b'{"id": "b", "text": "x", "labels": []}\n'
        b'{"id": 3, "text": "y"}\n'
    )
    records, errors = parse_jsonl(data)
    assert errors == []
    assert [(r.external_id, r.labels) for r in records] == [("a", ["joy"]), ("b", []), ("3", None)]


def test_jsonl_names_every_bad_line():
    data = (
        b'{"id": "a", "text": "ok"}\nnot json\n{"id": "c", "text": ""}\n'
        b'{"text": "no id"}\n{"id": "e", "text": "t", "labels": "joy"}\n'
    )
    records, errors = parse_jsonl(data)
    assert [r.external_id for r in records] == ["a"]
    assert [e.split(":")[0] for e in errors] == ["line 2", "line 3", "line 4", "line 5"]
    assert "not valid JSON" in errors[0]
    assert '"text" is empty' in errors[1]


def test_csv_with_header_and_pipe_separated_labels():
    data = b'id,text,labels\nd1,"Hello, world",joy|anger\nd2,second line,\n'
    records, errors = parse_csv(data)
    assert errors == []
    assert [(r.external_id, r.text, r.labels) for r in records] == [
        ("d1", "Hello, world", ["joy", "anger"]),
        ("d2", "second line", None),
    ]


def test_csv_reports_wrong_column_count_with_line_number():
    records, errors = parse_csv(b"d1,text\nd2\n")
    assert [r.external_id for r in records] == ["d1"]
    assert errors == ["line 2: expected 2 or 3 columns (id,text[,labels]), got 1"]


def test_utf8_bom_is_accepted_and_invalid_utf8_is_a_clear_error():
    records, _ = parse_jsonl('\ufeff{"id": "ü", "text": "Künstliche Intelligenz"}\n'.encode())
    assert records[0].text == "Künstliche Intelligenz"
    with pytest.raises(ProjectError, match="not valid UTF-8"):
        parse_jsonl(b'{"id": "a", "text": "\xff"}')


def test_json_body_must_be_a_list_and_items_are_numbered():
    with pytest.raises(ProjectError, match="JSON list"):
        parse_records({"id": "a"})
    _, errors = parse_records([{"id": "a", "text": "ok"}, {"id": "b"}])
    assert errors == ['item 2: "text" must be a string']


def test_unknown_file_type_is_refused():
    with pytest.raises(ProjectError, match="unsupported file type"):
        parse_file("data.xlsx", b"")


def test_csv_with_an_unterminated_quote_names_the_line_instead_of_merging_the_rest():
    """Issue 16: `c2,"unterminated` swallowed every later line into one text and was imported silently."""
    records, errors = parse_csv(b'id,text\nc1,hi\nc2,"unterminated\nc3,bye\n')
    assert errors == ['line 3: a quoted field (") opened on this line is never closed']
    assert [r.external_id for r in records] == ["c1"]


@pytest.mark.parametrize(
    "item,problem",
    [
        ({"id": "a", "text": "nul \x00 inside"}, '"text" contains a NUL character'),
        ({"id": "a\x00", "text": "fine"}, '"id" contains a NUL character'),
        ({"id": "a", "text": "fine", "metadata": {"k": "v\x00"}}, '"metadata" contains a NUL character'),
        ({"id": "a", "text": "fine", "metadata": {"k\x00": 1}}, '"metadata" contains a NUL character'),
        ({"id": "a", "text": "fine", "labels": ["jo\x00y"]}, '"labels" contains a NUL character'),
        ({"id": "a", "text": "lone \ud800 surrogate"}, '"text" contains an unpaired surrogate'),
    ],
)
def test_text_a_database_cannot_store_is_named(item, problem):
    records, errors = parse_records([item])
    assert records == [] and len(errors) == 1
    assert errors[0].startswith(f"item 1: {problem}")


def test_a_nul_in_a_csv_cell_is_named():
    records, errors = parse_csv(b"id,text\nc1,bad\x00cell\n")
    assert records == [] and errors == ['line 2: "text" contains a NUL character (\\u0000)']


def test_jsonl_refuses_nan_which_json_columns_cannot_store():
    records, errors = parse_jsonl(b'{"id": "a", "text": "t", "metadata": {"x": NaN}}\n')
    assert records == [] and errors == ["line 1: not valid JSON (NaN is not a JSON number)"]


def test_a_document_longer_than_the_limit_is_named(settings):
    settings.ALABEL_MAX_DOCUMENT_CHARS = 10
    records, errors = parse_records([{"id": "a", "text": "x" * 10}, {"id": "b", "text": "x" * 11}])
    assert [r.external_id for r in records] == ["a"]
    assert errors == ['item 2: "text" is 11 characters long; the limit is 10']
