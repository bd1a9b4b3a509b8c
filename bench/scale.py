"""Scale-out benchmark: the drain throughput of 1 and of 2 ingest worker processes over the
same backlog in Kafka, and the ratio.

Only public entry points: the backlog goes in through the API (so it has whatever Kafka
message format the API writes), the workers are the processes `make run` starts
(bench.ingest.start_ingest_worker), drains are scheduled by the task beat sends, and the
result is read from Kafka's lag and the rows in ClickHouse. On this 2-core machine ClickHouse,
Kafka and the workers share the cores: a second worker process can only use what the first
leaves idle (its GIL-bound Python, waits on Kafka and inserts), so the ratio here is a floor
for a second worker on a node of its own.
"""

import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psutil
from django.conf import settings

from bench.env import ROOT
from bench.ingest import (
    SPANS_PER_REQUEST,
    bench_org,
    post,
    request_body,
    start_api,
    start_ingest_worker,
    stop,
    stored_count,
)
from ingestion.services.partitions import partition_lags, skip_to_end

SPANS = int(os.environ.get("BENCH_SCALE_SPANS", 100_000))
WORKER_COUNTS = (1, 2)
# A drain task keeps its partition until its budget is spent (30 s by default), and Celery
# hands each queued drain to whichever worker takes it first: with the default a backlog's
# 12 drains can all land on one worker. Shorter drains, rescheduled sooner than beat's 2 s,
# put every partition up for grabs every few seconds, in both runs alike. Not much shorter:
# a drain whose budget ends inside a batch leaves it to be read and inserted again (with a
# 5 s budget, 200 of 230 drains did so on this machine at load average 29).
DRAIN_BUDGET_S = os.environ.get("BENCH_SCALE_DRAIN_BUDGET_S", "10")
SCHEDULE_S = float(os.environ.get("BENCH_SCALE_SCHEDULE_S", 0.5))


def lag() -> int:
    return sum(lag.lag for lag in partition_lags())


def fill_backlog(key: str, run: str, count: int) -> None:
    """`count` spans into Kafka through the API, with no worker running to drain them."""
    skip_to_end()
    api = start_api(workers=2)
    try:
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda n: post(key, request_body(run, n)),
                                     range(count // SPANS_PER_REQUEST)))
    finally:
        stop(api)
    refused = len(statuses) - statuses.count(202)
    assert not refused, f"the API refused {refused} of {len(statuses)} backlog requests"
    # Kafka's lag counts messages, and a message holds a trace's spans of one request, so
    # the check is that all of it waits in Kafka and none is stored yet.
    assert lag() and not stored_count(run), f"lag {lag()} messages, {stored_count(run)} stored"


def cpu_seconds(process) -> float:
    """User and system CPU of a worker process and its children (llmops.supervise, celery)."""
    try:
        tree = psutil.Process(process.pid)
        members = [tree, *tree.children(recursive=True)]
        return sum(sum(member.cpu_times()[:2]) for member in members)
    except psutil.NoSuchProcess:
        return 0.0


def drain_with(workers: int, key: str) -> dict:
    """Fill a backlog, then time `workers` worker processes draining it to the last row."""
    from celery_app import app

    run = f"scale{workers}-{uuid.uuid4().hex[:6]}"
    fill_backlog(key, run, SPANS)
    names = [f"scale{workers}-{n}-{uuid.uuid4().hex[:4]}" for n in range(workers)]
    hosts = [f"{name}@{socket.gethostname()}" for name in names]
    processes = [start_ingest_worker(name) for name in names]
    try:
        # The clock starts once every worker answers: their start-up is not drain time.
        deadline = time.monotonic() + 120
        while len(app.control.ping(destination=hosts, timeout=1.0)) < workers:
            assert time.monotonic() < deadline, "the workers did not start; var/log/scale*"
        before = stored_count(run)
        cpu_before = sum(cpu_seconds(process) for process in processes)
        started = time.monotonic()
        next_schedule = started
        while (stored := stored_count(run)) < SPANS or lag():
            assert time.monotonic() - started < 600, f"stored {stored} of {SPANS} in 600 s"
            if time.monotonic() >= next_schedule:  # as beat does
                app.send_task("ingestion.schedule_drains")
                next_schedule += SCHEDULE_S
            time.sleep(0.2)
        seconds = time.monotonic() - started
        cpu = sum(cpu_seconds(process) for process in processes) - cpu_before
        stats = app.control.inspect(destination=hosts, timeout=2.0).stats() or {}
        drains = [stats.get(host, {}).get("total", {}).get("ingestion.drain_partition", 0)
                  for host in hosts]
    finally:
        for process in processes:
            stop(process)
    assert stored == SPANS, f"stored {stored} rows of {SPANS}"
    return {"workers": workers, "spans": SPANS - before, "seconds": seconds,
            "rate": (SPANS - before) / seconds, "cpu_us_per_span": cpu / (SPANS - before) * 1e6,
            "drains": drains}


def run() -> None:
    (ROOT / "var" / "log").mkdir(parents=True, exist_ok=True)
    os.environ["DRAIN_TASK_BUDGET_S"] = DRAIN_BUDGET_S  # the workers' environment
    key = bench_org()
    print(f"Drain scale-out: {SPANS:,} spans put in Kafka through the API "
          f"({settings.KAFKA_SPANS_PARTITIONS} partitions), then drained by 1 and by 2 ingest "
          f"worker processes ({settings.KAFKA_SPANS_PARTITIONS} threads each; drains of "
          f"{DRAIN_BUDGET_S}s scheduled every {SCHEDULE_S}s); ClickHouse, Kafka and the "
          f"workers share this machine's {os.cpu_count()} cores")
    results = [drain_with(workers, key) for workers in WORKER_COUNTS]
    for result in results:
        print(f"  {result['workers']} worker process(es): {result['spans']:,} spans in "
              f"{result['seconds']:.1f}s = {result['rate']:,.0f} spans/s; workers' CPU "
              f"{result['cpu_us_per_span']:.0f} us/span; drain tasks per worker "
              f"{result['drains']}")
    one, two = results
    print(f"  scaling ratio, 2 workers / 1 worker: {two['rate'] / one['rate']:.2f}x")
