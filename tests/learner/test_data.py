from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from learner.data import multi_hot, read_jsonl

RECORDS = [
    {"id": "a1", "text": "I love it", "labels": ["joy"]},
    {"id": 2, "text": "Leave me alone", "labels": ["anger", "sadness"]},
    {"id": "c3", "text": "The bus is at nine"},
]


def write_lines(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.jsonl.gz"])
def test_read_jsonl_reads_plain_and_gzip_files(tmp_path: Path, name: str) -> None:
    path = write_lines(tmp_path / name, [json.dumps(r) for r in RECORDS[:2]] + ["", json.dumps(RECORDS[2])])

    assert read_jsonl(path) == RECORDS


def test_read_jsonl_reads_the_goemotions_sample_format(tmp_path: Path) -> None:
    line = '{"id": "eebbqej", "text": "My favourite food is anything I didn\'t cook.", "labels": ["neutral"]}'
    path = write_lines(tmp_path / "train.jsonl.gz", [line])

    assert read_jsonl(path)[0]["labels"] == ["neutral"]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "line 3: invalid JSON"),
        ('["a", "list"]', "line 3: expected a JSON object"),
        ('{"text": "no id"}', 'line 3: missing "id"'),
        ('{"id": 1}', 'line 3: "text" must be a non-empty string'),
        ('{"id": 1, "text": "  "}', 'line 3: "text" must be a non-empty string'),
        ('{"id": 1, "text": 5}', 'line 3: "text" must be a non-empty string'),
        ('{"id": 1, "text": "x", "labels": "joy"}', 'line 3: "labels" must be a list of strings'),
    ],
)
def test_a_bad_line_is_reported_with_its_line_number(tmp_path: Path, bad_line: str, message: str) -> None:
    path = write_lines(tmp_path / "docs.jsonl.gz", [json.dumps(RECORDS[0]), json.dumps(RECORDS[1]), bad_line])

    with pytest.raises(ValueError, match=message):
        read_jsonl(path)


def test_invalid_utf8_is_reported_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(json.dumps(RECORDS[0]).encode() + b'\n{"id": 1, "text": "\xff"}\n')

    with pytest.raises(ValueError, match="line 2: not valid UTF-8"):
        read_jsonl(path)


def test_multi_hot_builds_a_sparse_matrix_in_vocabulary_order() -> None:
    Y = multi_hot([["joy"], ["sadness", "anger", "anger"], []], ["anger", "joy", "sadness"])

    assert sp.issparse(Y) and Y.format == "csr"
    assert Y.shape == (3, 3)
    np.testing.assert_array_equal(Y.toarray(), [[0, 1, 0], [1, 0, 1], [0, 0, 0]])


def test_multi_hot_rejects_unknown_labels_and_duplicate_vocabulary() -> None:
    with pytest.raises(ValueError, match="unknown label 'fear' in document 1"):
        multi_hot([["joy"], ["fear"]], ["joy"])
    with pytest.raises(ValueError, match=r"duplicate labels in the vocabulary: \['joy'\]"):
        multi_hot([["joy"]], ["joy", "anger", "joy"])
    with pytest.raises(ValueError, match="is a string"):
        multi_hot(["joy"], ["joy"])


def test_multi_hot_of_no_documents() -> None:
    assert multi_hot([], ["joy", "anger"]).shape == (0, 2)
