"""Drains run by real Celery workers: scheduled per partition, and a dead worker's
partitions passing to another worker with nothing lost or doubled."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings

from ingestion.services.partitions import partition_lags
from tests.ingest_helpers import (
    client_for,
    count_rows,
    drain_everything,
    make_span,
    new_org,
    post_spans,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def start_worker(name: str, subprocess_env: dict) -> subprocess.Popen:
    # The test database too: drains read prices from it. Small batches: a partition takes
    # several, so a worker killed after its first insert has more to do.
    env = {**subprocess_env, "DRAIN_LEASE_TTL_S": "2", "DRAIN_BATCH_SIZE": "250"}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-Q", "ingest",
         "-P", "threads", "-c", str(settings.KAFKA_SPANS_PARTITIONS), "--hostname",
         f"{name}-{uuid.uuid4().hex[:6]}@test", "--without-gossip", "--without-mingle",
         "--loglevel", "WARNING"],
        cwd=settings.BASE_DIR, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stop(worker: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, sig)
    worker.wait(timeout=30)


def schedule() -> list[int]:
    from celery_app import app  # noqa: F401  (binds the tasks to the configured app)
    from ingestion.services.schedule import schedule_drains
    from ingestion.tasks import drain_partition

    return schedule_drains(enqueue=drain_partition.delay)


def wait_for_rows(org_id: int, expected: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if count_rows(org_id) >= expected:
            break
        schedule()
        time.sleep(0.5)
    return count_rows(org_id)


def send(key: str, count: int) -> int:
    client = client_for(key)
    spans = [make_span(f"w-{uuid.uuid4().hex[:10]}", i % 10) for i in range(count)]
    for start in range(0, count, 1000):
        assert post_spans(client, spans[start:start + 1000]).status_code == 202
    return count


def test_scheduled_drains_on_a_real_worker_store_every_span(subprocess_env):
    drain_everything()
    org, key = new_org()
    worker = start_worker("ingest", subprocess_env)
    try:
        sent = send(key, 3000)
        assert schedule(), "partitions with lag must get a drain queued"
        assert wait_for_rows(org.id, sent, timeout_s=60) == sent
    finally:
        stop(worker)
    assert count_rows(org.id) == sent


def test_a_killed_worker_s_partitions_pass_to_another_worker(subprocess_env):
    drain_everything()
    org, key = new_org()
    sent = send(key, 20_000)
    first = start_worker("doomed", subprocess_env)
    try:
        schedule()
        deadline = time.monotonic() + 60
        while count_rows(org.id) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count_rows(org.id) > 0, "the first worker stored nothing"
    finally:
        stop(first, signal.SIGKILL)
    assert count_rows(org.id) < sent, "the worker finished before it could be killed"

    second = start_worker("heir", subprocess_env)
    try:
        stored = wait_for_rows(org.id, sent, timeout_s=90)
    finally:
        stop(second)
    assert stored == sent  # nothing lost, nothing doubled
    assert count_rows(org.id, final=True) == sent
    assert all(lag.lag == 0 for lag in partition_lags())
