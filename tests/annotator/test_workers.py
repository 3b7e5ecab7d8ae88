"""Tests of annotator.services.workers (workers' signs of life) and what /healthz reads of them."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from annotator.models import WorkerHeartbeat
from annotator.services.workers import worker_heartbeat, worker_stopped

from .conftest import make_user


def test_healthz_counts_live_workers_per_queue(client, db, settings):
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="gpu@a", queues="gpu", device="cuda", started_at=now, seen_at=now)
    WorkerHeartbeat.objects.create(hostname="default@b", queues="default", started_at=now, seen_at=now)
    WorkerHeartbeat.objects.create(
        hostname="default@gone", queues="default", started_at=now, seen_at=now - timedelta(minutes=10)
    )
    WorkerHeartbeat.objects.create(
        hostname="default@stopped", queues="default", started_at=now, seen_at=now, stopped_at=now
    )
    body = client.get("/healthz").json()
    assert body["workers"]["queues"] == {"default": {"alive": 1}, "gpu": {"alive": 1}}
    assert "workers" not in body["workers"]  # host names are for staff only
    WorkerHeartbeat.objects.filter(hostname="gpu@a").update(seen_at=now - timedelta(minutes=10))
    body = client.get("/healthz").json()
    assert body["workers"]["queues"]["gpu"] == {"alive": 0}
    if body["broker"] == "ok":
        assert body["status"] == "degraded"
    staff = make_user("root")
    staff.is_staff = True
    staff.save()
    client.force_login(staff)
    assert [w["hostname"] for w in client.get("/healthz").json()["workers"]["workers"]] == ["default@b"]


def test_a_worker_is_alive_from_its_first_heartbeat_until_it_stops(client, db):
    worker_heartbeat(hostname="gpu@host", queues="gpu", device="cuda", started=True)
    started = WorkerHeartbeat.objects.get(hostname="gpu@host")
    assert (started.queues, started.device, started.stopped_at) == ("gpu", "cuda", None)
    assert client.get("/healthz").json()["workers"]["queues"]["gpu"] == {"alive": 1}
    worker_heartbeat(hostname="gpu@host", queues="gpu", device="cuda")
    beat = WorkerHeartbeat.objects.get(hostname="gpu@host")
    assert beat.started_at == started.started_at and beat.seen_at >= started.seen_at  # one row, started once
    worker_stopped(hostname="gpu@host")
    assert client.get("/healthz").json()["workers"]["queues"]["gpu"] == {"alive": 0}
    worker_heartbeat(hostname="gpu@host", queues="gpu", device="cpu", started=True)  # restarted
    assert client.get("/healthz").json()["workers"]["queues"]["gpu"] == {"alive": 1}
    assert WorkerHeartbeat.objects.get(hostname="gpu@host").device == "cpu"
