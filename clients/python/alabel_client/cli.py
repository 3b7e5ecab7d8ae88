"""The `alabel` command line (also `python -m alabel_client`).

The server is `--url` or ALABEL_URL, the token `--token` or ALABEL_TOKEN, else what `alabel login` stored in
$XDG_CONFIG_HOME/alabel/credentials.json (mode 0600). Exit codes: 0 done, 1 a watched job failed or was cancelled,
2 an error (the API's message on one line on stderr, never a traceback), 130 interrupted."""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import requests

from . import __version__
from .client import EXPORT_FORMATS, Client
from .errors import AlabelError, ApiError, JobFailed
from .types import ExportFormat

__all__ = ["credentials_path", "main", "read_label_file"]

# Header names and JSON keys of a label file, as the server reads them (annotator/importing.py LABEL_COLUMNS).
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
SUFFIX_FORMATS: dict[str, ExportFormat] = {
    ".jsonl": "jsonl",
    ".csv": "csv",
    ".json": "labelstudio",
    ".parquet": "parquet",
}


class UsageError(AlabelError):
    """A command line the client refuses before asking the server (exit code 2)."""


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "alabel" / "credentials.json"


def _stored() -> dict[str, str]:
    path = credentials_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _store(url: str, token: str) -> Path:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"url": url, "token": token}, handle)
    os.chmod(path, 0o600)  # an existing file keeps its mode on open: make sure
    return path


def read_label_file(path: Path) -> list[Any]:
    """A label file as the `labels` of project creation: `.txt` one name per line; `.csv` / `.tsv` with a header row
    (name or label, description, alt_names or aliases with `|` between them, external_id or gnd_id, parent; other
    columns are ignored); `.json` a list of names or objects with those keys."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read the label file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"the label file {path} is not UTF-8 text") from exc
    labels: list[Any]
    if suffix == ".txt":
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    elif suffix in {".csv", ".tsv", ".tab"}:
        labels = _label_rows(text, "," if suffix == ".csv" else "\t", path)
    elif suffix == ".json":
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"the label file {path} is not valid JSON ({exc})") from exc
        if not isinstance(items, list):
            raise UsageError(f"the label file {path} must hold a JSON list of names or label objects")
        labels = [
            {LABEL_COLUMNS.get(key, key): value for key, value in item.items()} if isinstance(item, dict) else item
            for item in items
        ]
    else:
        raise UsageError(f"unsupported label file {path.name}: use .txt (one per line), .csv, .tsv or .json")
    if not labels:
        raise UsageError(f"the label file {path} has no labels")
    return labels


def _label_rows(text: str, delimiter: str, path: Path) -> list[Any]:
    try:
        rows = [
            row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if any(c.strip() for c in row)
        ]
    except csv.Error as exc:
        raise UsageError(f"the label file {path} is not valid CSV ({exc})") from exc
    if not rows:
        return []
    columns = [LABEL_COLUMNS.get(cell.strip().lower()) for cell in rows[0]]
    if "name" not in columns:
        raise UsageError(f"{path}: the header row must name a column name (or label)")
    ignored = [cell for cell, column in zip(rows[0], columns, strict=True) if column is None]
    if ignored:
        print(f"note: ignoring the column(s) {', '.join(ignored)} of {path.name}", file=sys.stderr)
    # The cells as they are (empty ones too), the same item the server reads from the file's line.
    return [{column: cell for column, cell in zip(columns, row, strict=False) if column} for row in rows[1:]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alabel", description="Command line for the alabel annotation platform.")
    parser.add_argument("--url", default=os.environ.get("ALABEL_URL"), help="the server (env ALABEL_URL)")
    parser.add_argument("--token", default=os.environ.get("ALABEL_TOKEN"), help="an API token (env ALABEL_TOKEN)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each answer (default 60)")
    parser.add_argument("--json", action="store_true", help="print the API's answers as JSON")
    parser.add_argument("--version", action="version", version=f"alabel-client {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    login = commands.add_parser("login", help="obtain a token and store it (or print it)")
    login.add_argument("username")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.add_argument("--name", default="alabel cli", help="what the token is for (shown in your token list)")
    login.add_argument("--print", dest="print_token", action="store_true", help="print the token, store nothing")

    projects = commands.add_parser("projects", help="list or create projects").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    projects.add_parser("list", help="projects you are a member of")
    create = projects.add_parser("create", help="create a project with its labels (all or nothing)")
    create.add_argument("name")
    create.add_argument("--labels", type=Path, required=True, help="label file: .txt one per line, .csv, .tsv, .json")
    create.add_argument("--budget", type=int, help="label budget (documents)")
    create.add_argument("--retrain-every", type=int, help="train after this many new answers")
    create.add_argument("--strategy", help="query strategy (default: the measured default)")
    create.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other project setting (VALUE read as JSON when it parses: --set eval_share=0.4)",
    )

    imp = commands.add_parser("import", help="import documents: .jsonl .csv .json (Label Studio) .parquet, HF folder")
    imp.add_argument("project", type=int)
    imp.add_argument("file", type=Path)
    imp.add_argument("--create-labels", action="store_true", help="add labels the project does not have yet")
    imp.add_argument("--split", help="the split of a Hugging Face DatasetDict folder (default train)")

    export = commands.add_parser("export", help="export documents and labels to a file")
    export.add_argument("project", type=int)
    export.add_argument("path", type=Path)
    export.add_argument("--format", choices=EXPORT_FORMATS, help="default: from the file's suffix, else jsonl")
    export.add_argument("--multi-hot", action="store_true", help="csv: one 0/1 column per label")
    export.add_argument("--include-unlabelled", action="store_true")
    export.add_argument("--overwrite", action="store_true", help="replace an existing file")

    train = commands.add_parser("train", help="queue a training run")
    train.add_argument("project", type=int)
    train.add_argument("--mode", choices=["full", "incremental", "auto"])
    train.add_argument("--watch", action="store_true", help="show its progress until it is done")

    jobs = commands.add_parser("jobs", help="list or watch jobs").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    jobs_list = jobs.add_parser("list", help="recent jobs, newest first")
    jobs_list.add_argument("project", type=int)
    watch = jobs.add_parser("watch", help="a progress bar until the job is done (exit code 1 if it failed)")
    watch.add_argument("project", type=int)
    watch.add_argument("job", type=int)

    simulate = commands.add_parser(
        "simulate", help="estimate the labels active learning saved here against random picks (the savings estimate)"
    )
    simulate.add_argument("project", type=int)
    simulate.add_argument("--watch", action="store_true", help="wait for the estimate and print its verdict")

    stats = commands.add_parser("stats", help="budget, counts, serving model, latest jobs")
    stats.add_argument("project", type=int)
    return parser


def _print_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str), file=out)


def _client(args: argparse.Namespace) -> Client:
    stored = _stored()
    url = args.url or stored.get("url")
    if not url:
        raise UsageError("no server: pass --url or set ALABEL_URL (or log in once: alabel --url URL login USERNAME)")
    token = args.token
    if not token and stored.get("token") and stored.get("url", "").rstrip("/") == url.rstrip("/"):
        token = stored["token"]
    if not token:
        raise UsageError("not logged in: pass --token, set ALABEL_TOKEN, or run alabel login USERNAME")
    return Client(url, token, timeout=args.timeout)


def _login(args: argparse.Namespace, out: TextIO) -> int:
    if not args.url:
        raise UsageError("no server: pass --url or set ALABEL_URL")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = os.environ.get("ALABEL_PASSWORD") or getpass.getpass(f"password for {args.username}: ")
    client = Client.login(args.url, args.username, password, name=args.name, timeout=args.timeout)
    assert client.token is not None and client.token_info is not None
    if args.print_token:
        print(client.token, file=out)
        return 0
    path = _store(args.url.rstrip("/"), client.token)
    print(f"logged in as {args.username}; token saved to {path} (expires {client.token_info['expires_at']})", file=out)
    return 0


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            settings[key] = json.loads(raw)
        except ValueError:
            settings[key] = raw
    for key, value in (
        ("label_budget", args.budget),
        ("retrain_every", args.retrain_every),
        ("strategy", args.strategy),
    ):
        if value is not None:
            settings[key] = value
    return settings


def _watch(client: Client, project: int, job: int, out: TextIO, *, as_json: bool) -> int:
    try:
        state = client.wait_job(project, job, progress=not as_json)
    except JobFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        if as_json:
            _print_json(exc.job, out)
        return 1
    if as_json:
        _print_json(state, out)
    else:
        version = f": model version {state['model_version']}" if state.get("model_version") else ""
        print(f"job {job} {state['kind']} succeeded{version}", file=out)
    return 0


def _run(args: argparse.Namespace, out: TextIO) -> int:
    if args.command == "login":
        return _login(args, out)
    with _client(args) as client:
        if args.command == "projects" and args.action == "list":
            projects = list(client.projects())
            if args.json:
                _print_json(projects, out)
            for p in [] if args.json else projects:
                archived = " (archived)" if p.get("archived_at") else ""
                print(f"{p['id']}\t{p['name']}\t{p.get('role') or ''}{archived}", file=out)
        elif args.command == "projects":
            labels = read_label_file(args.labels)
            project = client.create_project(args.name, labels=labels, **_settings(args))
            if args.json:
                _print_json(project, out)
            else:
                print(f"created project {project['id']} {project['name']!r} with {len(labels)} labels", file=out)
        elif args.command == "import":
            result = client.import_documents(
                args.project, args.file, create_labels=args.create_labels, split=args.split
            )
            if args.json:
                _print_json(result, out)
            else:
                print(
                    f"imported {result['documents']} documents, {result['annotations']} answers, "
                    f"{result['labels_created']} new labels",
                    file=out,
                )
                for note in result.get("notes") or []:
                    print(f"note: {note}", file=out)
        elif args.command == "export":
            fmt: ExportFormat = args.format or SUFFIX_FORMATS.get(args.path.suffix.lower(), "jsonl")
            path = client.export(
                args.project,
                args.path,
                format=fmt,
                multi_hot=args.multi_hot,
                include_unlabelled=args.include_unlabelled,
                overwrite=args.overwrite,
            )
            print(f"wrote {path} ({fmt}, {path.stat().st_size:,} bytes)", file=out)
        elif args.command == "train":
            job = client.train(args.project, mode=args.mode)
            if args.watch:
                return _watch(client, args.project, job["id"], out, as_json=args.json)
            if args.json:
                _print_json(job, out)
            else:
                print(f"job {job['id']} ({job['kind']} {job['mode']}) {job['status']}", file=out)
        elif args.command == "jobs" and args.action == "list":
            jobs = list(client.jobs(args.project))
            if args.json:
                _print_json(jobs, out)
            for j in [] if args.json else jobs:
                progress = f"{100 * float(j.get('progress') or 0):.0f}%"
                print(f"{j['id']}\t{j['kind']}\t{j['status']}\t{progress}\t{j.get('message') or ''}", file=out)
        elif args.command == "jobs":
            return _watch(client, args.project, args.job, out, as_json=args.json)
        elif args.command == "simulate":
            return _simulate(client, args, out)
        elif args.command == "stats":
            _print_json(client.stats(args.project), out)
    return 0


def _simulate(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    job = client.estimate_savings(args.project)
    if not args.watch:
        if args.json:
            _print_json(job, out)
        else:
            print(f"queued the savings estimate: job {job['id']} ({job['status']}); alabel jobs watch", file=out)
        return 0
    try:
        client.wait_job(args.project, job["id"], progress=not args.json)
    except JobFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    overview = client.savings(args.project)
    if args.json:
        _print_json(overview, out)
        return 0
    result = (overview.get("estimate") or {}).get("result") or {}
    print(result.get("headline") or "no estimate", file=out)
    print(f"verdict: {result.get('verdict')}", file=out)
    for line in [result.get("summary"), result.get("reason")]:
        if line:
            print(line, file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args, sys.stdout)
    except ApiError as exc:
        more = [problem for problem in exc.errors if problem not in exc.detail]
        extra = f" ({'; '.join(more[:10])}{'; ...' if len(more) > 10 else ''})" if more else ""
        print(f"error: {exc.status} {exc.title}: {exc.detail}{extra}".replace("\n", " "), file=sys.stderr)
        return 2
    except AlabelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except requests.RequestException as exc:
        print(f"error: cannot reach {args.url}: {type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
