"""What one span may hold: spans the store would lose after their 202 (deleted by the TTL, a
cost its column cannot hold, a message Kafka refuses) are rejected in the 207 by name; content
too large is stored truncated; a request that fails stores and charges nothing; every error
is JSON."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client, override_settings
from django.urls import include, path
from rest_framework.views import APIView

from costs.models import Price
from costs.services.pricing import forget_cached_prices
from evaluation.services import scores
from ingestion.services.accept import forget_cached_retention
from llmops import clickhouse, kafka
from operations.models import DegradationLevel, TtlChange
from operations.services.degradation import set_manual_level
from tests.ingest_helpers import (
    client_for,
    drain_everything,
    make_span,
    new_org,
    post_spans,
    stored_spans,
)

pytestmark = pytest.mark.django_db


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def span_at(trace_id: str, index: int, start: datetime, **overrides) -> dict:
    times = {"start_time": iso(start), "end_time": iso(start + timedelta(seconds=1))}
    return make_span(trace_id, index, **{**times, **overrides})


def stored_ids(org_id: int) -> list[str]:
    return sorted(row["span_id"] for row in stored_spans(org_id))


def rejected_by_index(response) -> dict[int, dict]:
    return {item["index"]: item["errors"] for item in response.json()["rejected"]}


# -- item 3: the time window -------------------------------------------------------------

def test_spans_outside_the_retention_or_too_far_ahead_are_rejected_naming_the_window():
    drain_everything()
    org, key = new_org()
    now = datetime.now(UTC)
    spans = [
        span_at("win", 0, now - timedelta(hours=1)),
        span_at("win", 1, now - timedelta(days=91)),  # the 90-day TTL would delete it
        span_at("win", 2, now + timedelta(days=2)),  # more than a day ahead
        span_at("win", 3, now - timedelta(days=89)),
        span_at("win", 4, now + timedelta(hours=12)),
        span_at("win", 5, now, end_time=iso(now + timedelta(days=3))),
        span_at("win", 6, datetime(2290, 1, 1, tzinfo=UTC)),
    ]
    response = post_spans(client_for(key), spans)
    assert response.status_code == 207, response.content
    assert response.json()["accepted"] == 3
    rejected = rejected_by_index(response)
    assert set(rejected) == {1, 2, 5, 6}
    for index, field in ((1, "start_time"), (2, "start_time"), (5, "end_time"),
                         (6, "start_time")):
        message = rejected[index][field]
        assert "kept 90 days" in message and "86400 s ahead" in message, message
    drain_everything()
    assert stored_ids(org.id) == ["win-s0", "win-s3", "win-s4"]


def test_an_emergency_ttl_in_force_narrows_the_window():
    org, key = new_org()
    TtlChange.objects.create(table="spans", days=7, reason="storage full", changed_by="pytest")
    forget_cached_retention()
    now = datetime.now(UTC)
    response = post_spans(client_for(key), [span_at("ttl", 0, now - timedelta(days=10)),
                                            span_at("ttl", 1, now - timedelta(days=5))])
    assert response.status_code == 207, response.content
    assert "kept 7 days" in rejected_by_index(response)[0]["start_time"]
    assert response.json()["accepted"] == 1


def test_a_score_the_ttl_would_delete_at_once_is_refused_naming_its_timestamp():
    _, key = new_org()
    now = datetime.now(UTC)
    client = client_for(key)
    for at in (now - timedelta(days=91), now + timedelta(days=2)):
        response = client.post("/api/v1/scores", {"scores": [
            {"trace_id": "t", "name": "n", "value": 1, "timestamp": iso(at)}]}, format="json")
        assert response.status_code == 400, response.content
        assert "timestamp" in str(response.json()) and "kept 90 days" in str(response.json())
    response = client.post("/api/v1/scores", {"scores": [
        {"trace_id": "t", "name": "n", "value": 1, "timestamp": iso(now - timedelta(days=3))}]},
        format="json")
    assert response.status_code == 201, response.content


# -- item 4: numbers the store can hold -----------------------------------------------------

def test_costs_and_token_counts_beyond_what_the_store_holds_are_rejected_by_field():
    drain_everything()
    org, key = new_org()
    now = datetime.now(UTC) - timedelta(minutes=5)
    big = 2**62
    spans = [
        span_at("num", 0, now, cost=0.25),
        span_at("num", 1, now, cost=1e300),  # Decimal64(12) holds ~9.2e6
        span_at("num", 2, now, cost=999_999.0),  # ClickHouse parses it, but past the limit
        span_at("num", 3, now, usage={"input_tokens": big, "output_tokens": 1}),
        span_at("num", 4, now, usage={"input_tokens": 10, "output_tokens": big}),
        span_at("num", 5, now, usage={"total_tokens": big}),
        span_at("num", 6, now, usage={"input_tokens": 10, "cached_input_tokens": 5,
                                      "cache_write_tokens": 5}),
    ]
    response = post_spans(client_for(key), spans)
    assert response.status_code == 207, response.content
    rejected = rejected_by_index(response)
    assert set(rejected) == {1, 2, 3, 4, 5}
    assert "INGEST_MAX_COST_USD" in rejected[1]["cost"]
    assert "INGEST_MAX_COST_USD" in rejected[2]["cost"]
    assert "INGEST_MAX_TOKENS" in rejected[3]["usage.input_tokens"]
    assert "INGEST_MAX_TOKENS" in rejected[4]["usage.output_tokens"]
    assert "INGEST_MAX_TOKENS" in rejected[5]["usage.total_tokens"]
    drain_everything()
    rows = {row["span_id"]: row for row in stored_spans(org.id)}
    assert sorted(rows) == ["num-s0", "num-s6"]
    assert rows["num-s0"]["cost"] == Decimal("0.25")


@pytest.mark.django_db(transaction=True)  # the drain's threads read the price row
def test_tokens_whose_computed_cost_could_overflow_are_rejected_unless_the_cost_is_sent():
    drain_everything()
    org, key = new_org()
    # An operator's price as high as the price field allows: 50M tokens at $1M per million
    # would be $5e7, past the spans table's Decimal64(12).
    Price.objects.create(provider="acme", model_name="gold", model_pattern="gold",
                         input_price=Decimal("1000000"), output_price=Decimal("1000000"))
    forget_cached_prices()
    now = datetime.now(UTC) - timedelta(minutes=5)
    usage = {"input_tokens": 50_000_000, "output_tokens": 10}
    response = post_spans(client_for(key), [
        span_at("gold", 0, now, model="gold", provider="acme", usage=usage),
        span_at("gold", 1, now, model="gold", provider="acme", usage=usage, cost=12.5),
        span_at("gold", 2, now, model="gold", provider="acme",
                usage={"input_tokens": 1000, "output_tokens": 10}),
    ])
    assert response.status_code == 207, response.content
    rejected = rejected_by_index(response)
    assert list(rejected) == [0]
    assert "highest price" in rejected[0]["usage"]
    drain_everything()
    rows = {row["span_id"]: row for row in stored_spans(org.id)}
    assert rows["gold-s1"]["cost"] == Decimal("12.5")
    assert rows["gold-s2"]["cost"] == Decimal("1010")  # 1,010 tokens at $1 each


# -- item 5: oversized spans ------------------------------------------------------------------

def test_a_one_and_a_half_megabyte_span_is_stored_truncated_with_the_rest_of_the_request():
    drain_everything()
    org, key = new_org()
    now = datetime.now(UTC) - timedelta(minutes=5)
    big_input = [{"role": "user", "content": "q" * (1536 * 1024)}]
    original = len(json.dumps(big_input, separators=(",", ":")))
    spans = [span_at("big", 0, now), span_at("big", 1, now, input=big_input),
             span_at("big", 2, now, output="é" * (800 * 1024))]
    response = post_spans(client_for(key), spans)
    assert response.status_code == 202, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["accepted"] == 3
    # The answer names what was cut, so a client knows without reading the span back.
    assert response.json()["truncated"] == [
        {"index": 1, "span_id": "big-s1", "fields": ["input"]},
        {"index": 2, "span_id": "big-s2", "fields": ["output"]}]
    drain_everything()
    rows = {row["span_id"]: row for row in stored_spans(org.id)}
    assert sorted(rows) == ["big-s0", "big-s1", "big-s2"]
    truncated = rows["big-s1"]
    assert truncated["metadata"]["llmops.input.original_bytes"] == str(original)
    assert truncated["input_format"] == "text"
    content = truncated["input_content"]
    assert content.startswith('[{"role":"user","content":"qqq')
    assert content.endswith(f"[truncated by llmops: {original} bytes of JSON, over the limit "
                            f"of {1024 * 1024}]")
    assert len(json.dumps(content).encode()) <= 1024 * 1024
    assert "llmops.output.original_bytes" not in truncated["metadata"]
    # 800 K two-byte characters: 1.6 MB of JSON, cut on a character boundary.
    output = rows["big-s2"]["output_content"]
    assert output.startswith("éé") and "[truncated by llmops: 1638402 bytes" in output
    assert rows["big-s2"]["metadata"]["llmops.output.original_bytes"] == "1638402"
    assert rows["big-s0"]["input_content"] == json.dumps(spans[0]["input"],
                                                         separators=(",", ":"))


def test_a_span_too_large_for_kafka_is_rejected_with_its_size_and_the_rest_is_stored():
    drain_everything()
    org, key = new_org()
    now = datetime.now(UTC) - timedelta(minutes=5)
    # Content is truncated, but metadata is not: 3.5 MB of it cannot fit a 3 MiB message.
    spans = [span_at("kfk", 0, now), span_at("kfk", 1, now, metadata={"dump": "m" * 3_500_000}),
             span_at("kfk", 2, now)]
    response = post_spans(client_for(key), spans)
    assert response.status_code == 207, response.content
    (rejected,) = response.json()["rejected"]
    assert rejected["index"] == 1 and rejected["span_id"] == "kfk-s1"
    message = rejected["errors"]["span"]
    assert "bytes encoded" in message and str(3 * 1024 * 1024 - 64) in message, message
    assert response.json()["accepted"] == 2
    drain_everything()
    assert stored_ids(org.id) == ["kfk-s0", "kfk-s2"]


def test_a_span_filling_most_of_a_kafka_message_is_stored():
    drain_everything()
    org, key = new_org()
    now = datetime.now(UTC) - timedelta(minutes=5)
    span = span_at("full", 0, now, input="i" * 1_000_000, output="o" * 1_000_000,
                   metadata={"notes": "n" * 900_000})
    response = post_spans(client_for(key), [span])
    assert response.status_code == 202, response.content
    drain_everything()
    (row,) = stored_spans(org.id)
    assert len(row["input_content"]) == 1_000_000 and len(row["metadata"]["notes"]) == 900_000


def test_a_request_that_fails_is_not_charged_to_the_quota():
    org, key = new_org(ingest_rate_limit=100)
    client = client_for(key)
    now = datetime.now(UTC) - timedelta(minutes=5)
    kafka.get_producer.cache_clear()
    try:
        with override_settings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
                               KAFKA_PUBLISH_TIMEOUT_S=1.0):
            response = post_spans(client, [span_at("quota", i, now) for i in range(60)])
    finally:
        kafka.get_producer.cache_clear()
    assert response.status_code == 503, response.content
    # Had the failed request counted its 60 spans, these 60 would pass the limit of 100.
    response = post_spans(client, [span_at("quota", i, now) for i in range(60, 120)])
    assert response.status_code == 202, response.content


# -- every error is JSON ----------------------------------------------------------------------

class Crash(APIView):
    authentication_classes = []
    permission_classes = []

    def get(self, request):
        raise RuntimeError("a bug")


def django_crash(request):
    raise RuntimeError("a bug outside DRF")


from llmops.urls import handler400, handler403, handler404, handler500  # noqa: E402, F401

urlpatterns = [
    path("api/v1/test-crash", Crash.as_view()),
    path("api/v1/test-django-crash", django_crash),
    path("", include("llmops.urls")),
]


@override_settings(ROOT_URLCONF=__name__)
def test_api_errors_are_json_with_a_detail_never_html():
    client = Client(raise_request_exception=False)
    for url, status in (("/api/v1/test-crash", 500), ("/api/v1/test-django-crash", 500),
                        ("/api/v1/no-such-endpoint", 404), ("/api/nothing", 404),
                        ("/v1/no-such-signal", 404)):
        response = client.get(url)
        assert response.status_code == status, url
        assert response["Content-Type"] == "application/json", url
        assert response.json()["detail"], url
    response = client.put("/api/v1/spans", b"{}", content_type="application/json")
    assert response.status_code in (401, 405) and response.json()["detail"]
    assert "text/html" in client.get("/no-such-page").headers["Content-Type"]


def test_a_store_that_does_not_answer_is_a_503_with_retry_after_in_json():
    _, key = new_org()
    clickhouse._local.client = None  # this thread's client, made anew for the dead address
    try:
        with override_settings(CLICKHOUSE_URL="http://default:@127.0.0.1:9/x",
                               CLICKHOUSE_CONNECT_TIMEOUT_S=1):
            response = client_for(key).get("/api/v1/scores")
    finally:
        clickhouse._local.client = None
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "30"
    assert "retry" in response.json()["detail"]


def test_a_scores_body_over_djangos_upload_limit_is_a_413_in_json():
    _, key = new_org()
    score = {"trace_id": "t", "name": "n", "value": 1, "comment": "x" * 3000}
    response = client_for(key).post("/api/v1/scores", {"scores": [score] * 1000},
                                    format="json")
    assert response.status_code == 413, response.content
    assert "limit" in response.json()["detail"]


# -- item 11: read-only means read-only -------------------------------------------------------

def test_read_only_refuses_scores_with_503_and_stores_nothing_but_reads_go_on():
    org, key = new_org()
    client = client_for(key)
    set_manual_level(DegradationLevel.READ_ONLY, reason="test", changed_by="pytest")
    response = client.post("/api/v1/scores", {"scores": [
        {"trace_id": "ro-trace", "name": "helpful", "value": 1}]}, format="json")
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "30"
    assert "read-only" in response.json()["detail"]
    assert scores.read(org_id=org.id) == []
    assert client.get("/api/v1/scores").status_code == 200
    assert client.get("/api/v1/traces").status_code == 200
