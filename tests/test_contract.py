"""Contract slips (issue 11, item 6): unknown query parameters are a 400 naming them on every
GET endpoint; scores' since/until say what they filter on; evaluator model patterns ignore
case as prices do; every token count is bounded so sums cannot wrap; the cost report's
default window is served from the cache."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.core.cache import cache

from evaluation.models import EvaluatorConfig
from evaluation.services.matching import matches
from ingestion.schema import USAGE_FIELDS
from tests.ingest_helpers import (
    client_for,
    drain_everything,
    make_span,
    new_org,
    post_spans,
)

pytestmark = pytest.mark.django_db(transaction=True)

GET_ENDPOINTS = ["/api/v1/traces", "/api/v1/traces/t1", "/api/v1/spans", "/api/v1/sessions/s1",
                 "/api/v1/metrics", "/api/v1/costs", "/api/v1/scores"]


def recent(trace_id: str, index: int, **overrides) -> dict:
    start = datetime.now(UTC) - timedelta(minutes=5) + timedelta(seconds=index)
    return make_span(trace_id, index, start_time=start.isoformat(),
                     end_time=(start + timedelta(seconds=1)).isoformat(), **overrides)


@pytest.mark.parametrize("path", GET_ENDPOINTS)
def test_an_unknown_query_parameter_is_a_400_that_names_it(path):
    _, key = new_org()
    response = client_for(key).get(path, {"trace": "e1", "limit": 5} if path.endswith(
        ("traces", "spans", "scores")) else {"trace": "e1"})
    assert response.status_code == 400, (path, response.content)
    assert "trace" in response.json(), response.json()


def test_scores_trace_typo_no_longer_answers_every_score():
    _, key = new_org()
    client = client_for(key)
    sent = client.post("/api/v1/scores", {"scores": [
        {"trace_id": "e1", "name": "thumbs", "value": True},
        {"trace_id": "e2", "name": "thumbs", "value": False}]}, format="json")
    assert sent.status_code == 201, sent.content
    assert client.get("/api/v1/scores", {"trace": "e1"}).status_code == 400
    assert [s["trace_id"] for s in client.get("/api/v1/scores",
                                              {"trace_id": "e1"}).json()["scores"]] == ["e1"]


def test_scores_since_until_filter_on_the_timestamp_and_say_so():
    _, key = new_org()
    client = client_for(key)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    sent = client.post("/api/v1/scores", {"scores": [
        {"trace_id": "w1", "name": "late", "value": 1.0,
         "timestamp": hour_ago.isoformat()}]}, format="json")
    assert sent.status_code == 201, sent.content
    window = {"since": (hour_ago - timedelta(minutes=1)).isoformat(),
              "until": (hour_ago + timedelta(minutes=1)).isoformat()}
    assert [s["evaluator"] for s in client.get("/api/v1/scores", window).json()["scores"]] == [
        "late"]
    after = {"since": (hour_ago + timedelta(minutes=1)).isoformat()}
    assert client.get("/api/v1/scores", after).json()["scores"] == []
    schema = client.get("/api/schema/", {"format": "json"}).json()
    parameters = {p["name"]: p.get("description", "")
                  for p in schema["paths"]["/api/v1/scores"]["get"]["parameters"]}
    for name in ("since", "until"):
        assert "`timestamp`" in parameters[name], parameters[name]
        assert "written at" not in parameters[name] and "written before" not in parameters[name]


@pytest.mark.parametrize("pattern, model, matched", [
    ("GPT-4o*", "gpt-4o-mini", True),
    ("gpt-4o*", "GPT-4O-MINI", True),
    ("gpt-4o", "Gpt-4O", True),
    ("gpt-4o", "gpt-4o-mini", False),
    ("claude-*", "gpt-4o", False),
])
def test_evaluator_model_patterns_ignore_case_as_prices_do(pattern, model, matched):
    config = EvaluatorConfig(evaluator_type="regex", match_models=[pattern])
    assert matches(config, model=model, name="n", kind="llm", tags=[]) is matched


@pytest.mark.parametrize("field", USAGE_FIELDS)
def test_every_token_field_is_bounded_so_sums_cannot_wrap(field):
    bound = settings.INGEST_MAX_TOKENS
    # Sums are UInt64: at the default bound (10^8 tokens per field and span) a sum wraps only
    # past 1.8e11 spans of one org at the bound in one window, far more than can be stored.
    assert bound * 10**11 < 2**64
    _, key = new_org()
    usage = {"input_tokens": 1, "output_tokens": 1, field: bound + 1}
    over = post_spans(client_for(key), [recent("b", 0, usage=usage, cost=0.01)])
    assert over.status_code == 207, over.content
    [rejected] = over.json()["rejected"]
    assert f"usage.{field}" in rejected["errors"], rejected
    at_bound = {"input_tokens": bound, "output_tokens": bound, "cached_input_tokens": 0,
                "cache_write_tokens": 0, "total_tokens": bound, field: bound}
    if field in ("cached_input_tokens", "cache_write_tokens"):
        at_bound[field] = bound  # part of input_tokens: at most it, and it is at the bound
    accepted = post_spans(client_for(key), [recent("b", 1, usage=at_bound, cost=0.01)])
    assert accepted.status_code == 202, accepted.content


def test_the_default_cost_report_window_is_served_from_the_cache(clickhouse_queries):
    cache.clear()
    org, key = new_org()
    client = client_for(key)
    assert post_spans(client, [recent("c", 0)]).status_code == 202
    drain_everything()
    first = client.get("/api/v1/costs")
    assert (first.status_code, first["X-Cache"]) == (200, "miss"), first.content
    clickhouse_queries.clear()
    again = client.get("/api/v1/costs")
    assert again["X-Cache"] == "l2"
    assert again.content == first.content
    assert clickhouse_queries == []
    # Another requested window is another report.
    other = client.get("/api/v1/costs", {"bucket": "day"})
    assert other["X-Cache"] == "miss"
