"""Cost reports equal the sums over the stored spans, to the last decimal, duplicates or not."""

import random
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from costs.models import Price
from costs.services.reports import compute_report, exact_days, group_totals
from llmops.clickhouse import get_client
from tests.ingest_helpers import (
    client_for,
    days_ago,
    drain_everything,
    iso_z,
    new_org,
    post_spans,
    stored_spans,
)
from tests.query_workload import inherited

pytestmark = pytest.mark.django_db(transaction=True)

# Three whole days, ending a week ago: every rollup hour of them is complete.
DAY0 = days_ago(10)
DAYS = 3
MODELS = [("acme-large", "acme"), ("acme-small", "acme"), ("gpt-4o-mini", "openai"),
          ("unknown-model", ""), ("", "")]
COUNTS = ["spans", "input_tokens", "cached_input_tokens", "cache_write_tokens",
          "output_tokens", "total_tokens", "unpriced_spans", "estimated_spans"]


def _prices() -> None:
    Price.objects.create(provider="acme", model_name="acme-large", model_pattern=r"acme-large",
                         input_price=Decimal("3.141593"), output_price=Decimal("12.000007"),
                         cached_input_price=Decimal("0.314159"),
                         cache_write_price=Decimal("3.999999"),
                         effective_to=DAY0 + timedelta(days=1, hours=7))
    Price.objects.create(provider="acme", model_name="acme-large", model_pattern=r"acme-large",
                         input_price=Decimal("2.718282"), output_price=Decimal("9.999991"),
                         effective_from=DAY0 + timedelta(days=1, hours=7))
    Price.objects.create(provider="acme", model_name="acme-small", model_pattern=r"acme-small",
                         input_price=Decimal("0.000003"), output_price=Decimal("0.000011"))
    Price.objects.create(provider="openai", model_name="gpt-4o-mini", model_pattern=r"gpt-4o-mini",
                         input_price=Decimal("0.15"), output_price=Decimal("0.6"),
                         cached_input_price=Decimal("0.075"))


def _random_span(rng: random.Random, trace: str, index: int) -> dict:
    start = DAY0 + timedelta(microseconds=rng.randrange(DAYS * 86_400 * 10**6))
    model, provider = rng.choice(MODELS)
    # A trace's spans lie within a day (QUERY_TRACE_MAX_DAYS): its trace-level tags do too.
    trace = f"{trace}-{(start - DAY0).days}"
    span = {
        "trace_id": trace, "span_id": f"{trace}-{index}", "name": "call", "kind": "llm",
        "start_time": start.isoformat(), "end_time": (start + timedelta(seconds=1)).isoformat(),
        "model": model, "provider": provider,
        "user_id": f"user-{rng.randrange(4)}", "session_id": f"session-{rng.randrange(6)}",
        "environment": rng.choice(["production", "staging"]),
        "tags": rng.sample(["red", "green", "blue"], rng.randrange(3)),
    }
    kind = rng.random()
    if kind < 0.7:
        prompt = rng.randrange(1, 200_000)
        cached = rng.randrange(prompt + 1) if rng.random() < 0.5 else 0
        written = rng.randrange(prompt - cached + 1) if rng.random() < 0.3 else 0
        span["usage"] = {"input_tokens": prompt, "output_tokens": rng.randrange(50_000),
                         "cached_input_tokens": cached, "cache_write_tokens": written}
    elif kind < 0.85:
        span["input"] = "word " * rng.randrange(1, 300)  # no usage: estimated
        span["output"] = "reply " * rng.randrange(0, 100)
    if rng.random() < 0.1:
        span["cost"] = round(rng.random() / 7, 15)  # the client's own figure
    return span


def _send(key: str, spans: list[dict]) -> None:
    client = client_for(key)
    for start in range(0, len(spans), 200):
        response = post_spans(client, spans[start:start + 200])
        assert response.status_code == 202, response.content


def _expected(rows: list[dict], start: datetime, end: datetime, bucket: str,
              group_by: str | None) -> dict:
    """The report computed in Python from the stored spans (spans FINAL), row by row."""
    totals = defaultdict(int, cost=Decimal(0))
    buckets: dict = defaultdict(lambda: defaultdict(int, cost=Decimal(0)))
    unpriced: dict = defaultdict(int)
    for row in inherited(rows):  # users, sessions, tags: the trace's where none (issue 12)
        if not start <= row["start_time"] < end:
            continue
        values = {"spans": 1, "cost": row["cost"],
                  "unpriced_spans": int(row["cost_source"] == "unpriced"),
                  "estimated_spans": int(row["usage_source"] == "estimated"),
                  **{name: row[name] for name in COUNTS[1:6]}}
        moment = row["start_time"].replace(minute=0, second=0, microsecond=0)
        if bucket == "day":
            moment = moment.replace(hour=0)
        field = {None: None, "model": "model", "user": "user_id", "environment": "environment",
                 "session": "session_id", "tag": "tags"}[group_by]
        groups = [""] if field is None else (row[field] or [""]) if field == "tags" \
            else [row[field]]
        for group in groups:
            for name, value in values.items():
                buckets[(moment, group)][name] += value
        for name, value in values.items():
            totals[name] += value
        if row["cost_source"] == "unpriced":
            unpriced[(row["model"], row["provider"])] += 1

    def shown(measures: dict) -> dict:
        return {"cost": f"{measures['cost']:.12f}", **{name: measures[name] for name in COUNTS}}

    return {
        "totals": shown(totals),
        "buckets": [{"start": moment.isoformat().replace("+00:00", "Z"), "group": group,
                     **shown(measures)} for (moment, group), measures in sorted(buckets.items())],
        "unpriced_models": [{"model": model, "provider": provider, "spans": count}
                            for (model, provider), count in sorted(unpriced.items())],
    }


def _per_group(buckets: list[dict]) -> list[dict]:
    """A report's buckets summed per group, in group order."""
    sums: dict = defaultdict(lambda: defaultdict(int, cost=Decimal(0)))
    for row in buckets:
        sums[row["group"]]["cost"] += Decimal(row["cost"])
        for name in COUNTS:
            sums[row["group"]][name] += row[name]
    return [{"group": group, "cost": f"{sums[group]['cost']:.12f}",
             **{name: sums[group][name] for name in COUNTS}} for group in sorted(sums)]


WINDOWS = [
    (DAY0, DAY0 + timedelta(days=DAYS)),  # whole days
    (DAY0 + timedelta(hours=5, minutes=17, seconds=37, microseconds=11),
     DAY0 + timedelta(days=2, hours=18, microseconds=500_001)),  # ragged ends
    (DAY0 + timedelta(days=1, hours=3), DAY0 + timedelta(days=1, hours=4)),  # one hour
]


def _check(org_id: int, rows: list[dict]) -> list[dict]:
    reports = []
    for start, end in WINDOWS:
        for bucket in ("hour", "day"):
            for group_by in (None, "model", "user", "environment", "session", "tag"):
                report = compute_report(org_id=org_id, start=start, end=end, bucket=bucket,
                                        group_by=group_by)
                expected = _expected(rows, start, end, bucket, group_by)
                assert report["totals"] == expected["totals"], (start, end, bucket, group_by)
                assert report["buckets"] == expected["buckets"], (start, end, bucket, group_by)
                assert report["unpriced_models"] == expected["unpriced_models"]
                reports.append(report)
                if bucket == "day" and group_by is not None:  # the dashboard's top groups
                    assert group_totals(org_id=org_id, start=start, end=end,
                                        group_by=group_by) == _per_group(expected["buckets"])
    return reports


def _rollup_cost(org_id: int) -> Decimal:
    return Decimal(get_client().command(
        "SELECT sum(cost) FROM cost_hourly WHERE org_id = {o:UInt64}", parameters={"o": org_id}))


def test_random_workload_reports_equal_the_stored_spans_to_the_last_decimal():
    drain_everything()
    _prices()
    rng = random.Random(20261127)
    clean, clean_key = new_org()
    twice, twice_key = new_org()
    spans = [_random_span(rng, f"tr{n // 10}", n) for n in range(600)]
    _send(clean_key, spans)
    _send(twice_key, spans)
    drain_everything()
    # The same spans again for one org: a third as sent before, a third changed (an update:
    # other usage, model, user, start within its day), and no more than that.
    again = []
    for span in spans[::3]:
        changed = dict(span)
        if rng.random() < 0.5:
            changed.update(_random_span(rng, span["trace_id"], 0))
            changed["trace_id"], changed["span_id"] = span["trace_id"], span["span_id"]
            day = datetime.fromisoformat(span["start_time"]).replace(hour=0, minute=0, second=0,
                                                                     microsecond=0)
            start = day + timedelta(microseconds=rng.randrange(86_400 * 10**6))
            changed["start_time"] = start.isoformat()
            changed["end_time"] = (start + timedelta(seconds=2)).isoformat()
        again.append(changed)
    _send(twice_key, again)
    drain_everything()

    clean_rows, twice_rows = stored_spans(clean.id), stored_spans(twice.id)
    assert len(clean_rows) == len(twice_rows) == 600
    total = sum((row["cost"] for row in twice_rows), Decimal(0))
    assert total > 0 and {row["cost_source"] for row in twice_rows} == {
        "computed", "provided", "unpriced", "none"}
    assert {row["usage_source"] for row in twice_rows} == {"provided", "estimated", "none"}

    clean_reports = _check(clean.id, clean_rows)
    twice_reports = _check(twice.id, twice_rows)

    # The clean org's whole days came from the rollups, not from its spans...
    assert exact_days(org_id=clean.id, start=DAY0, end=DAY0 + timedelta(days=DAYS)) == {
        (DAY0 + timedelta(days=n)).date() for n in range(DAYS)}
    assert clean_reports[0]["sources"] == {"rollup_hours": DAYS * 24, "span_ranges": []}
    assert clean_reports[12]["sources"]["span_ranges"] == [  # ragged ends: only those
        {"from": iso_z(DAY0 + timedelta(hours=5, minutes=17, seconds=37, microseconds=11)),
         "to": iso_z(DAY0 + timedelta(hours=6))},
        {"from": iso_z(DAY0 + timedelta(days=2, hours=18)),
         "to": iso_z(DAY0 + timedelta(days=2, hours=18, microseconds=500_001))}]
    # ...while the rollups hold the resent spans twice, so those days were read from spans.
    assert _rollup_cost(twice.id) > total
    assert exact_days(org_id=twice.id, start=DAY0, end=DAY0 + timedelta(days=DAYS)) == set()
    assert twice_reports[0]["sources"]["span_ranges"] == [
        {"from": iso_z(DAY0), "to": iso_z(DAY0 + timedelta(days=DAYS))}]
    assert twice_reports[0]["totals"]["cost"] == f"{total:.12f}"


def test_a_span_sent_again_later_in_its_day_counts_where_it_now_starts():
    drain_everything()
    _prices()
    org, key = new_org()
    usage = {"input_tokens": 1000, "output_tokens": 10}

    def at(hour: int, index: int, **fields) -> dict:
        start = DAY0 + timedelta(hours=hour, minutes=30)
        return {"trace_id": "moved", "span_id": f"moved-{index}", "name": "call",
                "model": "acme-large", "provider": "acme", "usage": usage,
                "start_time": start.isoformat(),
                "end_time": (start + timedelta(seconds=1)).isoformat(), **fields}

    _send(key, [at(8, 0), at(9, 1)])
    drain_everything()
    # The same span again, now starting at 15:30 of the same day: stored once, there.
    _send(key, [at(15, 1, usage={"input_tokens": 7, "output_tokens": 7})])
    drain_everything()
    rows = stored_spans(org.id)
    morning = (DAY0, DAY0 + timedelta(hours=10))
    report = compute_report(org_id=org.id, start=morning[0], end=morning[1], bucket="hour",
                            group_by=None)
    assert report["totals"]["spans"] == 1  # 08:30 only: the other span left the morning
    assert report["totals"] == _expected(rows, *morning, "hour", None)["totals"]
    assert exact_days(org_id=org.id, start=morning[0], end=morning[1]) == set()


def test_the_api_answers_from_cache_until_new_costs_land():
    drain_everything()
    _prices()
    org, key = new_org()
    rng = random.Random(7)
    _send(key, [_random_span(rng, "api", n) for n in range(50)])
    drain_everything()
    client = client_for(key)
    query = {"from": iso_z(DAY0), "to": iso_z(DAY0 + timedelta(days=DAYS)), "bucket": "day",
             "group_by": "model"}

    first = client.get("/api/v1/costs", query)
    assert first.status_code == 200, first.content
    assert first["X-Cache"] == "miss"
    second = client.get("/api/v1/costs", query)
    assert second["X-Cache"] == "l2" and second.content == first.content
    body = orjson.loads(first.content)
    rows = stored_spans(org.id)
    assert body["totals"]["cost"] == f"{sum((r['cost'] for r in rows), Decimal(0)):.12f}"
    assert body["currency"] == "USD" and body["group_by"] == "model"

    late = _random_span(rng, "api", 99)
    late.update(usage={"input_tokens": 1_000_000, "output_tokens": 0}, model="acme-small",
                provider="acme", start_time=iso_z(DAY0 + timedelta(days=1, hours=10)),
                end_time=iso_z(DAY0 + timedelta(days=1, hours=10, seconds=1)))
    late.pop("cost", None)
    _send(key, [late])
    drain_everything()
    third = client.get("/api/v1/costs", query)
    assert third["X-Cache"] == "miss"
    cost = Decimal(orjson.loads(third.content)["totals"]["cost"])
    assert cost == Decimal(body["totals"]["cost"]) + Decimal("0.000003")

    for bad, field in (({"bucket": "week"}, "bucket"), ({"group_by": "color"}, "group_by"),
                       ({"from": iso_z(DAY0 + timedelta(days=3)),
                         "to": iso_z(DAY0 + timedelta(days=2))}, "from"),
                       ({"colour": "red"}, "colour")):
        response = client.get("/api/v1/costs", {**query, **bad})
        assert response.status_code == 400 and field in response.json(), response.content
    assert client_for("llm_wrong").get("/api/v1/costs", query).status_code == 401
