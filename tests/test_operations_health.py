"""Health and metrics: readiness names each dependency, answers within its timeout even when
one hangs or is down; liveness needs nothing; /metrics exposes what operators watch."""

import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings
from django.test import override_settings

from tests.ingest_helpers import client_for, drain_everything, make_span, new_org, post_spans

pytestmark = pytest.mark.django_db(transaction=True)
CHECKS = {"Database(alias='default')", "ClickHouse()", "Kafka()", "Redis()", "CeleryWorkers()",
          "DiskSpace()"}


@pytest.fixture
def worker(subprocess_env):
    """A real Celery worker on every queue, as readiness expects one."""
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-Q",
         "ingest,evaluation,costs,operations", "-P", "threads", "-c", "2", "--hostname",
         f"health-{uuid.uuid4().hex[:6]}@test", "--without-gossip", "--without-mingle",
         "--loglevel", "WARNING"],
        cwd=settings.BASE_DIR, env=subprocess_env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from celery_app import app

    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5) and time.monotonic() < deadline:
        time.sleep(0.5)
    yield process
    process.terminate()
    process.wait(timeout=30)


def health(client) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = client.get("/health/?format=json")
    return response.status_code, response.json(), time.monotonic() - started


def test_everything_up_is_200_and_liveness_needs_no_dependency(client, worker):
    status, checks, _ = health(client)
    assert (status, set(checks)) == (200, CHECKS), checks
    assert all(value == "OK" for value in checks.values())
    with override_settings(CLICKHOUSE_URL="http://default:@127.0.0.1:9/x",
                           KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9"):
        live = client.get("/health/live")
    assert live.status_code == 200 and live.content == b"ok\n"


def test_no_worker_is_reported(client):
    status, checks, _ = health(client)
    assert status == 500
    assert checks["CeleryWorkers()"].startswith("Unavailable")
    assert checks["ClickHouse()"] == "OK"


def test_a_hanging_clickhouse_is_reported_down_within_the_timeout(client, worker, black_hole):
    with override_settings(CLICKHOUSE_URL=f"http://default:@127.0.0.1:{black_hole}/x"):
        status, checks, took = health(client)
    assert status == 500
    assert checks["ClickHouse()"].startswith("Unavailable")
    assert {name for name, value in checks.items() if value == "OK"} == CHECKS - {"ClickHouse()"}
    assert took < settings.HEALTH_CHECK_TIMEOUT_S + 2


@pytest.mark.slow
def test_with_kafka_stopped_only_kafka_is_down(client, worker):
    services = [sys.executable, "scripts/services.py"]
    subprocess.run([*services, "down", "kafka"], cwd=settings.BASE_DIR, check=True)
    try:
        status, checks, took = health(client)
    finally:
        subprocess.run([*services, "up", "kafka"], cwd=settings.BASE_DIR, check=True)
    assert status == 500
    assert checks["Kafka()"].startswith("Unavailable"), checks
    assert {name for name, value in checks.items() if value == "OK"} == CHECKS - {"Kafka()"}
    assert took < settings.HEALTH_CHECK_TIMEOUT_S + 2


def test_metrics_expose_ingestion_drains_lag_and_the_degradation_level(client):
    drain_everything()
    org, key = new_org()
    # The counters are the process's, bumped by every earlier test: each check is the change
    # this test caused, read before and after.
    start = client.get("/metrics").content.decode()
    good, bad = make_span("metrics", 0), make_span("metrics", 1, name=None)
    assert post_spans(client_for(key), [good, bad]).status_code == 207
    before = client.get("/metrics").content.decode()
    assert 'llmops_partition_lag{partition="0"}' in before
    assert "llmops_degradation_level 0.0" in before
    assert 'llmops_breaker_state{breaker="llm_evaluation"} 0.0' in before
    assert "llmops_evaluation_queue_depth 0.0" in before
    drain_everything()
    text = client.get("/metrics").content.decode()
    assert change(start, text, "llmops_spans_accepted_total") == 1
    assert change(start, text, "llmops_spans_rejected_total") == 1
    # One span on one partition: one batch, one insert.
    assert change(start, text, "llmops_drain_batch_spans_count") == 1
    assert change(start, text, "llmops_drain_batch_spans_sum") == 1
    assert change(start, text, "llmops_drain_insert_seconds_count") == 1
    client_for(key).get("/api/v1/traces")
    client_for(key).get("/api/v1/traces")
    after = client.get("/metrics").content.decode()
    assert change(text, after, 'llmops_cache_lookups_total{cache="traces",result="miss"}') == 1
    assert change(text, after, 'llmops_cache_lookups_total{cache="traces",result="l2"}') == 1
    assert sum(sample(after, f'llmops_partition_lag{{partition="{p}"}}')
               for p in range(settings.KAFKA_SPANS_PARTITIONS)) == 0


def change(before: str, after: str, name: str) -> float:
    """How much a counter moved between two scrapes (absent: not counted yet, 0)."""
    def value(text: str) -> float:
        try:
            return sample(text, name)
        except AssertionError:
            return 0.0
    return value(after) - value(before)


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")
