"""Evaluations from drained spans to scores: matching, sampling, built-in scorers, the judge,
degradation, the drain hook (its cost, a broker outage), queue depth, the admin."""

import time
import uuid

import pytest
from django.core.exceptions import ValidationError

from evaluation.services import queue, retrylog, scorers
from evaluation.services.dispatch import enqueue_for_spans
from evaluation.services.matching import is_sampled
from evaluation.services.replay import replay
from ingestion.services.rows import SPAN_COLUMNS, StoredSpan
from operations.services.degradation import set_manual_level
from tests.eval_helpers import (
    drain_queue,
    ingest,
    new_config,
    queued_items,
    retry_log_length,
    run_queued_evaluations,
    scores_of,
)
from tests.ingest_helpers import BASE_TIME, count_rows, make_span, new_org

pytest_plugins = ["tests.eval_fixtures"]  # the `provider` fixture
pytestmark = pytest.mark.django_db(transaction=True)


def by_span_and_evaluator(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(row["span_id"], row["evaluator"]): row for row in rows}


def test_scores_are_written_for_matching_spans_only(provider):
    org, key = new_org()
    bystander, bystander_key = new_org()
    judge = new_config(org, "llm_judge", match_models=["gpt-4o*"], match_kinds=["llm"],
                       match_tags=["prod"])
    regex = new_config(org, "regex", pattern=r"answer \d+", match_names=["step 1*"])
    spans = [
        make_span("m1", 0),  # judge only: its name is not "step 1*"
        make_span("m1", 1),  # judge and regex
        make_span("m1", 2, model="claude-3-5-sonnet"),  # neither
        make_span("m1", 4, kind="tool"),  # neither
        make_span("m1", 5, tags=["dev"]),  # neither: no "prod" tag
        make_span("m1", 12),  # judge and regex ("step 12")
    ]
    ingest(key, spans)
    ingest(bystander_key, spans)  # an org without evaluators: nothing
    assert drain_queue() > 0

    rows = by_span_and_evaluator(scores_of(org.id))
    assert set(rows) == {("m1-s0", judge.name), ("m1-s1", judge.name), ("m1-s12", judge.name),
                         ("m1-s1", regex.name), ("m1-s12", regex.name)}
    for (_, evaluator), row in rows.items():
        assert row["status"] == "ok", row
        assert row["source"] == "evaluator" and row["trace_id"] == "m1"
        if evaluator == judge.name:
            assert (row["data_type"], row["value"]) == ("numeric", 0.8)
            assert row["comment"] == "fake judge" and row["model"] == "gpt-4o-mini"
            assert row["evaluator_type"] == "llm_judge" and row["latency_ms"] > 0
        else:
            assert (row["data_type"], row["value"]) == ("boolean", 1.0)
    assert scores_of(bystander.id) == []
    calls = provider.calls("/chat/completions")
    assert len(calls) == 3
    prompt = calls[0].body["messages"][1]["content"]
    assert "question" in prompt and "answer" in prompt  # the span's content, from ClickHouse


def test_sampling_is_decided_on_the_trace_id_at_the_configured_rate(provider):
    org, key = new_org()
    sampled = new_config(org, "length", sampling_rate=0.3)
    everything = new_config(org, "contains", pattern="answer")
    traces = [f"sample-{uuid.uuid4().hex[:8]}-{i}" for i in range(400)]
    ingest(key, [make_span(trace, index) for trace in traces for index in (0, 1)])
    drain_queue()

    per_trace: dict[str, int] = {}
    for row in scores_of(org.id, evaluator=sampled.name):
        per_trace[row["trace_id"]] = per_trace.get(row["trace_id"], 0) + 1
    expected = {trace for trace in traces if is_sampled(trace, 0.3)}
    assert set(per_trace) == expected  # the same decision wherever it is made
    assert set(per_trace.values()) == {2}  # a sampled trace is evaluated whole
    assert 0.22 * 400 < len(expected) < 0.38 * 400  # binomial: 120 +- 9.2 per sd
    assert len(scores_of(org.id, evaluator=everything.name)) == 800


def test_built_in_scorers():
    assert scorers.regex("answer 42", r"\d+") == scorers.boolean(True, "matched '42'")
    assert scorers.regex("no digits", r"\d+").value == 0.0
    assert scorers.contains("the answer", "answer").value == 1.0
    assert scorers.contains("the answer", "Answer").value == 0.0
    assert scorers.json_valid('{"a": [1, 2]}').value == 1.0
    invalid = scorers.json_valid("{'a': 1}")
    assert invalid.value == 0.0 and invalid.comment
    assert scorers.length("abcd", None, None) == scorers.numeric(4)
    assert scorers.length("abcd", 5, None).comment == "below the minimum of 5"
    assert scorers.length("abcd", None, 3).comment == "above the maximum of 3"


def test_configs_are_validated(provider):
    org, _ = new_org()
    with pytest.raises(ValidationError, match="pattern"):
        new_config(org, "regex", pattern="(unclosed")
    with pytest.raises(ValidationError, match="reference_text"):
        new_config(org, "embedding_similarity")
    with pytest.raises(ValidationError, match="prompt_template"):
        new_config(org, "llm_judge", prompt_template="Rate this.")
    with pytest.raises(ValidationError, match="sampling_rate"):
        new_config(org, "length", sampling_rate=1.5)
    with pytest.raises(ValidationError, match="match_tags"):
        new_config(org, "length", match_tags="prod")


def test_non_critical_evaluators_are_skipped_at_degradation_level_1(provider):
    org, key = new_org()
    critical = new_config(org, "llm_judge", is_critical=True)
    optional_judge = new_config(org, "llm_judge")
    optional_builtin = new_config(org, "length")

    # Level 1 when the spans are drained: only the critical evaluator is queued.
    set_manual_level(1, reason="test", changed_by="test")
    ingest(key, [make_span("degraded", i) for i in range(4)])
    assert {item["config_id"] for item in queued_items()} == {critical.id}
    drain_queue()
    rows = scores_of(org.id, trace_id="degraded")
    assert {(row["evaluator"], row["status"]) for row in rows} == {(critical.name, "ok")}
    assert len(rows) == 4

    # Queued at level 0, run at level 1: the non-critical ones are skipped then, with why.
    set_manual_level(None, reason="test", changed_by="test")
    ingest(key, [make_span("raised", i) for i in range(3)])
    assert len(queued_items()) == 9
    set_manual_level(1, reason="test", changed_by="test")
    calls_before = len(provider.calls())
    drain_queue()
    rows = scores_of(org.id, trace_id="raised")
    statuses = {(row["evaluator"], row["status"]) for row in rows}
    assert statuses == {(critical.name, "ok"), (optional_judge.name, "skipped"),
                        (optional_builtin.name, "skipped")}
    skipped = [row for row in rows if row["status"] == "skipped"]
    assert all("degradation level 1" in row["comment"] for row in skipped)
    assert len(provider.calls()) - calls_before == 3  # the critical judge's calls only
    assert retry_log_length() == 0  # shed on purpose: not replayed


def span_rows(org_id: int, count: int) -> list[StoredSpan]:
    """Stored spans as the drain hands them to its listeners."""
    template = dict.fromkeys(SPAN_COLUMNS, "")
    template.update(org_id=org_id, kind="llm", model="gpt-4o-mini", tags=["prod"],
                    start_time=BASE_TIME)
    rows = []
    for i in range(count):
        template.update(trace_id=f"t{i}", span_id=f"s{i}", name="chat", output_hash="h")
        rows.append(StoredSpan(**template))
    return rows


def test_the_drain_hook_costs_little_and_queues_each_batch_once(provider):
    configured, _ = new_org()
    other, _ = new_org()
    new_config(configured, "length")
    new_config(configured, "llm_judge", sampling_rate=0.1)
    idle_rows = span_rows(other.id, 5000)
    enqueue_for_spans(idle_rows)  # loads the configs once

    started = time.perf_counter()
    for _ in range(10):
        assert enqueue_for_spans(idle_rows) == 0
    idle_ms = (time.perf_counter() - started) * 100
    assert idle_ms < 50, f"{idle_ms:.1f} ms per batch of 5,000 spans no config applies to"

    rows = span_rows(configured.id, 5000)
    started = time.perf_counter()
    queued = enqueue_for_spans(rows, batch_token="topic:0:0:4999")
    busy_ms = (time.perf_counter() - started) * 1000
    judged = sum(is_sampled(f"t{i}", 0.1) for i in range(5000))
    assert queued == 5000 + judged
    assert queue.queued_tasks() == 11  # the drain publishes 500 evaluations a task
    print(f"\ndrain hook, 5,000 spans: {idle_ms:.2f} ms with no matching config; "
          f"{busy_ms:.0f} ms to queue {queued} evaluations")
    # The same batch replayed after a crash before its commit queues nothing twice.
    assert enqueue_for_spans(rows, batch_token="topic:0:0:4999") == 0
    assert queue.queued_tasks() == 11
    # The first task scores its built-ins and splits off its judge calls, a task each.
    first_task = queued_items()[:500]
    run_queued_evaluations(limit=1)
    assert queue.queued_tasks() == 10 + sum(item["external"] for item in first_task)


def test_a_broker_outage_neither_fails_the_drain_nor_loses_the_evaluations(provider):
    from celery_app import app

    org, key = new_org()
    new_config(org, "contains", pattern="answer")
    saved = app.conf.broker_write_url
    app.conf.broker_write_url = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        ingest(key, [make_span("outage", i) for i in range(20)])
    finally:
        app.conf.broker_write_url = saved
    assert count_rows(org.id) == 20  # the drain went on
    assert queued_items() == []
    assert retry_log_length(retrylog.UNQUEUED) == 20

    assert replay() == {retrylog.UNQUEUED: 20}  # the beat's replay, once the broker is back
    drain_queue()
    rows = scores_of(org.id)
    assert len(rows) == 20 and {row["status"] for row in rows} == {"ok"}
    assert retry_log_length(retrylog.UNQUEUED) == 0


def test_queue_depth_counts_queued_evaluations_and_the_retry_logs(provider):
    org, key = new_org()
    new_config(org, "llm_judge")
    assert queue.depth() == 0
    ingest(key, [make_span("depth", i) for i in range(7)])
    assert queue.queued_tasks() == 1  # the drain's batch task
    assert queue.depth() == 7
    retrylog.log_for_retry(queued_items()[:3], log=retrylog.LLM_EVALUATION)
    assert queue.depth() == 10
    run_queued_evaluations()  # the batch splits into a task per judge call
    assert queue.queued_tasks() == 7 and queue.depth() == 10
    run_queued_evaluations(limit=2)
    assert queue.depth() == 8
    drain_queue()
    assert queue.depth() == 3


def test_admin_lists_searches_and_filters_evaluator_configs(admin_client, provider):
    org, _ = new_org()
    judge = new_config(org, "llm_judge", name="helpfulness", is_critical=True)
    new_config(org, "regex", name="has-citation", pattern=r"\[\d+\]")
    url = "/admin/evaluation/evaluatorconfig/"
    page = admin_client.get(url).content.decode()
    assert "helpfulness" in page and "has-citation" in page
    page = admin_client.get(url, {"q": "helpful"}).content.decode()
    assert "helpfulness" in page and "has-citation" not in page
    page = admin_client.get(url, {"evaluator_type__exact": "regex"}).content.decode()
    assert "has-citation" in page and "helpfulness" not in page
    assert admin_client.get(f"{url}{judge.id}/change/").status_code == 200
    response = admin_client.post(f"{url}add/", {
        "org": org.id, "name": "broken", "evaluator_type": "regex", "pattern": "(",
        "sampling_rate": 1, "target": "output", "match_models": "[]", "match_names": "[]",
        "match_kinds": "[]", "match_tags": "[]"})
    assert response.status_code == 200 and "not a valid regular expression" in \
        response.content.decode()
