"""Issue 11, items 1-3 and two contract slips: every read answers from the newest version of
each span, a span moved to another day or month is one span, derived tables follow an
emergency TTL, zero cost prints one way and an unknown end is null."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from costs.models import Price
from ingestion.query.views import hot_traces
from llmops.clickhouse import get_client
from operations.services.retention import TTL_TABLES, set_spans_ttl
from tests.ingest_helpers import client_for, drain_everything, new_org, post_spans
from tests.query_workload import wait_for_settle

pytestmark = pytest.mark.django_db(transaction=True)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def send(key: str, spans: list[dict]) -> None:
    response = post_spans(client_for(key), spans)
    assert response.status_code == 202, response.content


def drain() -> None:
    """Store what was sent, and let listings see it (QUERY_LIST_SETTLE_MS)."""
    drain_everything()
    wait_for_settle()


def get(key: str, path: str, **params) -> dict:
    from django.core.cache import cache

    cache.clear()  # each read computes its answer
    hot_traces.clear()
    response = client_for(key).get(path, params)
    assert response.status_code == 200, (path, params, response.content)
    return response.json()


def span(trace: str, start: datetime, **fields) -> dict:
    return {"trace_id": trace, "span_id": f"{trace}-root", "name": "call", "kind": "llm",
            "start_time": iso(start), "end_time": iso(start + timedelta(seconds=2)),
            "model": "acme-one", "provider": "acme",
            "usage": {"input_tokens": 1000, "output_tokens": 100}, **fields}


def listed(key: str, start: datetime, end: datetime, **filters) -> list[dict]:
    return get(key, "/api/v1/traces", **{"from": iso(start), "to": iso(end)}, **filters)["items"]


def hour_ago() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def test_listings_match_the_newest_version_only():
    """Item 1: filters, windows and columns of trace list, span search, sessions, metrics."""
    drain_everything()
    org, key = new_org()
    base = hour_ago()
    send(key, [span("t1", base + timedelta(minutes=50), status="error", model="gpt-4o",
                    user_id="alice", tags=["bad"], name="first-name", session_id="s-old")])
    drain()
    send(key, [span("t1", base + timedelta(minutes=55), status="ok", model="gpt-4o-mini",
                    user_id="bob", tags=["good"], name="renamed", session_id="s-new")])
    drain()
    window = (base, base + timedelta(hours=2))
    for stale in ({"status": "error"}, {"model": "gpt-4o"}, {"user_id": "alice"},
                  {"tag": "bad"}, {"name": "first"}, {"session_id": "s-old"}):
        assert listed(key, *window, **stale) == [], stale
        assert get(key, "/api/v1/spans", **{"from": iso(window[0]), "to": iso(window[1])},
                   **stale)["items"] == [], stale
    [item] = listed(key, *window, status="ok", model="gpt-4o-mini", user_id="bob", tag="good",
                    name="renamed", session_id="s-new")
    assert (item["status"], item["user_id"], item["name"], item["tags"]) == (
        "ok", "bob", "renamed", ["good"])
    assert item["start_time"] == iso(base + timedelta(minutes=55))
    assert listed(key, base + timedelta(minutes=49), base + timedelta(minutes=51)) == []
    [item] = listed(key, base + timedelta(minutes=52), base + timedelta(minutes=60))
    assert item["trace_id"] == "t1"
    assert get(key, "/api/v1/sessions/s-new")["traces"][0]["trace_id"] == "t1"
    assert client_for(key).get("/api/v1/sessions/s-old").status_code == 404
    metrics = get(key, "/api/v1/metrics", **{"from": iso(window[0]), "to": iso(window[1])},
                  bucket="minute", group_by="model")
    assert [(p["bucket_start"], p["group"], p["span_count"], p["error_count"])
            for p in metrics["series"]] == [
        (iso(base + timedelta(minutes=55)), "gpt-4o-mini", 1, 0)]


@pytest.mark.parametrize("boundary", ["day", "month"])
def test_a_span_resent_on_another_day_or_month_is_one_span(boundary):
    """Item 2: sent at 23:30, resent at 00:30 the next day (or month): one span everywhere."""
    drain_everything()
    Price.objects.create(provider="acme", model_name="acme-one", model_pattern="acme-one",
                         input_price=Decimal("1.5"), output_price=Decimal("2"))
    org, key = new_org()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    midnight = today.replace(day=1) if boundary == "month" else today
    before, after = midnight - timedelta(minutes=30), midnight + timedelta(minutes=30)
    send(key, [span("moved", before, user_id="u1")])
    drain()
    send(key, [span("moved", after, user_id="u2",
                    usage={"input_tokens": 2000, "output_tokens": 100})])
    drain()
    window = (midnight - timedelta(days=1), midnight + timedelta(days=1))
    one_cost = Decimal("2000") * Decimal("1.5") / 10**6 + Decimal("100") * 2 / 10**6
    detail = get(key, "/api/v1/traces/moved")
    assert detail["span_count"] == 1 and len(detail["spans"]) == 1
    assert detail["start_time"] == iso(after) and Decimal(detail["cost"]) == one_cost
    [item] = listed(key, *window)
    assert item["span_count"] == 1 and item["start_time"] == iso(after)
    assert listed(key, midnight - timedelta(hours=1), midnight) == []
    found = get(key, "/api/v1/spans", **{"from": iso(window[0]), "to": iso(window[1])})
    assert [(s["span_id"], s["user_id"]) for s in found["items"]] == [("moved-root", "u2")]
    for group_by in (None, "user", "model", "tag", "session", "environment"):
        params = {"from": iso(window[0]), "to": iso(window[1]), "bucket": "day"}
        if group_by:
            params["group_by"] = group_by
        report = get(key, "/api/v1/costs", **params)
        assert report["totals"]["spans"] == 1, group_by
        assert Decimal(report["totals"]["cost"]) == one_cost, group_by
        assert [(b["start"], b["spans"]) for b in report["buckets"]] == [
            (iso(midnight), 1)], group_by
        if group_by == "user":
            assert [b["group"] for b in report["buckets"]] == ["u2"]


def test_emergency_ttl_reaches_the_derived_tables():
    """Item 3: after a shortened TTL, a cost report and a listing count only what is kept."""
    drain_everything()
    Price.objects.create(provider="acme", model_name="acme-one", model_pattern="acme-one",
                         input_price=Decimal("1"), output_price=Decimal("1"))
    org, key = new_org()
    now = datetime.now(UTC).replace(microsecond=0)
    old, recent = now - timedelta(days=10), now - timedelta(hours=1)
    send(key, [span("old", old), span("recent", recent)])
    drain()
    window = {"from": iso(old - timedelta(days=1)), "to": iso(now)}
    assert get(key, "/api/v1/costs", **window)["totals"]["spans"] == 2
    client = get_client()
    try:
        set_spans_ttl(days=5, reason="pytest: storage full", changed_by="pytest")
        for table in {"spans", "trace_index", "cost_hourly", *TTL_TABLES}:
            client.command(f"OPTIMIZE TABLE {table} FINAL")
        report = get(key, "/api/v1/costs", **window)
        assert report["totals"]["spans"] == 1
        page = get(key, "/api/v1/traces", **window, limit=1)
        assert [i["trace_id"] for i in page["items"]] == ["recent"]
        assert page["next_cursor"] is None
        old_only = listed(key, old - timedelta(hours=1), old + timedelta(hours=1))
        assert old_only == []
    finally:
        set_spans_ttl(days=90, reason="pytest: restored", changed_by="pytest")


def test_zero_cost_prints_one_way_and_an_unknown_end_is_null():
    """Item 6: "0.000000000000" in traces, spans and the cost report; no end_time is null."""
    drain_everything()
    org, key = new_org()
    start = hour_ago()
    send(key, [{"trace_id": "free", "span_id": "free-1", "name": "tool", "kind": "tool",
                "start_time": iso(start)}])
    drain()
    window = {"from": iso(start - timedelta(hours=1)), "to": iso(start + timedelta(hours=1))}
    [item] = get(key, "/api/v1/traces", **window)["items"]
    detail = get(key, "/api/v1/traces/free")
    [found] = get(key, "/api/v1/spans", **window)["items"]
    report = get(key, "/api/v1/costs", **window)
    zero = "0.000000000000"
    assert item["cost"] == detail["cost"] == detail["spans"][0]["cost"] == found["cost"] == zero
    assert report["totals"]["cost"] == zero
    for trace in (item, detail):
        assert trace["end_time"] is None and trace["duration_ms"] is None
    assert detail["spans"][0]["end_time"] is None and found["duration_ms"] is None


def test_the_migration_resolves_spans_already_stored_on_two_days():
    """Item 2 for data stored before the fix: migration 0011 writes the tombstones and
    span_keys for spans already stored twice, so reads see one span from the start."""
    import uuid

    from llmops import clickhouse_migrations
    from llmops.clickhouse import new_client

    name = f"llmops_mig_{uuid.uuid4().hex[:8]}_test"
    admin = new_client(database="default")
    admin.command(f"CREATE DATABASE `{name}`")
    scoped = new_client(database=name)
    try:
        migrations = clickhouse_migrations.discover()
        for migration in migrations:
            if migration.name.startswith("0011"):
                continue
            for statement in migration.statements():
                scoped.command(statement)
        scoped.command("""
            INSERT INTO spans (org_id, trace_id, span_id, start_time, received_at, version,
                               cost, status)
            VALUES (1, 't', 's', now64(6) - INTERVAL 2 DAY, now64(6), 1, 1.5, 'error'),
                   (1, 't', 's', now64(6) - INTERVAL 1 HOUR, now64(6), 2, 2.5, 'ok'),
                   (1, 't', 'other', now64(6) - INTERVAL 1 HOUR, now64(6), 1, 1, 'ok')""")
        [migration] = [m for m in migrations if m.name.startswith("0011")]
        for statement in migration.statements() + migration.backfill_statements():
            scoped.command(statement)
        live = scoped.query("SELECT span_id, version, cost, status FROM spans FINAL"
                            " WHERE is_deleted = 0 ORDER BY span_id").result_rows
        assert [(r[0], r[1], str(r[2]), r[3]) for r in live] == [
            ("other", 1, "1.000000000000", "ok"), ("s", 2, "2.500000000000", "ok")]
        keys = scoped.query("SELECT span_id, version, start_time > now64(6) - INTERVAL 1 DAY"
                            " FROM span_keys FINAL ORDER BY span_id").result_rows
        assert keys == [("other", 1, 1), ("s", 2, 1)]
    finally:
        admin.command(f"DROP DATABASE IF EXISTS `{name}` SYNC")
