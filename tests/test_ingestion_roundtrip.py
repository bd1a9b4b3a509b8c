"""Spans in through the API, out of ClickHouse: every field exact, each org on its own."""

from datetime import datetime
from decimal import Decimal

import orjson
import pytest

from tests.ingest_helpers import (
    client_for,
    count_rows,
    drain_everything,
    make_span,
    new_org,
    post_spans,
    stored_spans,
)

pytestmark = pytest.mark.django_db


def _as_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _expected_metadata(metadata: dict) -> dict:
    return {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in metadata.items()}


def test_thousand_spans_from_two_orgs_come_back_exact_and_apart():
    drain_everything()
    orgs = [new_org(), new_org()]
    sent = {}
    for org_number, (org, key) in enumerate(orgs):
        client = client_for(key)
        spans = [make_span(f"o{org_number}-trace{t}", i) for t in range(5) for i in range(100)]
        # One span per org without usage, content or end: optional fields stay optional.
        spans[1] = {k: spans[1][k] for k in ("trace_id", "span_id", "name", "start_time")}
        for start in range(0, len(spans), 100):
            response = post_spans(client, spans[start:start + 100])
            assert response.status_code == 202, response.content
            assert response.json() == {"accepted": 100}
        sent[org.id] = {(s["trace_id"], s["span_id"]): s for s in spans}

    drain_everything()

    for org, _ in orgs:
        rows = stored_spans(org.id)
        assert count_rows(org.id) == 500  # nothing doubled, even before merges
        assert {(r["trace_id"], r["span_id"]) for r in rows} == set(sent[org.id])
        for row in rows:
            span = sent[org.id][(row["trace_id"], row["span_id"])]
            assert row["name"] == span["name"]
            assert row["parent_span_id"] == (span.get("parent_span_id") or "")
            assert row["kind"] == span.get("kind", "other")
            assert row["status"] == span.get("status", "ok")
            assert row["status_message"] == span.get("status_message", "")
            assert row["start_time"] == _as_utc(span["start_time"])
            if "end_time" in span:
                assert row["end_time"] == _as_utc(span["end_time"])
                expected_ms = (_as_utc(span["end_time"]) - _as_utc(span["start_time"]))
                assert row["duration_ms"] == pytest.approx(expected_ms.total_seconds() * 1000)
            else:
                assert row["end_time"] is None
            assert row["model"] == span.get("model", "")
            assert row["provider"] == span.get("provider", "")
            usage = span.get("usage") or {}
            assert row["input_tokens"] == usage.get("input_tokens", 0)
            assert row["output_tokens"] == usage.get("output_tokens", 0)
            assert row["cached_input_tokens"] == usage.get("cached_input_tokens", 0)
            assert row["total_tokens"] == usage.get("input_tokens", 0) + usage.get(
                "output_tokens", 0)
            assert row["usage_source"] == ("provided" if usage else "none")
            # No price rows in the test DB: a model is unpriced; no model and no usage is
            # nothing to price.
            assert row["cost"] == Decimal(0)
            assert row["cost_source"] == ("unpriced" if span.get("model") else "none")
            assert row["session_id"] == span.get("session_id", "")
            assert row["user_id"] == span.get("user_id", "")
            assert row["tags"] == span.get("tags", [])
            assert row["metadata"] == _expected_metadata(span.get("metadata", {}))
            assert row["environment"] == span.get("environment", "default")
            if "input" in span:
                assert row["input_format"] == "json"
                assert orjson.loads(row["input_content"]) == span["input"]
                assert row["output_format"] == "text"
                assert row["output_content"] == span["output"]
            else:
                assert row["input_hash"] == "" and row["output_hash"] == ""


def test_provided_cost_is_kept_exactly():
    drain_everything()
    org, key = new_org()
    response = post_spans(client_for(key), [make_span("cost-trace", 0, cost=0.000123456789)])
    assert response.status_code == 202
    drain_everything()
    (row,) = stored_spans(org.id)
    assert row["cost"] == Decimal("0.000123456789")
    assert row["cost_source"] == "provided"


def test_the_same_span_sent_twice_is_stored_once():
    drain_everything()
    org, key = new_org()
    spans = [make_span("dup-trace", i) for i in range(20)]
    client = client_for(key)
    assert post_spans(client, spans).status_code == 202
    assert post_spans(client, spans).status_code == 202
    assert post_spans(client, spans[:5]).status_code == 202
    drain_everything()
    assert count_rows(org.id, final=True) == 20
    assert len(stored_spans(org.id)) == 20


def test_identical_bodies_are_stored_once_per_org():
    drain_everything()
    org, key = new_org()
    spans = [make_span("same-body", i, input="the same prompt", output="same") for i in range(30)]
    assert post_spans(client_for(key), spans).status_code == 202
    drain_everything()
    from llmops.clickhouse import get_client

    bodies = get_client().command(
        "SELECT count() FROM span_content FINAL WHERE org_id = {o:UInt64}",
        parameters={"o": org.id})
    assert bodies == 2
