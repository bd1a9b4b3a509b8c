"""Degradation level 3 (content dropped at the API) with the real drain: a span with a model
and content but no usage is priced from tokens counted before its content was dropped, never
stored as a silent $0 'computed'."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from costs.models import Price
from operations.models import DegradationLevel
from operations.services.degradation import forget_cached_level, set_manual_level
from tests.ingest_helpers import (
    client_for,
    drain_everything,
    make_span,
    new_org,
    post_spans,
    stored_spans,
)

# The level and the prices must be committed: the drainer reads them on its own connections.
pytestmark = pytest.mark.django_db(transaction=True)


def at_level(level: int | None) -> None:
    set_manual_level(level, reason="test", changed_by="tests")
    forget_cached_level()


def recent(trace_id: str, index: int, **overrides) -> dict:
    start = datetime.now(UTC) - timedelta(minutes=5) + timedelta(seconds=index)
    return make_span(trace_id, index, start_time=start.isoformat(),
                     end_time=(start + timedelta(seconds=1)).isoformat(), **overrides)


def test_level_3_prices_content_less_spans_from_tokens_counted_before_the_drop(settings):
    settings.INGEST_DEGRADED_SAMPLE_RATE = 1.0  # level 3 samples too: keep every span here
    price = Price.objects.create(provider="acme", model_name="lvl3-chat",
                                 model_pattern="lvl3-chat", input_price=Decimal("2"),
                                 output_price=Decimal("8"))
    drain_everything()
    org, key = new_org()
    normal, normal_key = new_org()
    content = dict(provider="acme", usage=None, input=[{"role": "user", "content": "Why?"}],
                   output="Because the sky scatters blue light more than red.")
    spans = [
        recent("l3", 0, model="lvl3-chat", **content),  # priced by counted tokens
        recent("l3", 1, model="no-such-model-l3", **content),  # no price: unpriced
        recent("l3", 2, model="lvl3-chat", provider="acme",
               usage={"input_tokens": 10, "output_tokens": 5}),  # reported usage: as sent
        recent("l3", 3, model="lvl3-chat", cost=0.5, **content),  # its cost, counted tokens
    ]
    assert post_spans(client_for(normal_key), spans).status_code == 202  # level 0: reference
    at_level(DegradationLevel.ESSENTIAL_ONLY)
    try:
        assert post_spans(client_for(key), spans).status_code == 202
    finally:
        at_level(None)
    drain_everything()
    rows = {row["span_id"]: row for row in stored_spans(org.id)}
    reference = {row["span_id"]: row for row in stored_spans(normal.id)}
    assert all(not row["input_content"] and not row["output_content"] for row in rows.values())

    counted, same = rows["l3-s0"], reference["l3-s0"]
    assert counted["input_tokens"] > 0 and counted["output_tokens"] > 0
    assert (counted["input_tokens"], counted["output_tokens"], counted["total_tokens"]) == (
        same["input_tokens"], same["output_tokens"], same["total_tokens"])
    assert counted["usage_source"] == "estimated"
    assert counted["cost"] == same["cost"] == (
        Decimal(counted["input_tokens"]) * 2 + Decimal(counted["output_tokens"]) * 8) / 10**6
    assert counted["cost"] > 0
    assert (counted["cost_source"], counted["price_id"]) == ("computed", price.id)

    unpriced = rows["l3-s1"]
    assert (unpriced["cost_source"], unpriced["cost"], unpriced["price_id"]) == (
        "unpriced", 0, 0)
    assert unpriced["input_tokens"] == reference["l3-s1"]["input_tokens"] > 0

    reported = rows["l3-s2"]
    assert (reported["input_tokens"], reported["output_tokens"], reported["usage_source"]) == (
        10, 5, "provided")
    with_cost = rows["l3-s3"]
    assert (with_cost["cost_source"], with_cost["cost"]) == ("provided", Decimal("0.5"))
    assert (with_cost["input_tokens"], with_cost["usage_source"]) == (
        reference["l3-s3"]["input_tokens"], "estimated")
    # Never a silent $0 computed: a computed span at level 3 has tokens or a cost.
    assert not [r for r in rows.values() if r["cost_source"] == "computed" and r["cost"] == 0]
