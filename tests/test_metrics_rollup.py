"""The span metrics' hourly rollup (span_metrics_hourly): the metrics API and the Overview
answer from it, and their answers equal the reads over `spans FINAL` alone, with spans resent,
updated, moved to another day (a tombstone), traces over an hour and a day boundary, user,
session and tags on the root span only, and several orgs sharing the same hours."""

import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.core.cache import cache
from django.test import override_settings

from dashboard.charts import services as charts
from ingestion.models import ApiKey, Org
from ingestion.query import hourly, selectors
from ingestion.services.span_metrics import rebuild_span_metrics
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

pytestmark = pytest.mark.django_db(transaction=True)

DAY0 = days_ago(4)  # three whole days from here, the last one ending yesterday at midnight
DAYS = [(DAY0 + timedelta(days=n)).date() for n in range(3)]
WINDOWS = [
    (DAY0, DAY0 + timedelta(days=3)),  # whole days
    (DAY0 + timedelta(hours=5, minutes=17, seconds=37, microseconds=11),
     DAY0 + timedelta(days=2, hours=18, microseconds=500_001)),  # ragged ends
    (DAY0 + timedelta(hours=10), DAY0 + timedelta(hours=11)),  # one hour
]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet"]
KINDS = ["llm", "llm", "tool", "retrieval", "chain"]


def _trace(rng: random.Random, number: int, start: datetime) -> list[dict]:
    """A root carrying the trace's user, session and tags, and children without them, over
    up to two hours after it."""
    trace_id = f"trace-{number:03d}"
    spans = []
    for index in range(rng.randint(2, 6)):
        begin = start + timedelta(seconds=index * rng.uniform(0, 1500))
        kind = "agent" if index == 0 else rng.choice(KINDS)
        span = {
            "trace_id": trace_id, "span_id": f"{trace_id}-{index}",
            "parent_span_id": f"{trace_id}-0" if index else None,
            "name": "run" if index == 0 else f"{kind} step", "kind": kind,
            "start_time": iso_z(begin), "status": "error" if rng.random() < 0.15 else "ok",
            "model": rng.choice(MODELS) if kind == "llm" else "",
            "usage": {"input_tokens": rng.randrange(2000), "output_tokens": rng.randrange(500)},
            "cost": round(rng.random() / 7, 9),
            "environment": rng.choice(["production", "staging"]),
            "user_id": "", "session_id": "", "tags": [],
        }
        if rng.random() < 0.9:  # the others are still open (no end, no latency)
            span["end_time"] = iso_z(begin + timedelta(milliseconds=rng.lognormvariate(6, 1)))
        if index == 0:
            span.update(user_id=f"user-{number % 3}", session_id=f"sess-{number % 4}",
                        tags=["prod", f"t{number % 2}"])
        spans.append(span)
    return spans


def _workload() -> list[dict]:
    rng = random.Random(20261129)
    spans = []
    for number in range(24):
        start = DAY0 + timedelta(seconds=rng.uniform(0, 3 * 86400 - 7200))
        spans += _trace(rng, number, start)
    # Across an hour and across midnight: one trace, counted once per window.
    spans += _trace(rng, 100, DAY0 + timedelta(hours=10, minutes=59, seconds=50))
    midnight = DAY0 + timedelta(days=1)
    spans += [{**span, "start_time": iso_z(midnight + timedelta(seconds=offset)),
               "end_time": iso_z(midnight + timedelta(seconds=offset + 1))}
              for span, offset in zip(_trace(rng, 101, midnight)[:2], (-30, 30), strict=True)]
    return spans


def _send(key: str, spans: list[dict]) -> None:
    response = post_spans(client_for(key), spans)
    assert response.status_code == 202, response.content
    drain_everything()


def _on_day(span: dict, day: int) -> bool:
    return span["start_time"].startswith(DAYS[day].isoformat())


@pytest.fixture(scope="module")
def orgs(django_db_setup, django_db_blocker):
    """messy: resent spans (day 0), newer versions and a span moved away, leaving a
    tombstone (day 1), and that span's new version (day 2); clean: the same spans, sent once;
    other: another org at the same hours, with other values."""
    with django_db_blocker.unblock():
        drain_everything()
        spans = _workload()
        (messy, messy_key), (clean, clean_key), (other, other_key) = (new_org() for _ in "abc")
        _send(messy_key, spans)
        _send(clean_key, spans)
        _send(other_key, [{**span, "model": "other-model", "environment": "other",
                           "usage": {"input_tokens": 99_999, "output_tokens": 1}}
                          for span in spans[::3]])
        resent = [span for span in spans if _on_day(span, 0)][::2]
        updated = [{**span, "model": "gpt-4o", "status": "error",
                    "usage": {"input_tokens": 7, "output_tokens": 7}}
                   for span in spans if _on_day(span, 1) and span["parent_span_id"]][::3]
        mover = next(span for span in spans if _on_day(span, 1) and span["parent_span_id"]
                     and span not in updated)
        moved_start = datetime.fromisoformat(mover["start_time"]) + timedelta(days=1)
        moved = {**mover, "start_time": iso_z(moved_start),
                 "end_time": iso_z(moved_start + timedelta(seconds=3))}
        _send(messy_key, resent + updated + [moved])
        yield {"messy": messy, "clean": clean, "other": other}


@pytest.fixture(autouse=True)
def rollup_for_short_windows(settings):
    """These windows are days long: the rollup serves them too (by default, longer ones)."""
    settings.QUERY_METRICS_ROLLUP_MIN_HOURS = 0


def _exact(read, *args, **kwargs):
    """The answer over `spans FINAL` alone (the rollup switched off), from no cache."""
    cache.clear()
    with override_settings(QUERY_METRICS_ROLLUP=False):
        return read(*args, **kwargs)


def _both(read, *args, **kwargs):
    """(as read now, from the rollup where exact; over spans FINAL alone)."""
    cache.clear()
    return read(*args, **kwargs), _exact(read, *args, **kwargs)


def _overview(org_id: int, win: charts.Window) -> dict:
    return orjson.loads(selectors.to_json(charts.overview(org_id, win)))


def _org_row(org: Org) -> Org:
    """The org's row: a test of this module flushes the SQL database after it (not the
    spans in ClickHouse), so the next one may need it back."""
    return Org.objects.get_or_create(id=org.id, defaults={"slug": org.slug})[0]


def _metrics(org_id: int, start: datetime, end: datetime, bucket: str, group: str,
             **filters) -> dict:
    return selectors.span_metrics(org_id=org_id, params={
        "from": start, "to": end, "bucket": bucket, "group_by": group, **filters})


# (window, bucket, group) read for each org: every group and bucket over whole days, a few
# over the ragged and the one-hour windows.
CASES = ([(WINDOWS[0], bucket, group) for bucket in ("hour", "day")
          for group in ("none", "model", "kind", "environment")]
         + [(window, bucket, group) for window in WINDOWS[1:]
            for bucket, group in (("hour", "model"), ("day", "kind"), ("hour", "none"),
                                  ("day", "environment"))])


def test_metrics_from_the_rollup_equal_the_spans(orgs):
    for who, org in orgs.items():
        points = []
        for (start, end), bucket, group in CASES if who != "other" else CASES[:8:2]:
            fast, exact = _both(_metrics, org.id, start, end, bucket, group)
            assert fast == exact, (who, start, end, bucket, group)
            points.append(len(exact["series"]))
        assert min(points) > 0 or who == "other" and min(points[:4]) > 0, (who, points)


def test_the_rollup_is_read_where_exact_and_trace_level_filters_read_spans(
        orgs, clickhouse_queries):
    messy, clean = orgs["messy"], orgs["clean"]
    start, end = WINDOWS[0]
    inserted = get_client().command(
        "SELECT sum(spans) FROM span_metrics_hourly WHERE org_id = {o:UInt64}",
        parameters={"o": messy.id})
    assert inserted > len(stored_spans(messy.id))  # resent spans and a tombstone, summed
    assert hourly.window(org_id=clean.id, start=start, end=end).scan == []
    # Day 2 holds the moved span's newest version once: exact; days 0 and 1 are not.
    assert hourly.window(org_id=messy.id, start=start, end=end).scan == [
        (DAY0, DAY0 + timedelta(days=2))]

    clickhouse_queries.clear()
    cache.clear()
    _metrics(clean.id, start, end, "hour", "model")
    charts.traces_per_bucket(clean.id, charts.Window("7d", start, end, "hour", "hour"))
    # Besides the exact-days checks (llmops.rollups.exact_days) of span_metrics_hourly:
    reads = [sql for sql, _ in clickhouse_queries if "sum(key_sum)" not in sql]
    assert len(reads) == 2 and all("span_metrics_hourly" in sql and "spans FINAL" not in sql
                                   for sql in reads), reads
    clickhouse_queries.clear()
    _metrics(messy.id, start, end, "hour", "model")  # days 0 and 1 from spans, 2 from rollup
    assert "span_metrics_hourly" in clickhouse_queries[-1][0]
    assert "spans FINAL" in clickhouse_queries[-1][0]

    clickhouse_queries.clear()
    with override_settings(QUERY_METRICS_ROLLUP_MIN_HOURS=24):  # a day: read from spans
        _metrics(clean.id, start, start + timedelta(hours=24), "hour", "model")
    for filters in ({"user_id": "user-1"}, {"session_id": "sess-2"}, {"tag": "t0"}):
        fast, exact = _both(_metrics, messy.id, start, end, "hour", "model", **filters)
        assert fast == exact and fast["series"], filters
    assert not [sql for sql, _ in clickhouse_queries if "span_metrics_hourly" in sql]

    # The API's answer, from the rollup, is the one over the spans.
    _, key = ApiKey.issue(_org_row(clean))
    cache.clear()
    ragged = WINDOWS[1]
    response = client_for(key).get("/api/v1/metrics", {
        "from": iso_z(ragged[0]), "to": iso_z(ragged[1]), "bucket": "hour",
        "group_by": "model"})
    assert response.status_code == 200, response.content
    assert "span_metrics_hourly" in clickhouse_queries[-1][0]
    exact = _exact(_metrics, clean.id, *ragged, "hour", "model")
    assert orjson.loads(response.content) == orjson.loads(selectors.to_json(exact))


def test_the_overview_from_the_rollup_equals_the_spans(orgs):
    now = datetime.now(UTC)
    for org in (orgs["messy"], orgs["clean"]):
        traces = {span["trace_id"] for span in stored_spans(org.id)}
        for key in ("7d", "30d"):
            fast, exact = _both(_overview, org.id, charts.window(key, now))
            assert fast == exact, key
            assert fast["totals"]["traces"] == len(traces)  # each once, over hours and days
            assert fast["top_names"] and fast["top_models"]
        # The trace across midnight counts on its first day only, that across 10:59 once.
        win = charts.Window("3d", *WINDOWS[0], "day", "day")
        per_day = hourly.traces_per_bucket(org_id=org.id, start=win.start, end=win.end,
                                           bucket="day")
        assert per_day == _exact(charts.traces_per_bucket, org.id, win)


def test_a_rebuild_makes_the_days_exact_again_until_a_span_comes_again(orgs):
    messy = orgs["messy"]
    rebuild_span_metrics(org_id=messy.id, days=DAYS)
    start, end = WINDOWS[0]
    assert hourly.window(org_id=messy.id, start=start, end=end).scan == []  # now remembered
    for bucket, group in (("hour", "model"), ("day", "kind")):
        fast, exact = _both(_metrics, messy.id, start, end, bucket, group)
        assert fast == exact, (bucket, group)
    # A span sent once more on day 2, with other figures: that day is no longer exact.
    _, key = ApiKey.issue(_org_row(messy))
    again = next(span for span in stored_spans(messy.id) if span["start_time"].date() == DAYS[2])
    _send(key, [{"trace_id": again["trace_id"], "span_id": again["span_id"], "name": "again",
                 "kind": "tool", "start_time": iso_z(again["start_time"]),
                 "end_time": iso_z(again["start_time"] + timedelta(seconds=9))}])
    assert hourly.window(org_id=messy.id, start=start, end=end).scan == [
        (DAY0 + timedelta(days=2), end)]
    fast, exact = _both(_metrics, messy.id, start, end, "hour", "kind")
    assert fast == exact
