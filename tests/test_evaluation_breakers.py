"""Circuit breakers: the design document's values; the fleet-wide sliding window over
pybreaker's shared state; open, half-open and closed again, driven through the real judge
path against the fake provider; the skipped evaluations logged and replayed."""

import os
import subprocess
import sys
import time

import pybreaker
import pytest
from django.conf import settings

from evaluation.services import retrylog
from evaluation.services.breakers import LLM_EVALUATION, BreakerOpen, get_breaker
from evaluation.services.replay import replay
from tests.eval_helpers import (
    drain_queue,
    ingest,
    new_config,
    retry_log_length,
    run_queued_evaluations,
    scores_of,
)
from tests.ingest_helpers import make_span, new_org

pytest_plugins = ["tests.eval_fixtures"]
pytestmark = pytest.mark.django_db(transaction=True)


def test_defaults_are_the_design_document_values():
    assert settings.LLM_EVAL_BREAKER == {
        "failure_threshold_percentage": 50, "slow_call_threshold_percentage": 80,
        "slow_call_duration_ms": 5000, "minimum_calls": 20, "sliding_window_size": 100,
        "wait_duration_in_open_state_ms": 30000, "permitted_calls_in_half_open_state": 10,
    }
    embedding = settings.EMBEDDING_BREAKER
    assert (embedding["failure_threshold_percentage"], embedding["slow_call_duration_ms"],
            embedding["wait_duration_in_open_state_ms"]) == (30, 500, 10000)
    assert settings.EMBEDDING_CACHE_STALE_MS == 3_600_000
    assert settings.EXTERNAL_API_RETRY == {
        "max_attempts": 3, "initial_backoff_ms": 1000, "max_backoff_ms": 30000,
        "backoff_multiplier": 2.0, "jitter_factor": 0.2,
    }
    assert settings.EXTERNAL_API_TIMEOUT_MS == 30000


def record(breaker, outcomes: str) -> None:
    """Closed-state outcomes: s ok, f failed, S slow, F slow and failed (against 5 s)."""
    for code in outcomes:
        seconds = 5.001 if code in "SF" else 5.0  # "over 5 s": exactly 5 s is not slow
        breaker.record(breaker.permit(), failed=code in "fF", seconds=seconds)


def test_failures_open_it_only_from_the_minimum_calls_on(provider):
    breaker = get_breaker(LLM_EVALUATION)
    record(breaker, "f" * 19)
    assert breaker.state == pybreaker.STATE_CLOSED  # 100 % failed, but 19 < 20 calls
    record(breaker, "f")
    assert breaker.state == pybreaker.STATE_OPEN
    with pytest.raises(BreakerOpen):
        breaker.permit()


def test_the_window_is_the_last_hundred_calls(provider):
    breaker = get_breaker(LLM_EVALUATION)
    record(breaker, "s" * 60 + "f" * 40)  # 40 %
    assert breaker.state == pybreaker.STATE_CLOSED
    record(breaker, "s" * 100)  # the 40 failures slide out
    assert breaker.window() == ["s"] * 100
    record(breaker, "f" * 49)  # 49 % of the last 100
    assert breaker.state == pybreaker.STATE_CLOSED
    record(breaker, "f")  # 50 %
    assert breaker.state == pybreaker.STATE_OPEN


def test_slow_calls_open_it_at_eighty_percent(provider):
    breaker = get_breaker(LLM_EVALUATION)
    record(breaker, "S" * 15 + "s" * 5)  # 75 % slow
    record(breaker, "S" * 4)  # 19 of 24: 79 %
    assert breaker.state == pybreaker.STATE_CLOSED
    record(breaker, "S")  # 20 of 25: 80 %
    assert breaker.state == pybreaker.STATE_OPEN


def open_and_wait(breaker) -> None:
    record(breaker, "f" * 20)
    assert breaker.state == pybreaker.STATE_OPEN
    with pytest.raises(BreakerOpen):
        breaker.permit()
    while not breaker.open_period_over():
        time.sleep(0.05)


@pytest.mark.parametrize(("trials", "state"), [
    ("ssssssssss", pybreaker.STATE_CLOSED),
    ("ffffssssss", pybreaker.STATE_CLOSED),  # 40 % failed
    ("fffffsssss", pybreaker.STATE_OPEN),  # 50 % failed
    ("SSSSSSSSss", pybreaker.STATE_OPEN),  # 80 % slow
])
def test_half_open_lets_ten_trials_through_then_decides_on_them(provider, trials, state):
    breaker = get_breaker(LLM_EVALUATION)
    open_and_wait(breaker)
    tickets = [breaker.permit() for _ in range(10)]
    assert breaker.state == pybreaker.STATE_HALF_OPEN
    with pytest.raises(BreakerOpen):
        breaker.permit()  # the 11th: all trials are out
    for ticket, code in zip(tickets, trials, strict=True):
        assert breaker.state == pybreaker.STATE_HALF_OPEN  # undecided until all report
        breaker.record(ticket, failed=code in "fF", seconds=5.001 if code in "SF" else 0.1)
    assert breaker.state == state
    if state == pybreaker.STATE_OPEN:  # a new open period, in full
        with pytest.raises(BreakerOpen):
            breaker.permit()


def test_an_open_breaker_refuses_calls_in_every_process(provider):
    breaker = get_breaker(LLM_EVALUATION)
    record(breaker, "f" * 20)
    script = (
        "import django; django.setup()\n"
        "from evaluation.services import judge\n"
        "from evaluation.services.breakers import BreakerOpen\n"
        "try:\n"
        "    judge.judge(prompt='p', model='m', org_id=1)\n"
        "    print('called')\n"
        "except BreakerOpen as exc:\n"
        "    print('refused:', exc)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "llmops.settings.test",
           "LLM_JUDGE_BASE_URL": provider.url}
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=settings.BASE_DIR,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("refused:"), result.stderr[-2000:]
    assert provider.calls() == []


def statuses(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def test_at_sixty_percent_errors_it_opens_skips_logs_then_closes_and_replays(provider, settings):
    settings.LLM_EVAL_BREAKER = {**settings.LLM_EVAL_BREAKER,
                                 "wait_duration_in_open_state_ms": 6000}
    breaker = get_breaker(LLM_EVALUATION)
    provider.configure(error_rate=0.6)
    org, key = new_org()
    new_config(org, "llm_judge")
    ingest(key, [make_span("sixty", i) for i in range(30)])
    run_queued_evaluations()  # the drain's batch: split into 30 judge tasks

    # One evaluation at a time, so the order of calls is exact: the 20th call (12 of 20
    # failed) opens it.
    while breaker.state == pybreaker.STATE_CLOSED:
        assert run_queued_evaluations(limit=1) == 1
    opened_at = breaker.storage.opened_at.timestamp()
    assert len(provider.calls()) == 20
    # While open, the rest are skipped and logged, and not one call reaches the provider.
    drain_queue()
    assert time.time() < opened_at + 6, "too slow to check the open period; rerun"
    assert breaker.state == pybreaker.STATE_OPEN and len(provider.calls()) == 20
    rows = scores_of(org.id)
    counts = statuses(rows)
    assert len(rows) == 30 and counts["skipped"] >= 15
    assert all("logged for retry" in row["comment"] for row in rows if row["status"] != "ok")
    waiting = 30 - counts["ok"]
    assert retry_log_length() == waiting
    assert replay() == {}  # the open period is not over: nothing replayed
    assert len(provider.calls()) == 20

    provider.set(error_rate=0.0)  # the provider recovers
    while not breaker.open_period_over():
        time.sleep(0.1)
    assert time.time() >= opened_at + 6
    assert replay() == {LLM_EVALUATION: 10}  # just the half-open trials
    drain_queue()  # the trials close it; closing queues a replay of the rest, which runs

    assert breaker.state == pybreaker.STATE_CLOSED
    assert retry_log_length() == 0
    assert statuses(scores_of(org.id)) == {"ok": 30}
    calls = provider.calls()
    assert len(calls) == 20 + waiting  # each logged evaluation called once more
    assert all(call.at >= opened_at + 6 for call in calls[20:])


ADMITTED_S = 0.2


def test_slow_calls_open_it_too(provider, settings):
    settings.LLM_EVAL_BREAKER = {**settings.LLM_EVAL_BREAKER, "slow_call_duration_ms": 400,
                                 "minimum_calls": 10}
    breaker = get_breaker(LLM_EVALUATION)
    org, key = new_org()
    new_config(org, "llm_judge")

    # 7 calls in 10 over the threshold: 70 % slow, the breaker stays closed.
    provider.configure(latency_s=0.8, slow_fraction=0.7)
    ingest(key, [make_span("slow-70", i) for i in range(10)])
    run_queued_evaluations()
    drain_queue(threads=5)
    assert breaker.state == pybreaker.STATE_CLOSED
    assert statuses(scores_of(org.id, trace_id="slow-70")) == {"ok": 10}

    # Every call slow, though every one succeeds: open after the minimum calls.
    provider.configure(latency_s=0.8)
    breaker.reset()
    ingest(key, [make_span("slow-all", i) for i in range(15)])
    run_queued_evaluations()
    started = time.monotonic()
    drain_queue(threads=5)
    assert breaker.state == pybreaker.STATE_OPEN
    calls = provider.calls()
    assert {call.status for call in calls} == {200}
    # Five at a time: the calls in flight when the 10th ended still end; none starts after.
    # A call admitted by the breaker just before another thread's 10th call opened it
    # reaches the provider a moment later (check, then send): a margin of ADMITTED_S, far
    # below a call's 0.8 s, still tells it from a call started after the open.
    assert 10 <= len(calls) < 15
    opened_at = breaker.storage.opened_at.timestamp()
    assert all(call.at < opened_at + ADMITTED_S for call in calls), (
        [round(call.at - opened_at, 3) for call in calls])
    counts = statuses(scores_of(org.id, trace_id="slow-all"))
    assert counts == {"ok": len(calls), "skipped": 15 - len(calls)}
    assert time.monotonic() - started < 6  # the rest were refused, not waited for
    assert retrylog.length(LLM_EVALUATION) == 15 - len(calls)
