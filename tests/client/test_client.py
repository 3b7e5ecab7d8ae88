"""The Python client (clients/python, `alabel_client`) against a live server: login and tokens, projects, imports
in every format the server reads, paging, errors as exceptions, the labelling loop, exports read back."""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from alabel_client import (
    ApiError,
    AuthenticationError,
    Client,
    ClientError,
    Conflict,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ValidationError,
)

from .conftest import PASSWORD, goemotions, goemotions_labels

LABELS = goemotions_labels()
NAMES = [label["name"] for label in LABELS]


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _label_studio(path: Path, records: list[dict[str, Any]]) -> Path:
    tasks = [
        {
            "data": {"text": r["text"], "id": r["id"]},
            "annotations": [{"result": [{"type": "choices", "value": {"choices": r["labels"]}}]}],
        }
        for r in records
    ]
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


def _parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    table = pa.table(
        {
            "id": [r["id"] for r in records],
            "text": [r["text"] for r in records],
            "labels": [r["labels"] for r in records],
        }
    )
    pq.write_table(table, path)
    return path


def _as_imported(records: list[dict[str, Any]]) -> dict[str, tuple[str, list[str]]]:
    return {r["id"]: (r["text"], sorted(r["labels"])) for r in records}


def test_login_gives_a_token_the_client_sends_and_bad_credentials_are_named(server, make_user):
    make_user("ana", can_create=True)
    client = Client.login(server, "ana", PASSWORD, name="a script")
    assert client.token and client.token_info is not None
    assert client.token_info["name"] == "a script" and client.token_info["expired"] is False
    assert list(client.projects()) == []
    assert [t["name"] for t in client.tokens()] == ["a script"]

    with pytest.raises(ValidationError) as bad:
        Client.login(server, "ana", "wrong password")
    assert bad.value.status == 400 and "unable to log in" in str(bad.value)

    with pytest.raises(AuthenticationError) as anonymous, Client(server) as nobody:
        list(nobody.projects())
    assert anonymous.value.status == 401
    client.revoke_token(client.tokens()[0]["id"])
    with pytest.raises(AuthenticationError):
        client.project(1)
    client.close()


def test_import_jsonl_label_studio_parquet_and_records_then_browse_every_page(manager, tmp_path):
    project = manager.create_project("Imports", labels=LABELS)
    assert project["role"] == "manager"
    pid = project["id"]
    sample = goemotions(40)
    parts = {
        "jsonl": sample[0:10],
        "labelstudio": sample[10:20],
        "parquet": sample[20:30],
        "records": sample[30:40],
    }
    results = [
        manager.import_documents(pid, _jsonl(tmp_path / "a.jsonl", parts["jsonl"])),
        manager.import_documents(pid, _label_studio(tmp_path / "tasks.json", parts["labelstudio"])),
        manager.import_documents(pid, _parquet(tmp_path / "c.parquet", parts["parquet"])),
        manager.import_documents(pid, parts["records"]),
    ]
    assert [(r["documents"], r["annotations"]) for r in results] == [(10, 10)] * 4

    # Browsing follows the keyset `next` over 6 pages of 7.
    browsed = list(manager.documents(pid, page_size=7))
    assert len(browsed) == 40 and len({d["id"] for d in browsed}) == 40
    assert sorted(d["external_id"] for d in browsed) == sorted(r["id"] for r in sample)
    by_id = {d["external_id"]: d for d in browsed}
    for record in sample:
        assert [sorted(a["labels"]) for a in by_id[record["id"]]["answers"]] == [sorted(record["labels"])]


def test_import_a_hugging_face_dataset_folder(manager, tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    sample = goemotions(12, start=100)
    features = Features({"id": Value("string"), "text": Value("string"), "labels": List(ClassLabel(names=NAMES))})
    dataset = Dataset.from_dict(
        {
            "id": [r["id"] for r in sample],
            "text": [r["text"] for r in sample],
            "labels": [[NAMES.index(x) for x in r["labels"]] for r in sample],
        },
        features=features,
    )
    DatasetDict({"train": dataset.select(range(8)), "test": dataset.select(range(8, 12))}).save_to_disk(
        str(tmp_path / "ds")
    )
    pid = manager.create_project("HF", labels=NAMES)["id"]
    assert manager.import_documents(pid, tmp_path / "ds", split="test")["documents"] == 4
    assert manager.import_documents(pid, tmp_path / "ds")["documents"] == 8  # train by default
    browsed = {d["external_id"]: d for d in manager.documents(pid)}
    assert {k: sorted(d["answers"][0]["labels"]) for k, d in browsed.items()} == {
        r["id"]: sorted(r["labels"]) for r in sample
    }
    with pytest.raises(ClientError, match="no split 'dev'"):
        manager.import_documents(pid, tmp_path / "ds", split="dev")
    with pytest.raises(ClientError, match="no such file"):
        manager.import_documents(pid, tmp_path / "missing.jsonl")


def test_lists_page_through_every_item(manager):
    created = [manager.create_project(f"P{i}", labels=["a"])["id"] for i in range(5)]
    pages: list[tuple[int, str | None]] = []  # (items, X-Total-Count) of each answer

    def hook(response: Any, **_: Any) -> None:
        pages.append((len(response.json()), response.headers.get("X-Total-Count")))

    manager.session.hooks["response"].append(hook)
    assert sorted(p["id"] for p in manager.projects(page_size=2)) == created
    manager.session.hooks["response"].remove(hook)
    if pages[0][1] is not None:  # a server that pages arrays: three pages of 2, 2 and 1
        assert pages == [(2, "5"), (2, "5"), (1, "5")]
    assert sorted(p["id"] for p in manager.projects()) == created


class _PagedHandler(BaseHTTPRequestHandler):
    """Three pages of a JSON array linked by `Link: rel="next"` (absolute URLs on another host name, as a server
    behind a proxy writes them), and a 429 / 500 / problem+json error."""

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/projects/?"):
            page = int(self.path.rsplit("page=", 1)[1]) if "page=" in self.path else 0
            body = json.dumps([{"id": 3 * page + i} for i in range(3)]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if page < 2:
                link = f'<http://internal:9/api/v1/projects/?limit=3&page={page + 1}>; rel="next"'
                self.send_header("Link", link + ', <http://internal:9/api/v1/projects/?limit=3&page=0>; rel="prev"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        status, headers, body = {
            "/api/v1/projects/1/": (429, {"Retry-After": "7"}, {"detail": "slow down"}),
            "/api/v1/projects/2/": (503, {}, {"title": "Service Unavailable", "status": 503, "detail": "no database"}),
            "/api/v1/projects/3/": (
                400,
                {"Content-Type": "application/problem+json"},
                {
                    "type": "about:blank",
                    "title": "Bad Request",
                    "status": 400,
                    "detail": "invalid request: a; b",
                    "errors": ["label_budget: too small", "strategy: unknown"],
                },
            ),
            "/api/v1/projects/4/": (409, {}, {"detail": "someone else holds the document"}),
        }[self.path]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _PagedHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_link_headers_are_followed_on_the_clients_own_host_and_errors_parsed(stub):
    client = Client(stub, "key")
    assert [p["id"] for p in client.projects(page_size=3)] == list(range(9))
    with pytest.raises(RateLimited) as limited:
        client.project(1)
    assert (limited.value.status, limited.value.retry_after, str(limited.value)) == (429, 7.0, "slow down")
    with pytest.raises(ServerError) as failed:
        client.project(2)
    assert (failed.value.title, failed.value.detail) == ("Service Unavailable", "no database")
    with pytest.raises(ValidationError) as invalid:
        client.project(3)
    assert invalid.value.errors == ["label_budget: too small", "strategy: unknown"]
    assert invalid.value.detail == "invalid request: a; b" and invalid.value.title == "Bad Request"
    with pytest.raises(Conflict, match="someone else"):
        client.project(4)


def test_errors_are_the_exception_of_their_status_with_the_servers_message(manager, annotator):
    with pytest.raises(ValidationError) as invalid:
        manager.create_project("Bad", labels=["a"], label_budget=0)
    assert "label_budget" in invalid.value.detail and isinstance(invalid.value, ApiError)

    pid = manager.create_project("Errors", labels=["a"])["id"]
    with pytest.raises(NotFound) as missing:
        manager.project(pid + 1000)
    assert missing.value.status == 404 and str(missing.value)

    manager.add_member(pid, "annotator")
    with pytest.raises(PermissionDenied) as denied:
        annotator.stats(pid)
    assert denied.value.status == 403 and str(denied.value)

    with pytest.raises(ValidationError) as bad_file:
        manager.import_documents(pid, [{"id": "x", "text": "t", "labels": ["unknown"]}, {"id": "y"}])
    assert bad_file.value.detail and bad_file.value.errors  # every bad record named
    assert manager.stats(pid)["budget"]["spent"] == 0  # all or nothing

    with pytest.raises(ValidationError, match=r"confirm|name"):
        manager.delete_project(pid, confirm="not its name")


def test_projects_members_labels_webhooks_and_archive(manager, annotator):
    project = manager.create_project("Life", labels=["joy", "anger"], label_budget=50, retrain_every=5)
    pid = project["id"]
    assert (project["label_budget"], project["retrain_every"]) == (50, 5)
    assert manager.update_project(pid, name="Life 2", strategy="random")["strategy"] == "random"
    assert manager.project(pid)["name"] == "Life 2"

    assert manager.add_member(pid, "annotator", role="reviewer")["role"] == "reviewer"
    assert {m["username"]: m["role"] for m in manager.members(pid)} == {"manager": "manager", "annotator": "reviewer"}
    manager.remove_member(pid, "annotator")
    with pytest.raises(NotFound):
        annotator.project(pid)

    assert [x["name"] for x in manager.add_labels(pid, ["fear"])] == ["fear"]
    result = manager.import_labels(pid, [{"name": "sadness", "alt_names": ["sorrow"], "external_id": "S1"}])
    assert result["created"] == 1
    assert [h["name"] for h in manager.labels(pid, "sorrow")] == ["sadness"]

    hook = manager.create_webhook(pid, "https://example.org/hook", ["model.published"])
    assert [h["id"] for h in manager.webhooks(pid)] == [hook["id"]]
    delivery = manager.test_webhook(pid, hook["id"])
    assert delivery["event"] == "ping"
    assert [d["id"] for d in manager.webhook_deliveries(pid, hook["id"])] == [delivery["id"]]
    manager.delete_webhook(pid, hook["id"])
    assert list(manager.webhooks(pid)) == []

    assert manager.archive_project(pid)["archived_at"] is not None
    assert manager.next(pid) is None and manager.last_reason == "archived"
    assert manager.restore_project(pid)["archived_at"] is None
    manager.delete_project(pid, confirm="Life 2")
    with pytest.raises(NotFound):
        manager.project(pid)


def test_next_answer_skip_until_the_budget_is_spent(manager, annotator):
    pid = manager.create_project("Loop", labels=LABELS, label_budget=3, retrain_every=1000)["id"]
    manager.add_member(pid, "annotator")
    sample = {r["id"]: r for r in goemotions(8, start=200)}
    manager.import_documents(pid, [{"id": r["id"], "text": r["text"]} for r in sample.values()])

    served = annotator.next(pid)
    assert served is not None and served["document"]["external_id"] in sample
    assert annotator.next(pid)["document"]["id"] == served["document"]["id"]  # the lease is renewed, not replaced
    annotator.skip(pid, served["document"]["id"])
    answered = []
    while (item := annotator.next(pid)) is not None:
        document = item["document"]
        assert document["id"] != served["document"]["id"]  # a skipped document is not served again
        answer = annotator.answer(pid, document["id"], sample[document["external_id"]]["labels"], seconds_spent=1.5)
        assert answer["labels"] == sorted(sample[document["external_id"]]["labels"])
        answered.append(document["external_id"])
    assert len(answered) == 3 and annotator.last_reason == "budget"
    stats = manager.stats(pid)
    assert stats["budget"]["spent"] == 3 and stats["budget"]["remaining"] == 0


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _csv_text(text: str) -> str:
    return text[1:] if text.startswith("'") else text  # the export's guard against CSV injection


def test_export_each_format_to_disk_and_read_it_back(manager, tmp_path):
    pid = manager.create_project("Export", labels=LABELS)["id"]
    sample = goemotions(25, start=300)
    labelled, unlabelled = sample[:20], sample[20:]
    manager.import_documents(pid, labelled)
    manager.import_documents(pid, [{"id": r["id"], "text": r["text"]} for r in unlabelled])
    expected = _as_imported(labelled)

    jsonl = manager.export(pid, tmp_path / "out.jsonl")
    assert {r["id"]: (r["text"], sorted(r["labels"])) for r in _rows(jsonl)} == expected

    with_unlabelled = manager.export(pid, tmp_path / "all.jsonl", include_unlabelled=True)
    rows = {r["id"]: r["labels"] for r in _rows(with_unlabelled)}
    assert set(rows) == {r["id"] for r in sample} and all(rows[r["id"]] is None for r in unlabelled)

    with open(manager.export(pid, tmp_path / "out.csv", format="csv"), encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    got = {row["id"]: (_csv_text(row["text"]), sorted(row["labels"].split("|"))) for row in table}
    assert got == expected

    multi = manager.export(pid, tmp_path / "hot.csv", format="csv", multi_hot=True)
    with open(multi, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        assert header[:2] == ["id", "text"]
        got = {
            row[0]: (_csv_text(row[1]), sorted(n for n, v in zip(header[2:], row[2:], strict=True) if v == "1"))
            for row in reader
        }
    assert got == expected

    tasks = json.loads(manager.export(pid, tmp_path / "ls.json", format="labelstudio").read_text(encoding="utf-8"))
    got = {
        t["data"]["id"]: (t["data"]["text"], sorted(t["annotations"][-1]["result"][0]["value"]["choices"]))
        for t in tasks
    }
    assert got == expected

    table = pq.read_table(manager.export(pid, tmp_path / "out.parquet", format="parquet")).to_pylist()
    assert {r["id"]: (r["text"], sorted(r["labels"])) for r in table} == expected

    with pytest.raises(ClientError, match="exists"):
        manager.export(pid, tmp_path / "out.jsonl")
    assert manager.export(pid, tmp_path / "out.jsonl", overwrite=True).stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "all.jsonl",
        "hot.csv",
        "ls.json",
        "out.csv",
        "out.jsonl",
        "out.parquet",
    ]  # no partial files left behind
    with pytest.raises(ValidationError, match="multi_hot"):
        manager.export(pid, tmp_path / "x.jsonl", multi_hot=True)
    assert not (tmp_path / "x.jsonl").exists()


def test_wait_job_raises_job_failed_for_a_cancelled_job(manager: Client, connect: Callable[..., Client]) -> None:
    from alabel_client import JobFailed

    pid = manager.create_project("Cancel", labels=LABELS, retrain_every=1000)["id"]
    manager.import_documents(pid, goemotions(30, start=400))
    job = manager.train(pid, mode="full")
    assert job["status"] in {"PENDING", "RUNNING"}
    manager.cancel_job(pid, job["id"])
    with pytest.raises(JobFailed) as failed:
        manager.wait_job(pid, job["id"], progress=False, interval=0.1, timeout=30)
    assert failed.value.job["status"] == "CANCELLED"
    assert job["id"] in [j["id"] for j in manager.jobs(pid)]
