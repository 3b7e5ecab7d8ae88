"""`Client`: one method per thing a script does with the platform (docs/api.md), typed answers, one exception per
error status (errors.py), lists as iterators that follow the server's pages."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import requests

from . import __version__
from .errors import ClientError, JobFailed, error_for
from .types import (
    Annotation,
    ExportFormat,
    ImportResult,
    Job,
    LabelHit,
    Member,
    ModelVersion,
    NextItem,
    Project,
    Token,
    TrainMode,
    Webhook,
)

__all__ = ["DEFAULT_TIMEOUT", "FINISHED", "Client"]

DEFAULT_TIMEOUT = 60.0
FINISHED = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
DOCUMENT_SUFFIXES = (".jsonl", ".csv", ".json", ".parquet")
EXPORT_FORMATS = ("jsonl", "csv", "labelstudio", "parquet")
_CHUNK = 1 << 16


class Client:
    """A session with one alabel server.

    `base_url` is the server's root (`http://localhost:8000`); `token` an API token (`Authorization: Token <key>`,
    from `Client.login` or `POST /api/v1/auth/token/`); `timeout` the seconds to wait for each answer.
    A project is named by its id everywhere."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ClientError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.api_url = self.base_url + "/api/v1"
        self.timeout = timeout
        self.token = token
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"alabel-client/{__version__}"
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Token {token}"
        self.last_reason: str | None = None  # X-Reason of the last `next` that had nothing to serve
        self.token_info: Token | None = None  # what `login` obtained: name, prefix, expires_at

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    # -- transport --------------------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            # A `Link` header's absolute URL: keep its path and query, on the origin this client was given (the
            # server may see another host name behind a proxy; the token never goes to another host).
            parts, base = urlsplit(path), urlsplit(self.base_url)
            return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
        return self.api_url + "/" + path.lstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        files: Mapping[str, Any] | None = None,
        stream: bool = False,
        expect: Sequence[int] = (),
    ) -> requests.Response:
        """Sends one request under /api/v1/ (or to an absolute URL of this server) and returns the answer; raises
        the ApiError subclass of its status for any 4xx or 5xx."""
        response = self.session.request(
            method,
            self._url(path),
            params=_clean(params),
            json=json,
            files=files,
            stream=stream,
            timeout=self.timeout,
        )
        if response.status_code >= 400 and response.status_code not in expect:
            error = error_for(response)
            response.close()
            del response  # the traceback must not keep the answer, and with it a connection, alive
            raise error
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def pages(self, path: str, params: Mapping[str, Any] | None = None, *, key: str | None = None) -> Iterator[Any]:
        """Every item of a list, page after page.

        `key` None: the body is a JSON array; the next page is the `Link: <url>; rel="next"` header (none: this was
        the last page, or the server does not page this list). `key` "documents" (etc.): the body is
        `{key: [...], "next": id}` (keyset paging); the next page is asked for with `after=<next>`."""
        query = dict(params or {})
        url = path
        seen: set[str] = set()
        while True:
            response = self.request("GET", url, params=query)
            body = response.json()
            if key is None:
                if not isinstance(body, list):
                    raise ClientError(f"expected a JSON array from {response.url}, got {type(body).__name__}")
                yield from body
                link = response.links.get("next", {}).get("url")
                if not link or link in seen:
                    return
                seen.add(link)
                url, query = link, {}
            else:
                yield from body[key]
                after = body.get("next")
                if after is None or str(after) in seen:
                    return
                seen.add(str(after))
                query["after"] = after

    # -- authentication ---------------------------------------------------------------------------------------------

    @classmethod
    def login(
        cls,
        base_url: str,
        username: str,
        password: str,
        *,
        name: str = "alabel-client",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Client:
        """Obtains a token with a username and password (`POST /api/v1/auth/token/`) and returns a client using it;
        the token's details (`expires_at`, ...) are in `client.token_info`."""
        with cls(base_url, timeout=timeout) as anonymous:
            body = {"username": username, "password": password, "name": name}
            info = cast(Token, anonymous._json("POST", "auth/token/", json=body))
        authenticated = cls(base_url, info["token"], timeout=timeout)
        authenticated.token_info = info
        return authenticated

    def tokens(self) -> list[dict[str, Any]]:
        """Your tokens (never their keys), newest first."""
        return list(self.pages("auth/tokens/"))

    def revoke_token(self, token_id: int) -> None:
        self.request("DELETE", f"auth/tokens/{token_id}/")

    # -- projects ---------------------------------------------------------------------------------------------------

    def projects(self, *, page_size: int | None = None) -> Iterator[Project]:
        """Projects you are a member of, with your `role`."""
        return cast(Iterator[Project], self.pages("projects/", {"limit": page_size}))

    def project(self, project: int) -> Project:
        return cast(Project, self._json("GET", f"projects/{project}/"))

    def create_project(self, name: str, labels: Sequence[str | Mapping[str, Any]] = (), **settings: Any) -> Project:
        """Creates a project (you become its manager). `labels`: names, `{"name", "description"}` objects or a label
        file's items (`alt_names`, `external_id`, `parent`); all or nothing. `settings`: any project setting of
        docs/api.md (`label_budget`, `retrain_every`, `strategy`, ...)."""
        return cast(Project, self._json("POST", "projects/", json={"name": name, "labels": list(labels), **settings}))

    def update_project(self, project: int, **settings: Any) -> Project:
        """Changes settings (`PATCH`); a field the endpoint cannot change is a ValidationError naming it."""
        return cast(Project, self._json("PATCH", f"projects/{project}/", json=settings))

    def archive_project(self, project: int) -> Project:
        return cast(Project, self._json("POST", f"projects/{project}/archive/"))

    def restore_project(self, project: int) -> Project:
        return cast(Project, self._json("POST", f"projects/{project}/restore/"))

    def delete_project(self, project: int, *, confirm: str) -> None:
        """Deletes the project with everything in it; `confirm` must be its name, exactly."""
        self.request("DELETE", f"projects/{project}/", json={"confirm": confirm})

    # -- members ----------------------------------------------------------------------------------------------------

    def members(self, project: int) -> Iterator[Member]:
        return cast(Iterator[Member], self.pages(f"projects/{project}/members/"))

    def add_member(self, project: int, username: str, role: str | None = None, **fields: Any) -> Member:
        """Adds a member (an annotator unless `role` says "manager" or "reviewer") or changes one; `quota=` too."""
        body = {"username": username, **({"role": role} if role else {}), **fields}
        return cast(Member, self._json("POST", f"projects/{project}/members/", json=body))

    def remove_member(self, project: int, username: str) -> None:
        self.request("DELETE", f"projects/{project}/members/{username}/")

    # -- documents --------------------------------------------------------------------------------------------------

    def import_documents(
        self,
        project: int,
        source: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
        *,
        create_labels: bool = False,
        split: str | None = None,
    ) -> ImportResult:
        """Imports documents, all or nothing.

        `source`: JSON records (`{"id", "text", "labels"?, "metadata"?}`), or a file the server reads (`.jsonl`,
        `.csv`, `.json` Label Studio tasks, `.parquet`), or a Hugging Face dataset folder (`save_to_disk`), which is
        converted to Parquet here (needs `pip install alabel-client[hf]`; `split` picks one of a DatasetDict)."""
        params = {"create_labels": 1 if create_labels else None}
        path = f"projects/{project}/documents/"
        if not isinstance(source, str | os.PathLike):
            return cast(ImportResult, self._json("POST", path, params=params, json=list(source)))
        file_path = Path(source)
        if file_path.is_dir():
            from .hf import dataset_folder_to_parquet

            with tempfile.TemporaryDirectory(prefix="alabel-") as folder:
                parquet = dataset_folder_to_parquet(file_path, Path(folder) / f"{file_path.name}.parquet", split=split)
                return cast(ImportResult, self._upload(path, parquet, params))
        if not file_path.is_file():
            raise ClientError(f"{file_path}: no such file or folder")
        if file_path.suffix.lower() not in DOCUMENT_SUFFIXES:
            raise ClientError(
                f"{file_path.name}: the server reads {', '.join(DOCUMENT_SUFFIXES)} files or a Hugging Face dataset "
                "folder"
            )
        return cast(ImportResult, self._upload(path, file_path, params))

    def _upload(self, path: str, file_path: Path, params: Mapping[str, Any]) -> Any:
        with open(file_path, "rb") as handle:
            return self._json("POST", path, params=params, files={"file": (file_path.name, handle)})

    def documents(self, project: int, *, page_size: int | None = None, **filters: Any) -> Iterator[dict[str, Any]]:
        """Browse documents with their answers (reviewers and managers), by id, following `next` (keyset paging).
        `filters`: annotator, label, date_from, date_to, evaluation, answered, agreement_below, model_disagreement,
        gold."""
        params = {"limit": page_size, **{k: _param(v) for k, v in filters.items()}}
        return self.pages(f"projects/{project}/documents/", params, key="documents")

    def review_queue(self, project: int, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Documents whose answers disagree and that have no gold answer, worst first."""
        return self.pages(f"projects/{project}/review/", {"limit": page_size}, key="documents")

    def audit(
        self, project: int, *, target: str | None = None, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The audit log, newest first."""
        return self.pages(f"projects/{project}/audit/", {"target": target, "limit": page_size}, key="entries")

    def export(
        self,
        project: int,
        path: str | os.PathLike[str],
        *,
        format: ExportFormat = "jsonl",
        multi_hot: bool = False,
        include_unlabelled: bool = False,
        overwrite: bool = False,
    ) -> Path:
        """Exports the project's documents and labels to `path`, streamed to disk (a partial file is never left
        behind: it is written next to `path` and renamed when complete). Returns the path."""
        if format not in EXPORT_FORMATS:
            raise ClientError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
        target = Path(path)
        if target.exists() and not overwrite:
            raise ClientError(f"{target} exists; pass overwrite=True to replace it")
        params = {
            "format": format,
            "multi_hot": 1 if multi_hot else None,
            "include_unlabelled": 1 if include_unlabelled else None,
        }
        response = self.request("GET", f"projects/{project}/export/", params=params, stream=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with response, os.fdopen(fd, "wb") as handle:
                for chunk in response.iter_content(_CHUNK):
                    handle.write(chunk)
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        return target

    # -- labelling --------------------------------------------------------------------------------------------------

    def next(self, project: int) -> NextItem | None:
        """Leases the next document to label (or renews the one you hold). None when nothing is left: the reason
        (`budget`, `quota`, `empty`, `archived`) is then in `client.last_reason`."""
        response = self.request("GET", f"projects/{project}/next/")
        if response.status_code == 204:
            self.last_reason = response.headers.get("X-Reason")
            return None
        self.last_reason = None
        return cast(NextItem, response.json())

    def answer(
        self,
        project: int,
        document: int,
        labels: Sequence[str],
        *,
        rejected: Sequence[str] = (),
        seconds_spent: float | None = None,
    ) -> Annotation:
        """Submits your labels for a document (`[]`: none apply); replaces your earlier answer."""
        body: dict[str, Any] = {"document": document, "labels": list(labels), "source": "api"}
        if rejected:
            body["rejected"] = list(rejected)
        if seconds_spent is not None:
            body["seconds_spent"] = seconds_spent
        return cast(Annotation, self._json("POST", f"projects/{project}/annotations/", json=body))

    def skip(self, project: int, document: int) -> None:
        """Hands a leased document back; it is not served to you again."""
        self.request("POST", f"projects/{project}/skip/", json={"document": document})

    def stats(self, project: int) -> dict[str, Any]:
        """Budget, counts, the serving model version with its metrics, the latest job of each kind."""
        return cast(dict[str, Any], self._json("GET", f"projects/{project}/stats/"))

    # -- labels -----------------------------------------------------------------------------------------------------

    def labels(self, project: int, q: str = "", *, limit: int = 20, semantic: bool = False) -> list[LabelHit]:
        """Searches label names and alternative names (`q` empty: the most used labels)."""
        params = {"q": q or None, "limit": limit, "semantic": 1 if semantic else None}
        return cast(list[LabelHit], self._json("GET", f"projects/{project}/labels/", params=params))

    def add_labels(self, project: int, labels: Sequence[str | Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Adds labels: names or `{"name", "description"}` objects."""
        return cast(list[dict[str, Any]], self._json("POST", f"projects/{project}/labels/", json=list(labels)))

    def import_labels(
        self, project: int, source: str | os.PathLike[str] | Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Creates and updates labels from a label file (`.csv`, `.tsv`, `.json`) or a list of label objects (name,
        description, alt_names, external_id, parent), all or nothing."""
        path = f"projects/{project}/labels/import/"
        if isinstance(source, str | os.PathLike):
            return cast(dict[str, Any], self._upload(path, Path(source), {}))
        return cast(dict[str, Any], self._json("POST", path, json=list(source)))

    # -- models and training ----------------------------------------------------------------------------------------

    def models(self, project: int) -> Iterator[ModelVersion]:
        """Model versions, newest first."""
        return cast(Iterator[ModelVersion], self.pages(f"projects/{project}/models/"))

    def promote(self, project: int, number: int) -> ModelVersion:
        """Serves that model version (rollback, and back)."""
        return cast(ModelVersion, self._json("POST", f"projects/{project}/models/{number}/promote/"))

    def compare_models(self, project: int, a: int, b: int) -> dict[str, Any]:
        """Version `b` against `a`: metric deltas with intervals, per-label changes, changed documents."""
        return cast(dict[str, Any], self._json("GET", f"projects/{project}/models/compare/", params={"a": a, "b": b}))

    def train(self, project: int, mode: TrainMode | None = None) -> Job:
        """Queues a training run now (or returns the one queued or running): the job."""
        body = {"mode": mode} if mode else {}
        return cast(Job, self._json("POST", f"projects/{project}/train/", json=body))

    # -- jobs -------------------------------------------------------------------------------------------------------

    def jobs(self, project: int) -> Iterator[Job]:
        """Recent jobs, newest first."""
        return cast(Iterator[Job], self.pages(f"projects/{project}/jobs/"))

    def job(self, project: int, job: int) -> Job:
        return cast(Job, self._json("GET", f"projects/{project}/jobs/{job}/"))

    def cancel_job(self, project: int, job: int) -> Job:
        """A queued job is cancelled at once, a running one at its next progress report."""
        return cast(Job, self._json("POST", f"projects/{project}/jobs/{job}/cancel/"))

    def wait_job(
        self,
        project: int,
        job: int,
        *,
        progress: bool = True,
        interval: float = 1.0,
        timeout: float | None = None,
    ) -> Job:
        """Polls the job until it is finished and returns it. With `progress`, a tqdm bar (on stderr) shows its
        `progress` (0-1) and `message`. Raises JobFailed when it ended FAILED or CANCELLED, TimeoutError after
        `timeout` seconds (the job keeps running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=100, desc=f"job {job}", unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
        try:
            while True:
                state = self.job(project, job)
                if bar is not None:
                    bar.set_description(f"job {job} {state['kind']} {state['status'].lower()}")
                    bar.n = round(100 * min(max(float(state.get("progress") or 0.0), 0.0), 1.0))
                    bar.set_postfix_str(str(state.get("message") or ""), refresh=False)
                    bar.refresh()
                if state["status"] in FINISHED:
                    if state["status"] != "SUCCEEDED":
                        raise JobFailed(dict(state))
                    if bar is not None:
                        bar.n = 100
                        bar.refresh()
                    return state
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {job} still {state['status']} after {timeout:.0f} s")
                time.sleep(interval)
        finally:
            if bar is not None:
                bar.close()

    # -- savings, agreement -----------------------------------------------------------------------------------------

    def estimate_savings(self, project: int) -> Job:
        """Queues an estimate of the labels the project's picks saved against random picks (replaying its labelled
        data); a ValidationError says what is missing (20 labelled evaluation documents, 20 labelled picks)."""
        return cast(Job, self._json("POST", f"projects/{project}/savings/"))

    def savings(self, project: int) -> dict[str, Any]:
        """The newest estimate (`estimate.result`: `verdict`, `headline`, `summary`, ...) and the newest job."""
        return cast(dict[str, Any], self._json("GET", f"projects/{project}/savings/"))

    def agreement(self, project: int, *, label: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """The newest inter-annotator agreement report (`report` None before the first)."""
        params = {"label": label, "limit": limit}
        return cast(dict[str, Any], self._json("GET", f"projects/{project}/agreement/", params=params))

    def compute_agreement(self, project: int) -> Job:
        return cast(Job, self._json("POST", f"projects/{project}/agreement/"))

    # -- webhooks ---------------------------------------------------------------------------------------------------

    def webhooks(self, project: int) -> Iterator[Webhook]:
        return cast(Iterator[Webhook], self.pages(f"projects/{project}/webhooks/"))

    def create_webhook(self, project: int, url: str, events: Sequence[str], *, active: bool = True) -> Webhook:
        body = {"url": url, "events": list(events), "active": active}
        return cast(Webhook, self._json("POST", f"projects/{project}/webhooks/", json=body))

    def delete_webhook(self, project: int, hook: int) -> None:
        self.request("DELETE", f"projects/{project}/webhooks/{hook}/")

    def test_webhook(self, project: int, hook: int) -> dict[str, Any]:
        """Sends a `ping` delivery to the hook now; the delivery."""
        return cast(dict[str, Any], self._json("POST", f"projects/{project}/webhooks/{hook}/test/"))

    def webhook_deliveries(self, project: int, hook: int, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """The delivery log, newest first."""
        path = f"projects/{project}/webhooks/{hook}/deliveries/"
        return self.pages(path, {"limit": page_size}, key="results")


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return 1 if value else 0
    return value


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    return {key: value for key, value in params.items() if value is not None}
