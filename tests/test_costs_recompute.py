"""recompute_costs after a price fix: spans, rollups and reports all show the fixed price."""

from datetime import datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from django.core.management import call_command

from costs.models import Price
from costs.services.reports import exact_days
from llmops.clickhouse import get_client
from tests.ingest_helpers import (
    client_for,
    count_rows,
    days_ago,
    drain_everything,
    make_span,
    new_org,
    post_spans,
    stored_spans,
)

pytestmark = pytest.mark.django_db(transaction=True)

DAY_A = days_ago(12)
DAY_B = DAY_A + timedelta(days=1)


def _span(trace: str, index: int, day: datetime, **fields) -> dict:
    start = day + timedelta(hours=index, minutes=index)
    return make_span(trace, index, start_time=start.isoformat(),
                     end_time=(start + timedelta(seconds=1)).isoformat(), **fields)


def _rollup(org_id: int, day: datetime) -> tuple:
    return get_client().query(
        "SELECT sum(cost), sum(spans) FROM cost_hourly"
        " WHERE org_id = {o:UInt64} AND toDate(hour) = {d:Date}",
        parameters={"o": org_id, "d": day.date()}).result_rows[0]


def test_recompute_after_a_price_fix_changes_spans_rollups_and_reports():
    drain_everything()
    # An operator typed 30 where 3 was meant.
    price = Price.objects.create(provider="acme", model_name="acme-large",
                                 model_pattern="acme-large", input_price=Decimal("30"),
                                 output_price=Decimal("15"))
    org, key = new_org()
    usage = {"input_tokens": 1000, "output_tokens": 100}
    spans = [_span("a", i, DAY_A, model="acme-large", provider="acme", usage=usage)
             for i in range(4)]
    spans += [_span("b", i, DAY_B, model="acme-large", provider="acme", usage=usage)
              for i in range(6)]
    spans += [_span("b", 10, DAY_B, model="acme-large", provider="acme", usage=usage,
                    cost=0.25),  # the client's own figure stays
              _span("b", 11, DAY_B, model="mystery", usage=usage)]
    # One span of day B sent twice: its day's rollups count it twice until rebuilt.
    client = client_for(key)
    assert post_spans(client, spans).status_code == 202
    assert post_spans(client, spans[5:6]).status_code == 202
    drain_everything()
    query = {"from": DAY_A.isoformat(), "to": (DAY_B + timedelta(days=1)).isoformat(),
             "bucket": "day"}
    before = orjson.loads(client.get("/api/v1/costs", query).content)
    # 1,000 x 30 + 100 x 15 = 31,500 per M = 0.0315 each; 9 + 1 provided 0.25.
    assert before["totals"]["cost"] == f"{Decimal('0.0315') * 10 + Decimal('0.25'):.12f}"
    assert exact_days(org_id=org.id, start=DAY_A, end=DAY_B + timedelta(days=1)) == {
        DAY_A.date()}

    price.input_price = Decimal("3")
    price.save()
    call_command("recompute_costs", "--org", org.slug, "--from", DAY_B.date().isoformat(),
                 "--to", (DAY_B + timedelta(days=1)).date().isoformat())

    rows = {row["span_id"]: row for row in stored_spans(org.id)}
    fixed, wrong = Decimal("0.0045"), Decimal("0.0315")  # 1,000 x 3 + 100 x 15 = 4,500 per M
    assert [rows[f"a-s{i}"]["cost"] for i in range(4)] == [wrong] * 4  # outside the window
    assert [rows[f"b-s{i}"]["cost"] for i in range(6)] == [fixed] * 6
    assert all(rows[f"b-s{i}"]["price_id"] == price.id for i in range(6))
    assert (rows["b-s10"]["cost"], rows["b-s10"]["cost_source"]) == (Decimal("0.25"),
                                                                     "provided")
    assert rows["b-s11"]["cost_source"] == "unpriced"
    assert count_rows(org.id, final=True) == 12

    # The rollups follow: day B rebuilt from the stored spans, each counted once again.
    assert _rollup(org.id, DAY_B) == (fixed * 6 + Decimal("0.25"), 8)
    assert _rollup(org.id, DAY_A) == (wrong * 4, 4)
    assert exact_days(org_id=org.id, start=DAY_A, end=DAY_B + timedelta(days=1)) == {
        DAY_A.date(), DAY_B.date()}
    response = client.get("/api/v1/costs", query)
    assert response["X-Cache"] == "miss"  # the cached report was dropped
    after = orjson.loads(response.content)
    assert after["totals"]["cost"] == f"{wrong * 4 + fixed * 6 + Decimal('0.25'):.12f}"
    assert after["sources"] == {"rollup_hours": 48, "span_ranges": []}
    assert [b["cost"] for b in after["buckets"]] == [
        f"{wrong * 4:.12f}", f"{fixed * 6 + Decimal('0.25'):.12f}"]

    # Run again with nothing to fix: nothing is rewritten, the sums stay.
    call_command("recompute_costs", "--org", str(org.id), "--from", DAY_B.isoformat(),
                 "--to", (DAY_B + timedelta(days=1)).isoformat())
    assert _rollup(org.id, DAY_B) == (fixed * 6 + Decimal("0.25"), 8)
