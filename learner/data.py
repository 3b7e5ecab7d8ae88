"""Reading JSONL documents and turning label lists into a sparse multi-hot matrix."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["multi_hot", "read_jsonl"]

_GZIP_MAGIC = b"\x1f\x8b"


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read one JSON object per line from a plain or gzip-compressed file (detected by its magic bytes).

    Every object needs an ``"id"`` (not null) and a non-empty string ``"text"``; ``"labels"``, when
    present, must be a list of strings. Blank lines are skipped. Raises ``ValueError`` naming the file
    and the 1-based line number of the first bad line.
    """
    with open(path, "rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    opener = gzip.open if compressed else open
    records: list[dict[str, Any]] = []
    with opener(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}: line {lineno}: not valid UTF-8 ({exc.reason})") from exc
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path}: line {lineno}: expected a JSON object, got {type(record).__name__}")
            if record.get("id") is None:
                raise ValueError(f'{path}: line {lineno}: missing "id"')
            text = record.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f'{path}: line {lineno}: "text" must be a non-empty string')
            labels = record.get("labels")
            if labels is not None and (
                not isinstance(labels, list) or not all(isinstance(label, str) for label in labels)
            ):
                raise ValueError(f'{path}: line {lineno}: "labels" must be a list of strings')
            records.append(record)
    return records


def multi_hot(label_lists: Sequence[Sequence[str]], labels: Sequence[str]) -> sp.csr_matrix:
    """Build the (N, L) float32 CSR matrix with a 1 where document i carries label ``labels[j]``.

    A document with no labels gives an empty row; a label repeated in a document counts once.
    Raises ``ValueError`` on duplicate vocabulary entries or a label not in ``labels`` (naming both the
    label and the document index).
    """
    index = {label: j for j, label in enumerate(labels)}
    if len(index) != len(labels):
        duplicates = sorted(label for label, count in Counter(labels).items() if count > 1)
        raise ValueError(f"duplicate labels in the vocabulary: {duplicates[:5]}")
    indptr = [0]
    indices: list[int] = []
    for i, doc_labels in enumerate(label_lists):
        if isinstance(doc_labels, str):
            raise ValueError(f"label_lists[{i}] is a string; expected a list of label names")
        columns = set()
        for label in doc_labels:
            j = index.get(label)
            if j is None:
                raise ValueError(f"unknown label {label!r} in document {i}")
            columns.add(j)
        indices.extend(sorted(columns))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix(
        (data, np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
        shape=(len(indptr) - 1, len(labels)),
    )
