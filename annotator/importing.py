"""Parsing of import files (JSONL and CSV) into records, with every bad line named. No database access."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

from .exceptions import ProjectError
from .validation import json_text_problem, text_problem

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

MAX_ID_LENGTH = 255
# Fields of our own JSONL export that an import reads past (`labels`, what training read, is imported as the answer),
# so that an export imports back as it is.
EXPORT_ONLY_FIELDS = {"labels_from", "gold", "annotator", "annotated_at", "evaluation", "answers"}
LABEL_SEPARATOR = "|"
SCORE_SEPARATOR = ":"  # CSV `predictions` cells: `joy:0.91|anger:0.2`
MAX_SOURCE_LENGTH = 100  # PreAnnotation.source


@dataclass
class Prediction:
    """An external model's scores for one document (a pre-annotation): `source` None means the import's default
    source (the upload's `prediction_source`, else "import")."""

    source: str | None
    labels: dict[str, float]


@dataclass
class ImportRecord:
    line: int
    external_id: str
    text: str
    labels: list[str] | None  # None: unlabelled; []: labelled "none apply"
    metadata: dict[str, Any] = field(default_factory=dict)
    predictions: list[Prediction] = field(default_factory=list)  # pre-annotations, stored by the import


def import_notes(records: list[ImportRecord]) -> list[str]:
    """What an import read but did not keep, for the result message (never dropped silently). Pre-annotations are
    stored (the result's `preannotations`): nothing is left out today."""
    return []


def source_problem(source: Any) -> str | None:
    """Why `source` cannot name a pre-annotation source, or None."""
    if not isinstance(source, str) or not source.strip():
        return "a prediction source must be a non-empty string"
    if len(source.strip()) > MAX_SOURCE_LENGTH:
        return f"a prediction source is at most {MAX_SOURCE_LENGTH} characters"
    if problem := text_problem(source):
        return f"the prediction source {problem}"
    return None


def _score_problem(name: Any, score: Any) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return "a predicted label must be a non-empty name"
    if LABEL_SEPARATOR in name or len(name) > 255 or text_problem(name):
        return f"predicted label {name[:50]!r} must be at most 255 characters of text without {LABEL_SEPARATOR!r}"
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        return f"the score of {name[:50]!r} must be a number between 0 and 1"
    if not 0 <= score <= 1:
        return f"the score of {name[:50]!r} is {score}; scores must be between 0 and 1"
    return None


def _scores(value: Any, what: str) -> tuple[dict[str, float], list[str]]:
    """`{"joy": 0.91, ...}` checked: names stripped, every score a number in [0, 1]."""
    if not isinstance(value, dict):
        return {}, [f'{what} must be an object {{"label": score}}']
    scores: dict[str, float] = {}
    errors: list[str] = []
    for name, score in value.items():
        if score is None:  # a column table's struct of every label: a label this row did not score
            continue
        if problem := _score_problem(name, score):
            errors.append(f"{what}: {problem}")
        else:
            scores[name.strip()] = float(score)
    return scores, errors


def parse_predictions(value: Any, source: Any = None) -> tuple[list[Prediction], list[str]]:
    """Pre-annotations of one record: `{"joy": 0.91, "anger": 0.2}` (of `source`, else the import's default), or
    a list of `{"source": "bert-v3", "labels": {"joy": 0.91}}`, or (a CSV or table cell) `joy:0.91|anger:0.2` or
    either JSON shape as a string. Returns the predictions and the problems (each to be prefixed by the record)."""
    if value is None or value == "" or value == [] or value == {}:
        return [], []
    if source is not None and source != "":
        if problem := source_problem(source):
            return [], [problem]
        source = source.strip()
    else:
        source = None
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "["):
            try:
                value = json.loads(text, parse_constant=_refuse_constant)
            except (ValueError, RecursionError) as exc:
                return [], [f"predictions are not valid JSON ({exc})"]
        else:
            pairs: dict[str, Any] = {}
            for part in text.split(LABEL_SEPARATOR):
                name, separator, score = part.rpartition(SCORE_SEPARATOR)
                if not separator or not name.strip():
                    return [], [f"predictions must be label:score pairs separated by {LABEL_SEPARATOR!r}, got {part!r}"]
                try:
                    pairs[name.strip()] = float(score)
                except ValueError:
                    return [], [f"the score of {name.strip()[:50]!r} must be a number between 0 and 1, got {score!r}"]
            value = pairs
    if isinstance(value, dict):
        scores, errors = _scores(value, "predictions")
        return ([Prediction(source, scores)] if scores and not errors else []), errors
    if not isinstance(value, list | tuple):
        return [], ['predictions must be {"label": score} or a list of {"source", "labels"}']
    found: list[Prediction] = []
    errors = []
    for number, item in enumerate(value, start=1):
        what = f"prediction {number}"
        if not isinstance(item, dict) or set(item) - {"source", "labels"} or "labels" not in item:
            errors.append(f'{what} must be an object {{"source", "labels": {{"label": score}}}}')
            continue
        named = item.get("source")
        if named is not None and (problem := source_problem(named)):
            errors.append(f"{what}: {problem}")
            continue
        scores, problems = _scores(item["labels"], f"{what} labels")
        errors.extend(problems)
        if scores and not problems:
            found.append(Prediction(named.strip() if named is not None else source, scores))
    return (found if not errors else []), errors


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
    known = {"id", "text", "labels", "metadata", "predictions", "prediction_source"}
    unknown = sorted(set(raw) - known - EXPORT_ONLY_FIELDS)
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
    predictions, problems = parse_predictions(raw.get("predictions"), raw.get("prediction_source"))
    errors.extend(f"{prefix}: {problem}" for problem in problems)
    if errors:
        return None, errors
    record = ImportRecord(line=line, external_id=ext_id, text=text, labels=labels, metadata=metadata)
    record.predictions = predictions
    return record, []


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


decode_text = _decode  # for annotator.formats
refuse_constant = _refuse_constant


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
    """By extension: .jsonl / .ndjson; .json (Label Studio tasks when its top level is a list of objects with
    "data", else JSON lines); .csv (a header `id,text` followed by columns other than `labels`: multi-hot label
    columns); .parquet (annotator.formats)."""
    from . import formats

    lowered = name.lower()
    if lowered.endswith(".json") and (tasks := formats.label_studio_tasks(data)) is not None:
        return formats.parse_label_studio_tasks(tasks)
    if lowered.endswith((".jsonl", ".json", ".ndjson")):
        return parse_jsonl(data)
    if lowered.endswith(".csv"):
        if _multi_hot_header(data):
            return formats.parse_csv_table(data, multi_hot=True)
        return parse_csv(data)
    if lowered.endswith(".parquet"):
        return formats.parse_parquet(data, multi_hot=True)  # 0/1 columns are labels when there is no "labels"
    raise ProjectError(f"unsupported file type {name!r}: upload a .jsonl, .json (Label Studio), .csv or .parquet file")


def _multi_hot_header(data: bytes) -> bool:
    """Whether a CSV starts with a header row `id,text,...` naming columns beyond `labels` (multi-hot labels, or our
    own CSV export)."""
    first = data[:65536].removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].decode("utf-8", "replace")
    try:
        header = [cell.strip().lower() for cell in next(csv.reader([first]))]
    except (csv.Error, StopIteration):
        return False
    return len(header) > 2 and header[:2] == ["id", "text"] and header != ["id", "text", "labels"]


def parse_upload(upload: UploadedFile) -> tuple[list[ImportRecord], list[str]]:
    """An uploaded file, refused (413) above settings.ALABEL_MAX_IMPORT_BYTES before it is read."""
    limit = settings.ALABEL_MAX_IMPORT_BYTES
    if upload.size > limit:
        raise ProjectError(f"the file is {upload.size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB", status=413)
    return parse_file(upload.name, upload.read())


# Label files (the taxonomy): CSV / TSV with a header row, or JSON (a list of objects).
MAX_LABEL_NAME_LENGTH = 255
MAX_LABELS = 100_000  # labels per project
MAX_LABEL_DESCRIPTION_LENGTH = 10_000
MAX_ALT_NAMES = 100
# Header names and JSON keys, with the spellings of common vocabularies (tibkat-gnd's labels.tsv: label, gnd_id).
LABEL_COLUMNS = {
    "name": "name",
    "label": "name",
    "description": "description",
    "alt_names": "alt_names",
    "aliases": "alt_names",
    "external_id": "external_id",
    "gnd_id": "external_id",
    "parent": "parent",
}


@dataclass
class LabelRecord:
    """One label of a label file. A field that is None was not in the file: an existing label keeps its value."""

    line: int
    name: str
    description: str | None = None
    alt_names: list[str] | None = None
    external_id: str | None = None
    parent: str | None = None  # the parent's external id or name; "" : a root


@dataclass
class LabelFile:
    records: list[LabelRecord]
    errors: list[str]
    ignored_columns: list[str] = field(default_factory=list)


def _label_text(value: Any, prefix: str, what: str, limit: int, errors: list[str]) -> str | None:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        errors.append(f"{prefix}: {what} must be text")
        return None
    text = str(value).strip()
    if problem := text_problem(text):
        errors.append(f"{prefix}: {what} {problem}")
        return None
    if len(text) > limit:
        errors.append(f"{prefix}: {what} is {len(text):,} characters long; the limit is {limit:,}")
        return None
    return text


def validate_label_record(raw: Any, line: int, where: str = "line") -> tuple[LabelRecord | None, list[str]]:
    """Checks one label (a dict whose keys are already the canonical columns of LABEL_COLUMNS)."""
    prefix = f"{where} {line}"
    if not isinstance(raw, dict):
        return None, [f'{prefix}: expected an object with "name", got {type(raw).__name__}']
    errors: list[str] = []
    name = _label_text(raw.get("name"), prefix, "the name", MAX_LABEL_NAME_LENGTH, errors)
    if name == "":
        errors.append(f"{prefix}: the name is empty")
    elif name is not None and LABEL_SEPARATOR in name:
        errors.append(f"{prefix} ({name!r}): a name cannot contain {LABEL_SEPARATOR!r}")
    if name:
        prefix = f"{prefix} ({name!r})"
    record = LabelRecord(line=line, name=name or "")
    if "description" in raw:
        record.description = _label_text(
            raw["description"], prefix, "the description", MAX_LABEL_DESCRIPTION_LENGTH, errors
        )
    if "external_id" in raw:
        record.external_id = _label_text(raw["external_id"], prefix, "the external id", MAX_ID_LENGTH, errors)
    if "parent" in raw:
        record.parent = _label_text(raw["parent"], prefix, "the parent", MAX_LABEL_NAME_LENGTH, errors)
    if "alt_names" in raw:
        alt = raw["alt_names"]
        if alt is None:
            alt = []
        elif isinstance(alt, str):
            alt = alt.split(LABEL_SEPARATOR)
        if not isinstance(alt, list):
            errors.append(f"{prefix}: alt_names must be a list of names (in CSV: separated by {LABEL_SEPARATOR!r})")
        else:
            names: list[str] = []
            for item in alt:
                text = _label_text(item, prefix, "an alternative name", MAX_LABEL_NAME_LENGTH, errors)
                if text and text != name and text not in names:
                    names.append(text)
            if len(names) > MAX_ALT_NAMES:
                errors.append(f"{prefix}: {len(names)} alternative names; the limit is {MAX_ALT_NAMES}")
            record.alt_names = names
    if errors:
        return None, errors
    return record, []


def _label_rows(text: str, delimiter: str) -> LabelFile:
    errors: list[str] = []
    records: list[LabelRecord] = []
    ignored: list[str] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    columns: list[str | None] = []
    started = 1
    try:
        for row in reader:
            number, started = started, reader.line_num + 1
            if not row or all(not cell.strip() for cell in row):
                continue
            if not columns:
                header = [cell.strip().lower() for cell in row]
                columns = [LABEL_COLUMNS.get(cell) for cell in header]
                ignored = [cell for cell, column in zip(header, columns, strict=True) if column is None]
                known = [column for column in columns if column]
                doubled = sorted({column for column in known if known.count(column) > 1})
                if "name" not in known:
                    return LabelFile([], [f"line {number}: the header row must name a column name (or label)"])
                if doubled:
                    return LabelFile([], [f"line {number}: the header names {', '.join(doubled)} twice"])
                continue
            if len(row) > len(columns):
                errors.append(f"line {number}: {len(row)} columns, the header has {len(columns)}")
                continue
            raw = {column: cell for column, cell in zip(columns, row, strict=False) if column}
            record, problems = validate_label_record(raw, number)
            errors.extend(problems)
            if record is not None:
                records.append(record)
    except csv.Error as exc:
        if "end of data" in str(exc):
            errors.append(f'line {started}: a quoted field (") opened on this line is never closed')
        else:
            errors.append(f"line {reader.line_num}: not valid CSV ({exc})")
    if not columns:
        errors.append("the file is empty: expected a header row (name, description, alt_names, external_id, parent)")
    return LabelFile(records, errors, ignored)


def parse_label_items(items: Any) -> LabelFile:
    """A JSON list of label objects (keys: name, description, alt_names, external_id, parent); items numbered from 1
    and named "item N" in messages."""
    if not isinstance(items, list):
        raise ProjectError(
            'expected a JSON list of {"name", "description"?, "alt_names"?, "external_id"?, "parent"?} objects '
            "or an uploaded label file"
        )
    records: list[LabelRecord] = []
    errors: list[str] = []
    for number, raw in enumerate(items, start=1):
        if isinstance(raw, dict):
            unknown = sorted(key for key in raw if key not in LABEL_COLUMNS)
            if unknown:
                errors.append(f"item {number}: unknown field(s) {', '.join(map(str, unknown))}")
                continue
            raw = {LABEL_COLUMNS[key]: value for key, value in raw.items()}
        record, problems = validate_label_record(raw, number, where="item")
        errors.extend(problems)
        if record is not None:
            records.append(record)
    return LabelFile(records, errors)


def parse_label_file(name: str, data: bytes) -> LabelFile:
    """A label file by its extension: .csv, .tsv (or .tab), .json (a list of objects)."""
    lowered = name.lower()
    text = _decode(data)
    if lowered.endswith(".json"):
        try:
            items = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise ProjectError(f"the file is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        except (ValueError, RecursionError) as exc:
            raise ProjectError(f"the file is not valid JSON ({exc})") from exc
        return parse_label_items(items)
    if lowered.endswith(".csv"):
        return _label_rows(text, ",")
    if lowered.endswith((".tsv", ".tab")):
        return _label_rows(text, "\t")
    raise ProjectError(f"unsupported label file type {name!r}: upload a .csv, .tsv or .json file")


def parse_label_upload(upload: UploadedFile) -> LabelFile:
    """An uploaded label file, refused (413) above settings.ALABEL_MAX_IMPORT_BYTES before it is read."""
    limit = settings.ALABEL_MAX_IMPORT_BYTES
    if upload.size > limit:
        raise ProjectError(f"the file is {upload.size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB", status=413)
    return parse_label_file(upload.name or "", upload.read())
