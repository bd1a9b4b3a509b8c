"""Bad input: the right status, a message naming the field, valid spans of the batch kept."""

import gzip
import json
from datetime import timedelta

import pytest
from django.test import override_settings

from ingestion.services import tenancy
from ingestion.services.drain import PartitionDrainer
from llmops import kafka
from operations.models import DegradationLevel
from operations.services.degradation import set_manual_level
from tests.ingest_helpers import (
    BASE_TIME,
    client_for,
    count_rows,
    drain_everything,
    iso_z,
    make_span,
    new_org,
    post_spans,
    stored_spans,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def org_and_client():
    org, key = new_org()
    return org, client_for(key)


def raw_post(client, body: bytes, **extra):
    return client.generic("POST", "/api/v1/spans", body, content_type="application/json",
                          **extra)


def test_not_json(org_and_client):
    _, client = org_and_client
    response = raw_post(client, b"{not json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]


def test_empty_body(org_and_client):
    _, client = org_and_client
    response = raw_post(client, b"")
    assert response.status_code == 400
    assert "empty body" in response.json()["detail"]


def test_spans_not_a_list(org_and_client):
    _, client = org_and_client
    response = raw_post(client, b'{"spans": {"trace_id": "x"}}')
    assert response.status_code == 400
    assert "`spans` must be a list" in response.json()["detail"]


def test_no_spans_key(org_and_client):
    _, client = org_and_client
    response = raw_post(client, b'{"items": []}')
    assert response.status_code == 400
    assert "`spans`" in response.json()["detail"]


def test_too_many_spans(org_and_client):
    org, client = org_and_client
    response = post_spans(client, [make_span("many", i) for i in range(1001)])
    assert response.status_code == 413
    assert "1001" in response.json()["detail"] and "1000" in response.json()["detail"]


def test_body_over_five_megabytes(org_and_client):
    _, client = org_and_client
    span = make_span("big", 0, input="z" * (6 * 1024 * 1024))
    response = raw_post(client, json.dumps({"spans": [span]}).encode())
    assert response.status_code == 413
    assert "bytes" in response.json()["detail"]


def test_gzip_bomb_is_refused_and_gzip_is_accepted(org_and_client):
    org, client = org_and_client
    bomb = gzip.compress(b'{"spans": ["' + b"a" * (6 * 1024 * 1024) + b'"]}')
    response = raw_post(client, bomb, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    good = gzip.compress(json.dumps({"spans": [make_span("gz", 0)]}).encode())
    response = raw_post(client, good, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 202, response.content


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"trace_id": None}, "trace_id", "Expected `str`"),
        ("drop:span_id", "span_id", "required"),
        ("drop:start_time", "start_time", "required"),
        ({"name": 42}, "name", "Expected `str`"),
        ({"start_time": "yesterday"}, "start_time", "RFC3339"),
        ({"end_time": iso_z(BASE_TIME - timedelta(hours=1))}, "end_time", "before start_time"),
        ({"usage": {"input_tokens": -5}}, "usage.input_tokens", ">= 0"),
        ({"usage": {"output_tokens": 2**63}}, "usage.output_tokens", "<= 9223372036854775807"),
        ({"start_time": "2400-01-01T00:00:00Z", "end_time": None}, "start_time", "between"),
        ({"span_id": "s" * 129}, "span_id", "length <= 128"),
        ({"kind": "robot"}, "kind", "robot"),
        ({"tags": "prod"}, "tags", "Expected `array`"),
        ({"metadata": {"nested": {"a": 1}}}, "metadata", "Expected"),
    ],
)
def test_a_bad_span_is_rejected_by_field_and_the_rest_is_stored(org_and_client, change, field,
                                                                 message):
    org, client = org_and_client
    drain_everything()
    good = [make_span("mixed", i) for i in range(3)]
    bad = make_span("mixed", 99)
    if isinstance(change, str):
        del bad[change.split(":")[1]]
    else:
        bad.update(change)
    response = post_spans(client, [good[0], bad, good[1], good[2]])
    assert response.status_code == 207, response.content
    body = response.json()
    assert body["accepted"] == 3
    (rejected,) = body["rejected"]
    assert rejected["index"] == 1
    assert field in rejected["errors"], rejected
    assert message in rejected["errors"][field]
    drain_everything()
    assert sorted(row["span_id"] for row in stored_spans(org.id)) == sorted(
        s["span_id"] for s in good)


def test_a_128_character_id_is_fine(org_and_client):
    _, client = org_and_client
    response = post_spans(client, [make_span("t" * 128, 0, span_id="s" * 128, session_id="")])
    assert response.status_code == 202


def test_unknown_fields_are_ignored_and_named(org_and_client):
    _, client = org_and_client
    response = post_spans(client, [make_span("unk", 0, colour="red", shape="round")])
    assert response.status_code == 202
    assert response.json()["warnings"] == ["unknown field ignored: colour",
                                           "unknown field ignored: shape"]


def test_no_key_and_bad_key_are_401(org_and_client):
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/spans", {"spans": [make_span("x", 0)]}, format="json")
    assert response.status_code == 401
    assert "Authorization" in response.json()["detail"]
    assert response["WWW-Authenticate"] == "Bearer"
    response = post_spans(client_for("llm_not-a-real-key"), [make_span("x", 0)])
    assert response.status_code == 401
    assert "invalid or revoked" in response.json()["detail"]


def test_a_revoked_key_stops_working(settings):
    org, raw = new_org()
    client = client_for(raw)
    assert post_spans(client, [make_span("rev", 0)]).status_code == 202
    org.api_keys.get().revoke()
    tenancy.forget_cached_keys()
    assert post_spans(client, [make_span("rev", 1)]).status_code == 401


def test_the_org_comes_from_the_key_not_the_body():
    drain_everything()
    victim, _ = new_org()
    attacker, key = new_org()
    span = make_span("spoof", 0, org_id=victim.id, org=victim.slug)
    response = post_spans(client_for(key), [span])
    assert response.status_code == 202
    drain_everything()
    assert count_rows(victim.id) == 0
    assert count_rows(attacker.id) == 1


def test_rate_limit_answers_429_with_retry_after():
    org, key = new_org(ingest_rate_limit=150)
    client = client_for(key)
    assert post_spans(client, [make_span("rl", i) for i in range(100)]).status_code == 202
    response = post_spans(client, [make_span("rl", i) for i in range(100, 200)])
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "rate limit" in response.json()["detail"]
    # What was refused was not counted: a smaller batch still fits the window.
    assert post_spans(client, [make_span("rl", i) for i in range(200, 250)]).status_code == 202


def test_read_only_level_answers_503_with_retry_after():
    _, key = new_org()
    set_manual_level(DegradationLevel.READ_ONLY, reason="test", changed_by="pytest")
    response = post_spans(client_for(key), [make_span("ro", 0)])
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert "read-only" in response.json()["detail"]


def test_essential_only_level_stores_spans_without_content():
    drain_everything()
    org, key = new_org()
    set_manual_level(DegradationLevel.ESSENTIAL_ONLY, reason="test", changed_by="pytest")
    # Levels add up: level 3 also keeps level 2's 1 % sampling, so send many traces.
    spans = [make_span(f"ess-{t}", 0) for t in range(1000)]
    assert post_spans(client_for(key), spans).status_code == 202
    drain_everything()
    rows = stored_spans(org.id)
    assert rows
    assert all(row["input_hash"] == "" and row["output_hash"] == "" for row in rows)
    assert all(row["input_tokens"] == 100 for row in rows)


def test_reduced_sampling_keeps_about_one_percent_of_traces_whole():
    drain_everything()
    org, key = new_org()
    set_manual_level(DegradationLevel.REDUCED_SAMPLING, reason="test", changed_by="pytest")
    client = client_for(key)
    for batch in range(10):
        spans = [make_span(f"samp-{batch}-{t}", i) for t in range(50) for i in range(2)]
        response = post_spans(client, spans)
        assert response.status_code == 202
        assert response.json()["accepted"] == 100
    drain_everything()
    rows = stored_spans(org.id)
    traces = {row["trace_id"] for row in rows}
    assert 0 < len(traces) <= 20  # 1 % of 500 traces is 5; a loose bound, deterministic
    assert len(rows) == 2 * len(traces)  # each kept trace is kept whole


def test_org_sample_rate_is_deterministic_per_trace():
    from ingestion.services.accept import is_sampled

    kept = [t for t in range(10_000) if is_sampled(f"trace-{t}", 0.25)]
    assert 2300 < len(kept) < 2700
    assert kept == [t for t in range(10_000) if is_sampled(f"trace-{t}", 0.25)]


def test_kafka_unreachable_is_503_never_a_silent_202():
    _, key = new_org()
    kafka.get_producer.cache_clear()
    try:
        with override_settings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
                               KAFKA_PUBLISH_TIMEOUT_S=1.0):
            response = post_spans(client_for(key), [make_span("down", 0)])
    finally:
        kafka.get_producer.cache_clear()
    assert response.status_code == 503
    assert "not stored" in response.json()["detail"]
    assert response["Retry-After"]


def test_drain_skips_partition_held_by_another_drainer():
    first = PartitionDrainer(0)
    assert first.open()
    try:
        second = PartitionDrainer(0)
        assert second.run(budget_s=1).stopped == "lease held elsewhere"
    finally:
        first.close()
