"""Parsing of import files (JSONL and CSV) into records, with every bad line named. No database access."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

from .exceptions import ProjectError
from .validation import json_text_problem, text_problem

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

MAX_ID_LENGTH = 255
LABEL_SEPARATOR = "|"


@dataclass
class ImportRecord:
    line: int
    external_id: str
    text: str
    labels: list[str] | None  # None: unlabelled; []: labelled "none apply"
    metadata: dict[str, Any] = field(default_factory=dict)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProjectError(f"the file is not valid UTF-8 (byte {exc.start}); save it as UTF-8 and retry") from exc


def validate_record(raw: Any, line: int, where: str = "line") -> tuple[ImportRecord | None, list[str]]:
    """Checks one raw record (a dict from JSON or CSV); returns it or the messages naming what is wrong."""
    errors: list[str] = []
    prefix = f"{where} {line}"
    if not isinstance(raw, dict):
        return None, [f'{prefix}: expected an object with "id" and "text", got {type(raw).__name__}']
    unknown = sorted(set(raw) - {"id", "text", "labels", "metadata"})
    if unknown:
        errors.append(f"{prefix}: unknown field(s) {', '.join(unknown)}")
    ext_id = raw.get("id")
    if isinstance(ext_id, bool) or not isinstance(ext_id, str | int):
        errors.append(f'{prefix}: "id" must be a non-empty string')
        ext_id = None
    else:
        ext_id = str(ext_id).strip()
        if not ext_id:
            errors.append(f'{prefix}: "id" is empty')
        elif len(ext_id) > MAX_ID_LENGTH:
            errors.append(f'{prefix}: "id" is longer than {MAX_ID_LENGTH} characters')
        elif problem := text_problem(ext_id):
            errors.append(f'{prefix}: "id" {problem}')
    text = raw.get("text")
    max_chars = settings.ALABEL_MAX_DOCUMENT_CHARS
    if not isinstance(text, str):
        errors.append(f'{prefix}: "text" must be a string')
    elif not text.strip():
        errors.append(f'{prefix}: "text" is empty')
    elif len(text) > max_chars:
        errors.append(f'{prefix}: "text" is {len(text):,} characters long; the limit is {max_chars:,}')
    elif problem := text_problem(text):
        errors.append(f'{prefix}: "text" {problem}')
    labels = raw.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
            errors.append(f'{prefix}: "labels" must be a list of label names')
            labels = None
        elif problem := json_text_problem(labels):
            errors.append(f'{prefix}: "labels" {problem}')
            labels = None
        else:
            labels = list(dict.fromkeys(name.strip() for name in labels if name.strip()))
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        errors.append(f'{prefix}: "metadata" must be an object')
        metadata = {}
    elif problem := json_text_problem(metadata):
        errors.append(f'{prefix}: "metadata" {problem}')
    if errors:
        return None, errors
    return ImportRecord(line=line, external_id=ext_id, text=text, labels=labels, metadata=metadata), []


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_jsonl(data: bytes) -> tuple[list[ImportRecord], list[str]]:
    records: list[ImportRecord] = []
    errors: list[str] = []
    for number, line in enumerate(_decode(data).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except (ValueError, RecursionError) as exc:  # NaN / Infinity, an integer of over 4,300 digits, deep nesting
            errors.append(f"line {number}: not valid JSON ({exc})")
            continue
        record, problems = validate_record(raw, number)
        errors.extend(problems)
        if record is not None:
            records.append(record)
    return records, errors


def parse_csv(data: bytes) -> tuple[list[ImportRecord], list[str]]:
    """CSV rows `id,text[,labels]`, labels separated by `|`; a header row `id,text[,labels]` is skipped.

    An empty labels cell means the document is unlabelled (use JSONL `"labels": []` for "none apply").
    """
    records: list[ImportRecord] = []
    errors: list[str] = []
    # strict: a quoted field left open to the end of the file is an error, not every later line merged into it.
    reader = csv.reader(io.StringIO(_decode(data), newline=""), strict=True)
    started = 1  # the line the next row starts on (a quoted field may span lines)
    try:
        for index, row in enumerate(reader):
            number, started = started, reader.line_num + 1
            if index == 0 and [cell.strip().lower() for cell in row] in (
                ["id", "text"],
                ["id", "text", "labels"],
            ):
                continue
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) not in (2, 3):
                errors.append(f"line {number}: expected 2 or 3 columns (id,text[,labels]), got {len(row)}")
                continue
            raw: dict[str, Any] = {"id": row[0], "text": row[1]}
            if len(row) == 3 and row[2].strip():
                raw["labels"] = row[2].split(LABEL_SEPARATOR)
            record, problems = validate_record(raw, number)
            errors.extend(problems)
            if record is not None:
                records.append(record)
    except csv.Error as exc:
        if "end of data" in str(exc):  # the file ended inside a quoted field
            errors.append(f'line {started}: a quoted field (") opened on this line is never closed')
        else:
            errors.append(f"line {reader.line_num}: not valid CSV ({exc})")
    return records, errors


def parse_records(items: Any) -> tuple[list[ImportRecord], list[str]]:
    """A JSON body: a list of objects. Items are numbered from 1 and named "item N" in messages."""
    if not isinstance(items, list):
        raise ProjectError('expected a JSON list of {"id", "text", "labels"?} objects or an uploaded file')
    records: list[ImportRecord] = []
    errors: list[str] = []
    for number, raw in enumerate(items, start=1):
        record, problems = validate_record(raw, number, where="item")
        errors.extend(problems)
        if record is not None:
            records.append(record)
    return records, errors


def parse_file(name: str, data: bytes) -> tuple[list[ImportRecord], list[str]]:
    lowered = name.lower()
    if lowered.endswith((".jsonl", ".json", ".ndjson")):
        return parse_jsonl(data)
    if lowered.endswith(".csv"):
        return parse_csv(data)
    raise ProjectError(f"unsupported file type {name!r}: upload a .jsonl or .csv file")


def parse_upload(upload: UploadedFile) -> tuple[list[ImportRecord], list[str]]:
    """An uploaded file, refused (413) above settings.ALABEL_MAX_IMPORT_BYTES before it is read."""
    limit = settings.ALABEL_MAX_IMPORT_BYTES
    if upload.size > limit:
        raise ProjectError(f"the file is {upload.size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB", status=413)
    return parse_file(upload.name, upload.read())
