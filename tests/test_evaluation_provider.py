"""The external calls against the fake provider: retry times with backoff and jitter, 429 and
Retry-After, per-org token buckets, malformed answers, embeddings and their stale fallback."""

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pybreaker
import pytest

from evaluation.models import EvaluatorConfig
from evaluation.services import queue, retrylog
from evaluation.services.breakers import EMBEDDING_API, LLM_EVALUATION, get_breaker
from evaluation.services.provider import retry_after_seconds
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


def by_key(calls) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for call in calls:
        grouped.setdefault(call.key, []).append(call)
    return grouped


def test_retry_times_follow_the_backoff_with_jitter(provider, settings):
    # The design document's own policy: 1 s, doubling, jitter 0.2.
    settings.EXTERNAL_API_RETRY = {"max_attempts": 3, "initial_backoff_ms": 1000,
                                   "max_backoff_ms": 30000, "backoff_multiplier": 2.0,
                                   "jitter_factor": 0.2}
    provider.configure(fail_first=2)  # each evaluation: 500, 500, then an answer
    org, key = new_org()
    new_config(org, "llm_judge")
    ingest(key, [make_span("backoff", i) for i in range(6)])
    run_queued_evaluations()
    drain_queue(threads=6)  # six evaluations side by side: six draws of the jitter

    attempts = by_key(provider.calls())
    assert len(attempts) == 6
    first_gaps, second_gaps = [], []
    for calls in attempts.values():
        assert [call.status for call in calls] == [500, 500, 200]
        first_gaps.append(calls[1].at - calls[0].at)
        second_gaps.append(calls[2].at - calls[1].at)
    # 1 s +- 20 %, then 2 s +- 20 %; a sleep is never shorter, the call adds a little.
    assert all(0.8 <= gap <= 1.2 + 0.3 for gap in first_gaps), first_gaps
    assert all(1.6 <= gap <= 2.4 + 0.3 for gap in second_gaps), second_gaps
    assert max(first_gaps) - min(first_gaps) > 0.02, "no jitter: all retried in lockstep"
    assert {row["status"] for row in scores_of(org.id)} == {"ok"}


def test_after_the_last_attempt_the_evaluation_fails_and_is_retried_later(provider):
    provider.configure(fail_first=3)
    org, key = new_org()
    new_config(org, "llm_judge")
    ingest(key, [make_span("exhausted", i) for i in range(3)])
    drain_queue()
    assert len(provider.calls()) == 9  # three attempts each
    rows = scores_of(org.id)
    assert {row["status"] for row in rows} == {"failed"}
    assert all("HTTP 500" in row["comment"] and "logged for retry" in row["comment"]
               for row in rows)
    assert retry_log_length() == 3
    assert replay() == {LLM_EVALUATION: 3}  # breaker closed (9 calls < 20): all at once
    drain_queue()
    assert {row["status"] for row in scores_of(org.id)} == {"ok"}  # the result replaces it


def test_a_call_over_the_timeout_is_abandoned_and_counts_as_a_failure(provider, settings):
    settings.EXTERNAL_API_TIMEOUT_MS = 500
    provider.configure(latency_s=2.0)
    org, key = new_org()
    new_config(org, "llm_judge")
    ingest(key, [make_span("timeout", 0)])
    started = time.monotonic()
    drain_queue()
    assert time.monotonic() - started < 4  # three attempts of 0.5 s and two short backoffs
    (row,) = scores_of(org.id)
    assert row["status"] == "failed" and "timed out" in row["comment"]
    assert len(provider.calls()) == 3
    assert get_breaker(LLM_EVALUATION).window() == ["f", "f", "f"]


def test_a_429_retry_after_holds_back_every_worker(provider):
    provider.configure(too_many=1, retry_after="2")
    org, key = new_org()
    new_config(org, "llm_judge")
    ingest(key, [make_span("throttled", i) for i in range(4)])
    run_queued_evaluations()  # split: four judge tasks
    first = threading.Thread(target=run_queued_evaluations, kwargs={"limit": 1})
    first.start()
    deadline = time.monotonic() + 10
    while not provider.calls() and time.monotonic() < deadline:
        time.sleep(0.01)
    drain_queue(threads=3)  # the other three start while the first is told to wait
    first.join()

    calls = provider.calls()
    assert calls[0].status == 429 and len(calls) == 5
    assert all(call.status == 200 for call in calls[1:])
    # The retry (after a 50 ms backoff) and the three newcomers all waited out Retry-After.
    assert all(call.at >= calls[0].at + 1.95 for call in calls[1:]), \
        [round(call.at - calls[0].at, 3) for call in calls]
    assert {row["status"] for row in scores_of(org.id)} == {"ok"}


def test_retry_after_as_seconds_or_an_http_date():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) == 0.0 and retry_after_seconds("soon") == 0.0
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 28 <= retry_after_seconds(future) <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(past) == 0.0


def test_each_org_has_its_own_token_bucket(provider, settings):
    settings.LLM_ORG_RATE_PER_S = 4.0
    settings.EVALUATION_RATE_BURST_S = 0.25  # one token: no burst
    orgs = []
    for name in ("A", "B"):
        org, key = new_org()
        new_config(org, "llm_judge", prompt_template=f"org {name}: {{{{output}}}}")
        ingest(key, [make_span(f"bucket-{name}", i) for i in range(10)])
        orgs.append(name)
    run_queued_evaluations(threads=2)  # split both batches
    assert queue.queued_tasks() == 20
    drain_queue(threads=8)

    for name in orgs:
        times = sorted(call.at for call in provider.calls()
                       if call.body["messages"][1]["content"].startswith(f"org {name}:"))
        assert len(times) == 10
        rate = (len(times) - 1) / (times[-1] - times[0])
        # At most the org's rate; and near it: the other org's calls took none of its tokens.
        assert 3.0 <= rate <= 4.0 * 1.1, rate
        assert all(sum(1 for t in times if start <= t < start + 1) <= 4 + 1 for start in times)


@pytest.mark.parametrize(("behaviour", "reason"), [
    ({"malformed": "not_json"}, "answer is not JSON"),
    ({"malformed": "no_choices"}, "no choices[0].message.content"),
    ({"malformed": "prose"}, "the judge's answer is not JSON"),
    ({"malformed": "no_score"}, "no score in the judge's answer"),
    ({"score": None}, "not a number, boolean or label"),
    ({"score": [1, 2]}, "not a number, boolean or label"),
])
def test_malformed_answers_fail_with_their_reason_and_never_crash_a_worker(
        provider, behaviour, reason):
    provider.configure(**behaviour)
    org, key = new_org()
    new_config(org, "llm_judge")
    ingest(key, [make_span("malformed", i) for i in range(2)])
    drain_queue()  # a worker's crash would raise here
    rows = scores_of(org.id)
    assert [row["status"] for row in rows] == ["failed", "failed"]
    assert all(reason in row["comment"] for row in rows), [row["comment"] for row in rows]
    assert len(provider.calls()) == 2  # the provider answered: no retry, nothing logged
    assert retry_log_length() == 0
    assert get_breaker(LLM_EVALUATION).window() == ["s", "s"]  # not an outage

    provider.configure()
    ingest(key, [make_span("well-formed", 0)])
    drain_queue()
    assert scores_of(org.id, trace_id="well-formed")[0]["status"] == "ok"


def test_one_evaluation_s_bug_fails_that_score_alone(provider):
    org, key = new_org()
    broken = new_config(org, "regex", pattern="answer")
    fine = new_config(org, "contains", pattern="answer")
    EvaluatorConfig.objects.filter(id=broken.id).update(pattern="(")  # past validation
    ingest(key, [make_span("bug", i) for i in range(3)])
    drain_queue()
    rows = scores_of(org.id)
    assert {(row["evaluator"], row["status"]) for row in rows} == {
        (broken.name, "failed"), (fine.name, "ok")}
    assert all(row["comment"].startswith("internal error: error:")
               for row in rows if row["status"] == "failed")


def embedding_spans(trace_id: str) -> list[dict]:
    return [make_span(trace_id, 0, output="The capital of France is Paris!"),
            make_span(trace_id, 1, output="Bananas are yellow, and rich in potassium.")]


def test_embedding_similarity_and_its_stale_cache_fallback(provider, settings):
    org, key = new_org()
    new_config(org, "embedding_similarity", threshold=0.8,
               reference_text="The capital of France is Paris.")
    ingest(key, embedding_spans("fresh"))
    drain_queue()
    rows = {row["span_id"]: row for row in scores_of(org.id, trace_id="fresh")}
    close, far = rows["fresh-s0"], rows["fresh-s1"]
    assert close["status"] == far["status"] == "ok"
    assert close["value"] > 0.9 and far["value"] < 0.8
    assert close["comment"] == "passes threshold 0.8" and far["comment"] == "below threshold 0.8"
    assert close["model"] == settings.EMBEDDING_MODEL
    assert len(provider.calls("/embeddings")) == 3  # the reference embedded once, then cached

    # The embedding API goes down and its breaker opens: the cached embeddings stand in.
    settings.EMBEDDING_CACHE_FRESH_MS = 0  # nothing counts as fresh: every text needs a call
    settings.EMBEDDING_BREAKER = {**settings.EMBEDDING_BREAKER,
                                  "wait_duration_in_open_state_ms": 30_000}
    provider.set(error_rate=1.0)
    breaker = get_breaker(EMBEDDING_API)
    while breaker.state == pybreaker.STATE_CLOSED:
        breaker.record(breaker.permit(), failed=True, seconds=0.01)
    ingest(key, embedding_spans("cached"))
    drain_queue()
    rows = {row["span_id"]: row for row in scores_of(org.id, trace_id="cached")}
    assert {row["status"] for row in rows.values()} == {"fallback"}
    assert rows["cached-s0"]["value"] == pytest.approx(close["value"])
    assert "cached embedding (embedding API unavailable)" in rows["cached-s0"]["comment"]
    assert len(provider.calls("/embeddings")) == 3

    # Past EMBEDDING_CACHE_STALE_MS the cache is no help: skipped, and logged for retry.
    settings.EMBEDDING_CACHE_STALE_MS = 500
    time.sleep(0.6)
    ingest(key, embedding_spans("stale"))
    drain_queue()
    rows = scores_of(org.id, trace_id="stale")
    assert {row["status"] for row in rows} == {"skipped"}
    assert all("embedding_api is open; logged for retry" in row["comment"] for row in rows)
    assert retrylog.length(EMBEDDING_API) == 2
    assert len(provider.calls("/embeddings")) == 3
