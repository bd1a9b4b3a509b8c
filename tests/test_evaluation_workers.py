"""Evaluations run by two real Celery workers: the provider's rate limit holds across the
processes (measured on the fake provider's log), and the built-in scorers' throughput."""

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from llmops.clickhouse import get_client
from tests.eval_helpers import ingest, new_config
from tests.ingest_helpers import make_span, new_org

pytest_plugins = ["tests.eval_fixtures"]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def start_worker(name: str, log: Path, **env) -> subprocess.Popen:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "llmops.settings.test",
                   # The worker must see this test's rows: they live in the test database.
                   "TEST_DATABASE_URL": test_database_url(),
                   **{key: str(value) for key, value in env.items()}}
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-Q", "evaluation",
             "-P", "threads", "-c", "4", "--hostname", f"{name}-{uuid.uuid4().hex[:6]}@test",
             "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            cwd=settings.BASE_DIR, env=environment, start_new_session=True,
            stdout=output, stderr=subprocess.STDOUT,
        )


def stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def score_count(org_id: int) -> int:
    return get_client().command("SELECT count() FROM scores FINAL WHERE org_id = {o:UInt64}",
                                parameters={"o": org_id})


def wait_for_scores(org_id: int, expected: int, timeout_s: float) -> float:
    """Seconds until `expected` scores are stored."""
    started = time.monotonic()
    while score_count(org_id) < expected:
        assert time.monotonic() - started < timeout_s, \
            f"{score_count(org_id)} of {expected} scores after {timeout_s}s"
        time.sleep(0.2)
    return time.monotonic() - started


def tasks_done(log: Path) -> int:
    return len(re.findall(r"Task evaluation\.evaluate\[[^]]+\] succeeded", log.read_text()))


def test_the_provider_rate_limit_holds_across_two_worker_processes(provider, tmp_path):
    rate = 5.0
    provider.configure(latency_s=0.05)
    org, key = new_org()
    new_config(org, "llm_judge")
    env = {"LLM_JUDGE_BASE_URL": provider.url, "LLM_PROVIDER_RATE_PER_S": rate,
           "EVALUATION_RATE_BURST_S": 0.2,  # one token: no burst, so every second counts
           "LLM_ORG_RATE_PER_S": 1000}
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [start_worker(f"eval{n}", log, **env) for n, log in enumerate(logs, 1)]
    try:
        ingest(key, [make_span(f"rate-{i}", 0) for i in range(40)])
        wait_for_scores(org.id, 40, timeout_s=90)
    finally:
        for worker in workers:
            stop(worker)

    times = sorted(call.at for call in provider.calls("/chat/completions"))
    assert len(times) == 40
    measured = (len(times) - 1) / (times[-1] - times[0])
    busiest = max(sum(1 for t in times if start <= t < start + 1) for start in times)
    print(f"\nprovider calls: {measured:.2f}/s (setting {rate:g}/s), "
          f"busiest second {busiest}; tasks per worker {[tasks_done(log) for log in logs]}")
    # 8 threads against a 50 ms provider could make 160 calls/s: only the shared buckets
    # hold them to the setting. The busiest second reaching it shows the limit was what
    # held them back (not idle workers).
    assert measured <= rate * 1.05
    assert rate - 1 <= busiest <= rate + 1
    assert all(tasks_done(log) > 0 for log in logs), "both workers must have taken tasks"


def wait_until_ready(logs: list[Path], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(log.exists() and " ready." in log.read_text() for log in logs):
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.05)


def test_built_in_scorers_throughput_on_two_workers(provider, tmp_path):
    org, key = new_org()
    new_config(org, "json_valid")
    new_config(org, "regex", pattern=r"answer \d+")
    # Queued first, so the workers' time is all evaluation.
    ingest(key, [make_span(f"bulk-{i // 10}", i % 10) for i in range(5000)])
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [start_worker(f"builtin{n}", log) for n, log in enumerate(logs, 1)]
    try:
        wait_until_ready(logs)
        seconds = wait_for_scores(org.id, 10_000, timeout_s=120)
    finally:
        for worker in workers:
            stop(worker)
    print(f"\nbuilt-in scorers on two workers (4 threads each): 10,000 evaluations stored "
          f"in {seconds:.1f} s ({10_000 / seconds:,.0f}/s)")
    statuses = get_client().query(
        "SELECT status, count() FROM scores FINAL WHERE org_id = {o:UInt64} GROUP BY status",
        parameters={"o": org.id}).result_rows
    assert statuses == [("ok", 10_000)]
