"""Locust users for bench/bench_load.py: each one is an annotator who asks for the next document and answers it with
its gold labels, over the real HTTP stack (gunicorn). Not run on its own: bench_load.py writes the setup file
(LOAD_SETUP: the host, the project, one API token per annotator, the gold labels) and starts Locust headless.

Request names in the statistics: "next" (a document served, 200), "next: nothing to serve" (204: the budget or
every document is taken), "submit" (201). A 5xx, a lost connection or an unexpected status is a failure.
"""

from __future__ import annotations

import itertools
import json
import os
import time

from locust import HttpUser, between, events, task
from locust.exception import StopUser

SETUP = json.loads(open(os.environ["LOAD_SETUP"], encoding="utf-8").read())  # noqa: SIM115 - read once at import
TOKENS = itertools.cycle(SETUP["tokens"])
COUNTS = {"submitted": 0, "refused": 0, "server_errors": 0}
# Every request as (seconds since the first one started, name, milliseconds): exact percentiles (Locust's CSV rounds
# them to two digits) over the whole run and over any stretch of it.
REQUESTS: list[tuple[float, str, float]] = []


@events.request.add_listener
def _record(request_type, name, response_time, **_kwargs) -> None:
    REQUESTS.append((time.time() - response_time / 1000, name, response_time))


@events.quitting.add_listener
def _write_counts(environment, **_kwargs) -> None:
    first = min((started for started, _, _ in REQUESTS), default=0.0)
    requests = [(round(started - first, 3), name, round(ms, 2)) for started, name, ms in REQUESTS]
    with open(SETUP["counts_path"], "w", encoding="utf-8") as handle:
        json.dump({**COUNTS, "requests": requests}, handle)


class Annotator(HttpUser):
    # Experts do not think in lockstep: uniform between half and one and a half times --think.
    wait_time = between(0.5 * SETUP["think_seconds"], 1.5 * SETUP["think_seconds"])

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Token {next(TOKENS)}"
        self.base = f"/api/v1/projects/{SETUP['project_id']}"

    @task
    def next_and_submit(self) -> None:
        with self.client.get(f"{self.base}/next/", name="next", catch_response=True) as served:
            if served.status_code == 204:
                served.request_meta["name"] = "next: nothing to serve"
                served.success()
                raise StopUser()  # the budget is spent: this annotator is done
            if served.status_code != 200:
                COUNTS["server_errors"] += served.status_code >= 500
                served.failure(f"next answered {served.status_code}")
                return
            document = served.json()["document"]["id"]
        labels = SETUP["gold"].get(str(document), [])
        with self.client.post(
            f"{self.base}/annotations/",
            json={"document": document, "labels": labels},
            name="submit",
            catch_response=True,
        ) as answer:
            if answer.status_code == 201:
                COUNTS["submitted"] += 1
            elif answer.status_code == 409:  # refused by a rule (budget, someone else's lease): counted, not a failure
                COUNTS["refused"] += 1
                answer.success()
            else:
                COUNTS["server_errors"] += answer.status_code >= 500
                answer.failure(f"submit answered {answer.status_code}")
