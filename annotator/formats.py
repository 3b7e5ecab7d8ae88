"""Other tools' formats, both ways: Label Studio JSON, Hugging Face datasets (a `save_to_disk` folder), Parquet, and
tables whose labels are multi-hot columns (one 0/1 column per label). No database access.

Imports give `ImportRecord`s and the messages naming every bad task or row (checked by `importing.validate_record`,
like our own JSONL / CSV); exports take `selectors.export_rows` rows. The `datasets` library (and pyarrow, which comes
with it) is imported inside the functions that need it, so the web process does not load it until a file asks for
it; nothing here reaches the network: a dataset is read with `load_from_disk` or from Parquet bytes, never by a hub
name.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .exceptions import ProjectError
from .importing import (
    LABEL_SEPARATOR,
    ImportRecord,
    Prediction,
    decode_text,
    refuse_constant,
    source_problem,
    validate_record,
)
from .validation import spreadsheet_safe

# Label Studio: the names of the control and object tags in the labeling config we export for (docs/api.md).
LS_FROM_NAME = "label"
LS_TO_NAME = "text"
LS_CONFIG = (
    "<View>\n"
    '  <Text name="text" value="$text"/>\n'
    '  <Choices name="label" toName="text" choice="multiple" showInline="true">\n'
    '    <Choice value="..."/>  <!-- one per label -->\n'
    "  </Choices>\n"
    "</View>"
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # the first characters `spreadsheet_safe` escapes with a quote
# Our own CSV export's header; its columns besides id, text and labels are read past when it is imported back.
CSV_EXPORT_COLUMNS = [
    "id",
    "text",
    "labels",
    "labels_from",
    "gold_reviewer",
    "annotator",
    "annotated_at",
    "evaluation",
    "answers",
    "seconds_spent",
]
CSV_EXPORT_ONLY = set(CSV_EXPORT_COLUMNS) - {"id", "text", "labels"}
TABLE_COLUMNS = {"id", "text", "labels", "label_ids", "metadata", "predictions", "prediction_source"}
LS_DEFAULT_SOURCE = "labelstudio"  # a Label Studio prediction without model_version
FALSE_VALUES = (0, False, "0", "false", "False")
TRUE_VALUES = (1, True, "1", "true", "True")


# --- Label Studio JSON ---------------------------------------------------------------------------------------------
def _choices(items: Any, where: str, errors: list[str]) -> list[str] | None:
    """The label names of a `result` list (every item a `choices` result, merged in order), or None if bad."""
    if not isinstance(items, list):
        errors.append(f"{where}: result must be a list")
        return None
    names: list[str] = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            errors.append(f"{where}: result {number} must be an object")
            return None
        if item.get("type") != "choices":
            errors.append(
                f"{where}: result {number} has type {str(item.get('type'))[:40]!r}; only choices results can be "
                "imported (a text classification project)"
            )
            return None
        value = item.get("value")
        chosen = value.get("choices") if isinstance(value, dict) else None
        if not isinstance(chosen, list) or not all(isinstance(name, str) for name in chosen):
            errors.append(f"{where}: result {number} needs value.choices, a list of label names")
            return None
        names.extend(chosen)
    return names


def _ls_prediction(prediction: dict[str, Any], where: str, errors: list[str]) -> Prediction | None:
    """One Label Studio prediction as a pre-annotation: source its `model_version` (else "labelstudio"), each label
    scored by its result's `score`, else the prediction's `score`, else 1.0; scores must lie in [0, 1]."""
    before = len(errors)
    items = prediction.get("result", [])
    if _choices(items, where, errors) is None:
        return None
    version = prediction.get("model_version")
    source = LS_DEFAULT_SOURCE if version is None or version == "" else str(version)
    if problem := source_problem(source):
        errors.append(f"{where}: model_version: {problem}")
    default = prediction.get("score")
    if default is not None and (
        isinstance(default, bool) or not isinstance(default, int | float) or not 0 <= default <= 1
    ):
        errors.append(f"{where}: score must be a number between 0 and 1")
    labels: dict[str, float] = {}
    for number, item in enumerate(items, start=1):
        score = item.get("score", default)
        if score is None:
            score = 1.0 if default is None else default
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            errors.append(f"{where}: result {number}: score must be a number between 0 and 1")
            continue
        for name in item["value"]["choices"]:
            if not name.strip() or LABEL_SEPARATOR in name or len(name) > 255:
                errors.append(f"{where}: result {number}: label {name[:50]!r} must be 1-255 characters without '|'")
                continue
            labels[name.strip()] = float(score)
    if len(errors) > before or not labels:
        return None
    return Prediction(source.strip(), labels)


def _ls_task(task: Any, number: int, text_key: str) -> tuple[ImportRecord | None, list[Prediction], list[str]]:
    """One task: its record, the pre-annotations it carries, and the problems found (each naming the task)."""
    prefix = f"task {number}"
    if not isinstance(task, dict):
        return None, [], [f'{prefix}: expected an object with "data", got {type(task).__name__}']
    errors: list[str] = []
    data = task.get("data")
    if not isinstance(data, dict):
        return None, [], [f'{prefix}: "data" must be an object with "{text_key}"']
    if text_key not in data:
        return None, [], [f'{prefix}: "data" has no "{text_key}" (the text to label)']
    ext_id: Any = data.get("id")
    if ext_id is None:
        task_id = task.get("id")
        ext_id = f"ls-{task_id}" if isinstance(task_id, int | str) and not isinstance(task_id, bool) else f"ls-{number}"
    annotations = task.get("annotations", task.get("completions")) or []
    labels: list[str] | None = None
    if not isinstance(annotations, list):
        errors.append(f'{prefix}: "annotations" must be a list')
    else:
        chosen: list[tuple[bool, str, int, list[str]]] = []
        for index, annotation in enumerate(annotations, start=1):
            where = f"{prefix}: annotation {index}"
            if not isinstance(annotation, dict):
                errors.append(f"{where} must be an object")
                continue
            if annotation.get("was_cancelled") is True:
                continue
            names = _choices(annotation.get("result", []), where, errors)
            if names is not None:
                when = str(annotation.get("updated_at") or annotation.get("created_at") or "")
                chosen.append((annotation.get("ground_truth") is True, when, index, names))
        if chosen:  # a ground-truth annotation first, else the latest (then the last in the list)
            labels = max(chosen, key=lambda found: found[:3])[3]
    predictions = task.get("predictions") or []
    if not isinstance(predictions, list):
        errors.append(f'{prefix}: "predictions" must be a list')
        predictions = []
    found: dict[str, dict[str, float]] = {}  # by source; a later prediction of the same source adds to it
    for index, prediction in enumerate(predictions, start=1):
        where = f"{prefix}: prediction {index}"
        if not isinstance(prediction, dict):
            errors.append(f"{where} must be an object")
            continue
        parsed = _ls_prediction(prediction, where, errors)
        if parsed is not None and parsed.source is not None:
            found.setdefault(parsed.source, {}).update(parsed.labels)
    metadata = {key: value for key, value in data.items() if key not in {text_key, "id"}}
    raw: dict[str, Any] = {"id": ext_id, "text": data[text_key], "metadata": metadata}
    if labels is not None:
        raw["labels"] = labels
    record, problems = validate_record(raw, number, where="task")
    return record, [Prediction(source, labels) for source, labels in found.items()], errors + problems


def parse_label_studio(data: bytes, *, text_key: str = "text") -> tuple[list[ImportRecord], list[str]]:
    """A Label Studio JSON export: a list of tasks (or one task object). Returns the records and the messages naming
    every bad task ("task N: ...", numbered from 1). Predictions become each record's `predictions` (pre-annotations:
    source the prediction's `model_version`, else "labelstudio"; a label's score its result's `score`, else the
    prediction's, else 1.0).

    Each task: `data.<text_key>` (required), `data.id` (our external id; else "ls-<task id>", else "ls-<N>"), the
    other `data` keys as metadata, `annotations` (`result` items of type `choices`, several merged; cancelled ones
    skipped; a `ground_truth` one wins, else the latest by `updated_at`/`created_at`, else the last) and
    `predictions` (the same results, with scores in [0, 1])."""
    try:
        tasks = json.loads(decode_text(data), parse_constant=refuse_constant)
    except json.JSONDecodeError as exc:
        raise ProjectError(f"the file is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except (ValueError, RecursionError) as exc:
        raise ProjectError(f"the file is not valid JSON ({exc})") from exc
    return parse_label_studio_tasks(tasks, text_key=text_key)


def parse_label_studio_tasks(tasks: Any, *, text_key: str = "text") -> tuple[list[ImportRecord], list[str]]:
    """`parse_label_studio` on the file's parsed JSON."""
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise ProjectError("a Label Studio file is a JSON list of tasks")
    records: list[ImportRecord] = []
    errors: list[str] = []
    for number, task in enumerate(tasks, start=1):
        record, found, problems = _ls_task(task, number, text_key)
        errors.extend(problems)
        if record is not None and not problems:
            record.predictions = found
            records.append(record)
    return records, errors


def label_studio_tasks(data: bytes) -> Any | None:
    """The parsed tasks when a .json file is Label Studio's (its top level a list whose first item is an object with
    "data", or one such object), else None (then it is read as JSON lines)."""
    if not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"[", b"{")):
        return None
    try:
        parsed = json.loads(decode_text(data), parse_constant=refuse_constant)
    except (ValueError, RecursionError, ProjectError):  # JSON lines (several objects) or broken: not ours to name
        return None
    first = parsed[0] if isinstance(parsed, list) and parsed else parsed
    return parsed if isinstance(first, dict) and "data" in first else None


def _ls_result(names: Iterable[str], from_name: str, to_name: str) -> dict[str, Any]:
    return {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": list(names)}}


def label_studio_task(row: dict[str, Any], *, from_name: str = LS_FROM_NAME, to_name: str = LS_TO_NAME) -> dict:
    """One export row (`selectors.export_rows`) as a Label Studio task: `data.text` and `data.id` (our external id),
    one annotation per answer (oldest first; `lead_time` the seconds spent), the reviewer's gold as a further
    annotation with `ground_truth: true`, who answered in `meta.annotators` (Label Studio's `completed_by` is one of
    its own user ids), one prediction: the suggestions the first answer was shown, each label a result with its
    score, `model_version` our version number ("cold-start" before the first model) (none when they were an external
    source's pre-annotations: those follow), and one prediction per stored pre-annotation source (`row["predictions"]`,
    `model_version` the source, one result per label with its score, best first)."""
    annotations = [
        {
            "result": [_ls_result(answer["labels"], from_name, to_name)],
            "was_cancelled": False,
            "ground_truth": False,
            "lead_time": answer.get("seconds_spent"),
            "created_at": answer.get("created_at"),
            "updated_at": answer.get("updated_at"),
        }
        for answer in row.get("answers", [])
    ]
    meta: dict[str, Any] = {"annotators": [answer["annotator"] for answer in row.get("answers", [])]}
    gold = row.get("gold")
    if gold:
        annotations.append(
            {
                "result": [_ls_result(gold["labels"], from_name, to_name)],
                "was_cancelled": False,
                "ground_truth": True,
                "created_at": gold.get("updated_at"),
                "updated_at": gold.get("updated_at"),
            }
        )
        meta["reviewer"] = gold.get("reviewer")
    if not row.get("answers") and row.get("labels") is not None:  # labels without answers (rows built elsewhere)
        annotations.append({"result": [_ls_result(row["labels"], from_name, to_name)], "was_cancelled": False})
    task: dict[str, Any] = {"data": {"text": row["text"], "id": row["id"]}, "annotations": annotations, "meta": meta}
    shown = next((answer for answer in row.get("answers", []) if answer.get("suggestions")), None)
    if shown is not None and any(item.get("source") not in (None, "model") for item in shown["suggestions"]):
        shown = None  # an external source's suggestions: exported below with the source's pre-annotations
    if shown is not None:
        suggestions = [item for item in shown["suggestions"] if item.get("label")]
        scores = [item["score"] for item in suggestions if isinstance(item.get("score"), int | float)]
        version = shown.get("model_version")
        task["predictions"] = [
            {
                "model_version": str(version) if version is not None else "cold-start",
                "score": max(scores) if scores else None,
                "result": [
                    {**_ls_result([item["label"]], from_name, to_name), "score": item.get("score")}
                    for item in suggestions
                ],
            }
        ]
    else:
        task["predictions"] = []
    for stored in row.get("predictions") or []:
        scored = sorted(stored["labels"].items(), key=lambda pair: (-pair[1], pair[0]))
        task["predictions"].append(
            {
                "model_version": stored["source"],
                "score": scored[0][1] if scored else None,
                "result": [{**_ls_result([name], from_name, to_name), "score": score} for name, score in scored],
            }
        )
    return task


def label_studio_export(rows: Iterable[dict[str, Any]], **names: str) -> Iterator[str]:
    """Streams a JSON list of Label Studio tasks, one task per chunk (see `label_studio_task`)."""
    yield "["
    separator = "\n"
    for row in rows:
        yield separator + json.dumps(label_studio_task(row, **names), ensure_ascii=False)
        separator = ",\n"
    yield "\n]\n"


# --- tables: Parquet, Hugging Face datasets, JSONL / CSV with multi-hot columns ---------------------------------------
def _is_flag(value: Any) -> bool:
    return value is None or value == "" or value in FALSE_VALUES or value in TRUE_VALUES


def detect_label_columns(columns: dict[str, list[Any]]) -> list[str]:
    """The multi-hot columns of a table: every column other than id / text / metadata whose values are all 0/1 or
    booleans (empty cells allowed)."""
    return [
        name
        for name, values in columns.items()
        if name not in TABLE_COLUMNS and values and all(_is_flag(value) for value in values)
    ]


def records_from_columns(
    columns: dict[str, list[Any]],
    *,
    label_columns: list[str] | None = None,
    multi_hot: bool = False,
    class_names: list[str] | None = None,
    where: str = "row",
    first: int = 1,
) -> tuple[list[ImportRecord], list[str]]:
    """Records from a column table (`{name: values}`): `id`, `text`, and either `labels` (a list of names; or of
    integers when `class_names` maps them, a `ClassLabel` feature) or multi-hot columns (`label_columns`, or with
    `multi_hot` every 0/1 column, unless there is a `labels` column). In multi-hot rows an empty cell counts as 0,
    and a row whose label cells are all empty is unlabelled. A `predictions` column holds pre-annotations
    (`importing.parse_predictions`: `joy:0.91|anger:0.2`, `{"joy": 0.91}` or a list of `{"source", "labels"}`), of
    the source in `prediction_source` when there is one. Rows are numbered from `first` and named "<where> N"; any
    other column is an error."""
    if "text" not in columns:
        return [], [f'the table has no "text" column (it has: {", ".join(sorted(columns)) or "none"})']
    if "id" not in columns:
        return [], ['the table has no "id" column (a unique id per document)']
    hot = list(label_columns or [])
    if hot and "labels" in columns:
        return [], ['the table has a "labels" column and label columns: use one or the other']
    if not hot and multi_hot and "labels" not in columns:
        hot = detect_label_columns(columns)
        if not hot and "predictions" not in columns:  # with predictions alone: unlabelled documents
            return [], ["no multi-hot label columns found (columns other than id and text with only 0/1 values)"]
    missing = [name for name in hot if name not in columns]
    if missing:
        return [], [f"label column(s) not in the table: {', '.join(missing)}"]
    unknown = sorted(set(columns) - TABLE_COLUMNS - set(hot))
    if unknown:
        return [], [
            f"unknown column(s) {', '.join(unknown)}: name the label columns (label_columns / --label-columns) or "
            "detect them (multi_hot / --multi-hot), or drop them"
        ]
    count = len(columns["text"])
    records: list[ImportRecord] = []
    errors: list[str] = []
    ids, texts = columns["id"], columns["text"]
    listed = None if hot else columns.get("labels")
    metadata = columns.get("metadata")
    predictions, sources = columns.get("predictions"), columns.get("prediction_source")
    for index in range(count):
        number = first + index
        raw: dict[str, Any] = {"id": ids[index], "text": texts[index]}
        if metadata is not None and metadata[index] is not None:
            raw["metadata"] = metadata[index]
        if predictions is not None and predictions[index] is not None:
            raw["predictions"] = predictions[index]
            if sources is not None and sources[index]:
                raw["prediction_source"] = sources[index]
        if hot:
            cells = [columns[name][index] for name in hot]
            bad = [name for name, value in zip(hot, cells, strict=True) if not _is_flag(value)]
            if bad:
                errors.append(f"{where} {number}: label column(s) {', '.join(bad)} must be 0 or 1")
                continue
            if not all(value is None or value == "" for value in cells):
                raw["labels"] = [name for name, value in zip(hot, cells, strict=True) if value in TRUE_VALUES]
        elif listed is not None and listed[index] is not None:
            value = listed[index]
            if class_names is not None and isinstance(value, list | tuple):
                try:
                    value = [class_names[item] if isinstance(item, int) else item for item in value]
                except IndexError:
                    errors.append(f"{where} {number}: a label number is outside the dataset's {len(class_names)} names")
                    continue
            raw["labels"] = list(value) if isinstance(value, tuple) else value
        record, problems = validate_record(raw, number, where=where)
        errors.extend(problems)
        if record is not None:
            records.append(record)
    return records, errors


def _class_names(features: Any, column: str) -> list[str] | None:
    """The names of a label feature that is `Sequence(ClassLabel)` / `List(ClassLabel)` (or a lone ClassLabel)."""
    from datasets import ClassLabel

    feature = features.get(column) if features is not None else None
    inner = getattr(feature, "feature", feature)
    return list(inner.names) if isinstance(inner, ClassLabel) else None


def _table_records(table: Any, features: Any, **options: Any) -> tuple[list[ImportRecord], list[str]]:
    columns = table.to_pydict()
    source = "labels" if "labels" in columns or "label_ids" not in columns else "label_ids"
    if source == "label_ids":  # our own export's integer labels alone
        columns["labels"] = columns["label_ids"]
    columns.pop("label_ids", None)
    class_names = _class_names(features, source)
    labels = columns.get("labels")
    if class_names is not None and labels is not None:  # a lone ClassLabel: one label per row
        columns["labels"] = [[value] if isinstance(value, int) else value for value in labels]
    return records_from_columns(columns, class_names=class_names, **options)


def parse_parquet(
    data: bytes, *, label_columns: list[str] | None = None, multi_hot: bool = False
) -> tuple[list[ImportRecord], list[str]]:
    """A Parquet file: columns `id`, `text`, and `labels` (names, or integers with a `ClassLabel` feature kept in the
    file's Hugging Face metadata) or multi-hot columns. Rows named "row N" from 1."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Features

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise ProjectError(f"the file is not a readable Parquet file ({exc})") from exc
    try:
        features = Features.from_arrow_schema(table.schema)
    except (ValueError, TypeError, KeyError):
        features = None
    return _table_records(table, features, label_columns=label_columns, multi_hot=multi_hot)


def parse_hf_dataset(
    path: str | Path, *, split: str = "train", label_columns: list[str] | None = None, multi_hot: bool = False
) -> tuple[list[ImportRecord], list[str]]:
    """A folder written by `Dataset.save_to_disk` (or a `DatasetDict`'s, then `split`); read with `load_from_disk`,
    offline. Same columns as `parse_parquet`."""
    from datasets import DatasetDict, load_from_disk

    folder = Path(path)
    if not folder.is_dir():
        raise ProjectError(f"{folder} is not a folder (a Hugging Face dataset saved with save_to_disk)")
    try:
        dataset = load_from_disk(str(folder))
    except FileNotFoundError as exc:
        raise ProjectError(f"{folder} is not a dataset saved with save_to_disk ({exc})") from exc
    if isinstance(dataset, DatasetDict):
        if split not in dataset:
            raise ProjectError(f"the dataset has no split {split!r} (it has: {', '.join(dataset)})")
        dataset = dataset[split]
    return _table_records(dataset.data.table, dataset.features, label_columns=label_columns, multi_hot=multi_hot)


def parse_jsonl_table(
    data: bytes, *, label_columns: list[str] | None = None, multi_hot: bool = False
) -> tuple[list[ImportRecord], list[str]]:
    """JSONL lines with multi-hot label fields (`{"id", "text", "<label>": 0/1, ...}`), lines named from 1."""
    rows: list[dict[str, Any]] = []
    numbers: list[int] = []
    errors: list[str] = []
    for number, line in enumerate(decode_text(data).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line, parse_constant=refuse_constant)
        except (ValueError, RecursionError) as exc:
            errors.append(f"line {number}: not valid JSON ({exc})")
            continue
        if not isinstance(raw, dict):
            errors.append(f"line {number}: expected an object")
            continue
        rows.append(raw)
        numbers.append(number)
    names = list(dict.fromkeys(key for row in rows for key in row))
    columns = {name: [row.get(name) for row in rows] for name in names}
    records, problems = records_from_columns(columns, label_columns=label_columns, multi_hot=multi_hot, where="line")
    for record in records:  # number by file line, not by object
        record.line = numbers[record.line - 1]
    renumbered = []
    for message in problems:
        head, _, rest = message.partition(": ")
        if head.startswith("line ") and head[5:].isdigit():
            message = f"line {numbers[int(head[5:]) - 1]}: {rest}"
        renumbered.append(message)
    return records, errors + renumbered


def parse_csv_table(
    data: bytes, *, label_columns: list[str] | None = None, multi_hot: bool = True
) -> tuple[list[ImportRecord], list[str]]:
    """A CSV file whose header row names `id`, `text` and one 0/1 column per label (empty cells: 0; a row with every
    label cell empty: unlabelled), or our own CSV export (`labels` joined by `|`, its other columns read past). Rows
    named by their line. A cell starting with `'` and then =, +, -, @, tab or CR
    loses the `'` (how our export keeps spreadsheets from running a cell as a formula)."""
    reader = csv.reader(io.StringIO(decode_text(data), newline=""), strict=True)
    header: list[str] = []
    rows: list[list[str]] = []
    numbers: list[int] = []
    errors: list[str] = []
    started = 1
    try:
        for row in reader:
            number, started = started, reader.line_num + 1
            if not row or all(not cell.strip() for cell in row):
                continue
            if not header:
                header = [cell.strip() for cell in row]
                continue
            if len(row) != len(header):
                errors.append(f"line {number}: {len(row)} columns, the header has {len(header)}")
                continue
            rows.append(row)
            numbers.append(number)
    except csv.Error as exc:
        errors.append(f"line {started}: not valid CSV ({exc})")
    doubled = sorted({name for name in header if header.count(name) > 1})
    if doubled:
        return [], [f"line 1: the header names {', '.join(doubled)} twice"]
    header = [_unescape(name) for name in header]
    columns = {name: [_unescape(row[index]) for row in rows] for index, name in enumerate(header)}
    if "labels" in columns and set(columns) - TABLE_COLUMNS <= CSV_EXPORT_ONLY:  # our own CSV export
        given = columns.pop("labels")
        answered = columns.get("labels_from", given)  # an empty labels_from: unlabelled; else labelled, maybe []
        columns["labels"] = [
            (cell.split(LABEL_SEPARATOR) if cell else []) if mark else None
            for cell, mark in zip(given, answered, strict=True)
        ]
        for name in CSV_EXPORT_ONLY:
            columns.pop(name, None)
    elif multi_hot and not label_columns and "labels" not in columns:  # the header names the labels: a bad cell named
        label_columns = [name for name in header if name not in TABLE_COLUMNS]
        multi_hot = bool(label_columns)  # `id,text,predictions`: unlabelled documents with pre-annotations
    records, problems = records_from_columns(
        columns, label_columns=label_columns, multi_hot=multi_hot, where="row", first=0
    )
    for record in records:
        record.line = numbers[record.line]
    renumbered = []
    for message in problems:
        head, _, rest = message.partition(": ")
        if head.startswith("row ") and head[4:].isdigit():
            message = f"line {numbers[int(head[4:])]}: {rest}"
        renumbered.append(message)
    return records, errors + renumbered


def csv_export(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Our CSV export: `id,text,labels` (joined by `|`) and who, when, how many answers and seconds; cells a
    spreadsheet would run as formulas get a leading `'`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_EXPORT_COLUMNS)
    for row in rows:
        answers = row["answers"]
        seconds = [a["seconds_spent"] for a in answers if a["seconds_spent"] is not None]
        cells = (
            row["id"],
            row["text"],
            "|".join(row["labels"] or []),
            row["labels_from"] or "",
            row["gold"]["reviewer"] if row["gold"] else "",
            row["annotator"] or "",
            row["annotated_at"] or "",
            "1" if row["evaluation"] else "0",
            str(len(answers)),
            f"{sum(seconds):.1f}" if seconds else "",
        )
        writer.writerow([spreadsheet_safe(cell) for cell in cells])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def jsonl_export(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Our JSONL export: one export row per line."""
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def _unescape(cell: str) -> str:
    """Undoes `spreadsheet_safe` (our CSV export's leading `'` before =, +, -, @, tab, CR)."""
    return cell[1:] if cell.startswith("'") and cell[1:2] in FORMULA_START else cell


def label_vocabulary(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The label names used in rows' `labels`, sorted."""
    return sorted({name for row in rows for name in row.get("labels") or []})


def csv_multi_hot_export(rows: Iterable[dict[str, Any]], names: list[str]) -> Iterator[str]:
    """Streams CSV `id,text,<label>...` with 1/0 per label (`names`, the columns) and empty label cells for an
    unlabelled document; cells a spreadsheet would run as formulas get a leading `'`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([spreadsheet_safe(cell) for cell in ["id", "text", *names]])
    for row in rows:
        given = row.get("labels")
        chosen = set(given or [])
        flags = [""] * len(names) if given is None else ["1" if name in chosen else "0" for name in names]
        writer.writerow([spreadsheet_safe(row["id"]), spreadsheet_safe(row["text"]), *flags])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def hf_dataset(rows: Iterable[dict[str, Any]]) -> Any:
    """A `datasets.Dataset` of rows: `id`, `text`, `labels` (names; None when unlabelled) and `label_ids` (the same
    labels as `List(ClassLabel(names=...))`, the newer spelling of `Sequence(ClassLabel)`, over the sorted names
    used, for training code that wants integers)."""
    from datasets import ClassLabel, Dataset, Features, List, Value

    ids: list[str] = []
    texts: list[str] = []
    labels: list[list[str] | None] = []
    for row in rows:
        ids.append(row["id"])
        texts.append(row["text"])
        labels.append(None if row.get("labels") is None else sorted(row["labels"]))
    names = sorted({name for given in labels for name in given or []})
    index = {name: number for number, name in enumerate(names)}
    features = Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "labels": List(Value("string")),
            "label_ids": List(ClassLabel(names=names or ["none"])),
        }
    )
    label_ids = [None if given is None else [index[name] for name in given] for given in labels]
    return Dataset.from_dict({"id": ids, "text": texts, "labels": labels, "label_ids": label_ids}, features=features)


def hf_export(rows: Iterable[dict[str, Any]], path: str | Path, fmt: str) -> Path:
    """Writes rows as a Hugging Face dataset folder (`fmt="hf"`, `save_to_disk`) or a Parquet file (`fmt="parquet"`,
    the features kept in its metadata); returns the path."""
    if fmt not in {"hf", "parquet"}:
        raise ValueError(f"fmt must be hf or parquet, got {fmt!r}")
    dataset = hf_dataset(rows)
    target = Path(path)
    if fmt == "hf":
        dataset.save_to_disk(str(target))
    else:
        _write_parquet(dataset, target)
    return target


def _write_parquet(dataset: Any, target: Any) -> None:
    import pyarrow.parquet as pq

    pq.write_table(dataset.data.table, target)  # the table's schema metadata carries the features (ClassLabel names)


def parquet_bytes(rows: Iterable[dict[str, Any]]) -> bytes:
    """The rows as one Parquet file in memory (the API's download)."""
    buffer = io.BytesIO()
    _write_parquet(hf_dataset(rows), buffer)
    return buffer.getvalue()


IMPORT_FORMATS = ["auto", "jsonl", "csv", "labelstudio", "parquet", "hf"]


def path_size(path: Path) -> int:
    """Bytes of a file, or of every file in a folder (a dataset saved with save_to_disk)."""
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    return path.stat().st_size


def parse_path(
    path: str | Path,
    *,
    fmt: str = "auto",
    split: str = "train",
    text_key: str = "text",
    label_columns: list[str] | None = None,
    multi_hot: bool = False,
) -> tuple[list[ImportRecord], list[str]]:
    """A file or dataset folder on disk in `fmt` (`auto`: a folder is a Hugging Face dataset, a file goes by its
    extension as an upload does). Multi-hot options apply to jsonl, csv, parquet and hf."""
    from .importing import parse_file, parse_jsonl

    source = Path(path)
    if fmt not in IMPORT_FORMATS:
        raise ProjectError(f"format must be one of {', '.join(IMPORT_FORMATS)}")
    if not source.exists():
        raise ProjectError(f"{source} does not exist")
    if fmt == "hf" or (fmt == "auto" and source.is_dir()):
        return parse_hf_dataset(source, split=split, label_columns=label_columns, multi_hot=multi_hot)
    if source.is_dir():
        raise ProjectError(f"{source} is a folder: only a Hugging Face dataset (--format hf) is read from a folder")
    data = source.read_bytes()
    table = bool(label_columns) or multi_hot
    if fmt == "labelstudio" or (fmt == "auto" and source.suffix.lower() == ".json" and text_key != "text"):
        return parse_label_studio(data, text_key=text_key)
    if fmt == "parquet" or (fmt == "auto" and source.suffix.lower() == ".parquet"):
        return parse_parquet(data, label_columns=label_columns, multi_hot=multi_hot)
    if fmt == "jsonl" or (fmt == "auto" and table and source.suffix.lower() in {".jsonl", ".ndjson"}):
        return parse_jsonl_table(data, label_columns=label_columns, multi_hot=multi_hot) if table else parse_jsonl(data)
    if fmt == "csv" or (fmt == "auto" and table and source.suffix.lower() == ".csv"):
        if table:
            return parse_csv_table(data, label_columns=label_columns, multi_hot=True)
        return parse_file("file.csv", data)  # a header `id,text,<label>...` is read as multi-hot there too
    return parse_file(source.name, data)
