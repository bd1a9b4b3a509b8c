"""A fleet of ingest workers: worker processes started as `make run` and the benchmarks start
them (bench.ingest.start_ingest_worker) share the spans topic's partitions through the
drain leases. Under a steady load one worker runs, a second joins, then the first is
SIGKILLed: every acknowledged span is stored exactly once, and both workers drained (Celery's
own per-worker task counts, what `celery -A celery_app inspect stats` shows an operator)."""

import os
import signal
import socket
import time
import uuid

import pytest
from django.db import connections

from bench.ingest import start_beat, start_ingest_worker, stop
from celery_app import app
from ingestion.services.partitions import partition_lags
from llmops.clickhouse import get_client
from tests.ingest_helpers import (
    client_for,
    count_rows,
    drain_everything,
    make_span,
    new_org,
    post_spans,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

RATE = 400  # spans/s, in requests of 100
MIN_LOAD_S = 15
MAX_LOAD_S = 45
# Drains end every 5 s under load (not the 30 s default) so a worker that joins gets
# partitions within the test; a SIGKILLed worker's leases pass on after 5 s. Not shorter:
# the lease is renewed between batches, and on this shared machine one batch (insert and
# commit) can take seconds; a lease that expires inside every batch stops the partition.
WORKER_ENV = {"DRAIN_TASK_BUDGET_S": "5", "DRAIN_LEASE_TTL_S": "5"}


def drains_by(names: list[str]) -> dict[str, int]:
    """Drain tasks each named worker has run, from the workers themselves."""
    hosts = [f"{name}@{socket.gethostname()}" for name in names]
    stats = app.control.inspect(destination=hosts, timeout=1.0).stats() or {}
    return {name: stats.get(host, {}).get("total", {}).get("ingestion.drain_partition", 0)
            for name, host in zip(names, hosts, strict=True)}


def test_workers_join_and_leave_under_load_with_nothing_lost(subprocess_env, monkeypatch):
    # bench.ingest starts its processes with this process's environment: the test stores.
    for name, value in {**subprocess_env, **WORKER_ENV}.items():
        monkeypatch.setenv(name, value)
    drain_everything()
    org, key = new_org(ingest_rate_limit=10**6)
    client = client_for(key)
    run = f"fleet-{uuid.uuid4().hex[:8]}"
    first, second = "fleet-a", "fleet-b"  # logs in var/log/fleet-a-worker.log, ...
    acknowledged = requests = 0
    seen: dict[str, int] = {}
    marks: dict[str, float] = {}
    beat = start_beat("fleet")
    workers = {first: start_ingest_worker(first)}
    started = time.monotonic()
    killed_at = None
    try:
        next_at = next_check = started
        while True:
            now = time.monotonic()
            if now - started > MAX_LOAD_S or (killed_at and now - started > MIN_LOAD_S
                                              and now - killed_at > 3):
                break
            time.sleep(max(0.0, next_at - now))
            next_at += 100 / RATE
            spans = [make_span(f"{run}-r{requests}", i) for i in range(100)]
            requests += 1
            if post_spans(client, spans).status_code == 202:
                acknowledged += len(spans)
            if time.monotonic() < next_check or killed_at:
                continue
            next_check = time.monotonic() + 1.0
            if second not in workers:
                if count_rows(org.id):  # the first worker drains: a second one joins
                    workers[second] = start_ingest_worker(second)
                    marks["second started"] = time.monotonic() - started
            elif all((seen := drains_by([first, second])).values()):
                # Both drained partitions: the first leaves without a goodbye.
                os.killpg(workers[first].pid, signal.SIGKILL)
                workers[first].wait(timeout=10)
                killed_at = time.monotonic()
                marks["first killed"] = killed_at - started
        assert killed_at, f"the second worker drained nothing in {MAX_LOAD_S}s: {seen}"
        marks["load ended"] = time.monotonic() - started

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                count_rows(org.id, final=True) >= acknowledged
                and all(lag.lag == 0 and not lag.in_flight for lag in partition_lags())):
            time.sleep(0.5)
        left = drains_by([second])
        marks["all stored"] = time.monotonic() - started
    finally:
        for process in (*workers.values(), beat):
            if process.poll() is None:
                stop(process)
        connections.close_all()

    print(f"\nfleet: {requests} requests, {acknowledged} spans acknowledged, "
          f"{count_rows(org.id, final=True)} stored (FINAL), {count_rows(org.id)} rows; "
          f"drains before the kill {seen}, by the survivor in all {left}; "
          f"seconds: {', '.join(f'{k} {v:.1f}' for k, v in marks.items())}")
    assert acknowledged == requests * 100
    distinct = get_client().command(
        "SELECT uniqExact(span_id) FROM spans WHERE org_id = {o:UInt64}", parameters={"o": org.id})
    assert count_rows(org.id, final=True) == distinct == acknowledged  # exactly once in FINAL
    assert [lag for lag in partition_lags() if lag.lag or lag.in_flight] == []  # all committed
