"""Hourly rollups read exactly: which hours of a window a rollup table answers (days where it
counts every stored span once) and which are read from `spans FINAL` instead.

A rollup fed from `spans` by a materialized view sums every version of a span ever inserted
(a client resending it, a newer version, a tombstone), while `spans FINAL` keeps one. Such a
rollup keeps, per row, `spans` (rows inserted) and `span_keys` (uniqExact state of the spans'
keys): where the two agree over a whole day, no span of that day was inserted twice, and its
rows are exact. The cost report (costs.services.reports) and the span metrics
(ingestion.query.hourly) both plan their reads with this."""

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import redis
from django.conf import settings

from llmops.clickhouse import get_client
from llmops.redis import get_redis

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Plan:
    """Where each part of a window is read from: whole hours of days whose rollups count every
    span once, from the rollup; everything else (days holding a span stored twice, the
    partial hours at the window's ends), from spans FINAL."""

    rollup: list[tuple[datetime, datetime]]
    scan: list[tuple[datetime, datetime]]


def _ceil_hour(moment: datetime) -> datetime:
    floor = moment.replace(minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + HOUR


def _merged(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    result: list[tuple[datetime, datetime]] = []
    for start, end in ranges:
        if start >= end:
            continue
        if result and result[-1][1] == start:
            result[-1] = (result[-1][0], end)
        else:
            result.append((start, end))
    return result


def plan(*, start: datetime, end: datetime, exact_days: set[date]) -> Plan:
    rollup, scan = [], []
    day = datetime(start.year, start.month, start.day, tzinfo=UTC)
    while day < end:
        low, high = max(start, day), min(end, day + DAY)
        if day.date() in exact_days:
            first, last = _ceil_hour(low), high.replace(minute=0, second=0, microsecond=0)
            if first < last:
                scan += [(low, first), (last, high)]
                rollup.append((first, last))
            else:
                scan.append((low, high))
        else:
            scan.append((low, high))
        day += DAY
    return Plan(_merged(rollup), _merged(sorted(scan)))


def exact_days(*, table: str, org_id: int, start: datetime, end: datetime,
               memo: bool = False) -> set[date]:
    """Days whose rows of the rollup `table` count each of the org's stored spans exactly once.

    `spans` counts inserted rows, `span_keys` distinct spans: equal means no span of that day
    was inserted twice (a hash collision can only make them differ, never hide a duplicate).
    Whole days are checked, as spans deduplicate per day: a span stored again may have moved
    to an hour outside the window. A day with no rollup rows is not listed: its spans, if
    any, predate the view.

    `memo` (for a table whose rows also sum their keys' hashes in `key_sum`): a day found
    exact is remembered with its fingerprint (rows, sum of key hashes); while a cheap read
    finds the same fingerprint, no row was added or removed since, so it is exact still,
    without merging its keys again (the check's largest cost)."""
    first = start.astimezone(UTC).date()
    last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
    if not memo:
        return {day for day, is_exact, *_ in _verify(table, org_id, first, last) if is_exact}
    fingerprints = {day: f"{rows}:{key_sum}" for day, rows, key_sum in get_client().query(
        f"""
        SELECT toDate(hour) AS day, sum(spans), sum(key_sum)
        FROM {table}
        WHERE org_id = {{org:UInt64}} AND {_DAYS}
        GROUP BY day
        """, parameters={"org": org_id, "first": first, "last": last}).result_rows}
    known = _remembered(table, org_id)
    exact = {day for day, print_ in fingerprints.items() if known.get(day.isoformat()) == print_}
    unknown = sorted(set(fingerprints) - exact)
    if unknown:
        found = {}
        for day, is_exact, rows, key_sum in _verify(table, org_id, unknown[0], unknown[-1],
                                                    unknown):
            if is_exact:
                exact.add(day)
                found[day.isoformat()] = f"{rows}:{key_sum}"  # as it stood when verified
        _remember(table, org_id, found)
    return exact


_DAYS = ("hour >= toDateTime({first:Date}, 'UTC')"
         " AND hour < toDateTime({last:Date}, 'UTC') + INTERVAL 1 DAY")


def _verify(table: str, org_id: int, first: date, last: date,
            only: list[date] | None = None) -> list[tuple]:
    """(day, exact, rows, key_sum or 0) per day with rows from `first` to `last`."""
    key_sum = "sum(key_sum)" if only is not None else "0"
    within = " AND toDate(hour) IN {only:Array(Date)}" if only is not None else ""
    return get_client().query(
        f"""
        SELECT toDate(hour) AS day, sum(spans) = uniqExactMerge(span_keys), sum(spans),
            {key_sum}
        FROM {table}
        WHERE org_id = {{org:UInt64}} AND {_DAYS}{within}
        GROUP BY day
        """,
        parameters={"org": org_id, "first": first, "last": last, "only": only or []},
    ).result_rows


def _memo_key(table: str, org_id: int) -> str:
    return f"rollup-exact-days:{table}:{org_id}"


def _remembered(table: str, org_id: int) -> dict[str, str]:
    try:
        stored = get_redis().hgetall(_memo_key(table, org_id))
    except redis.RedisError as exc:  # verified afresh: slower, as exact
        logger.warning("exact days of %s for org %s not read: %s", table, org_id, exc)
        return {}
    return {day.decode(): print_.decode() for day, print_ in stored.items()}


def _remember(table: str, org_id: int, found: dict[str, str]) -> None:
    if not found:
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hset(_memo_key(table, org_id), mapping=found)
        pipe.expire(_memo_key(table, org_id), settings.ROLLUP_EXACT_DAYS_MEMO_TTL_S)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("exact days of %s for org %s not remembered: %s", table, org_id, exc)


def window_plan(*, table: str, org_id: int, start: datetime, end: datetime,
                memo: bool = False) -> Plan:
    """The plan of [start, end) for the org over the rollup `table`."""
    return plan(start=start, end=end, exact_days=exact_days(
        table=table, org_id=org_id, start=start, end=end, memo=memo))


def ranges_sql(column: str, ranges: list[tuple[datetime, datetime]]) -> str:
    """SQL: `column` within one of `ranges`. Our own integers, not user text: safe to inline."""
    def bound(moment: datetime) -> str:
        micros = (moment - EPOCH) // timedelta(microseconds=1)
        return f"fromUnixTimestamp64Micro(toInt64({micros}), 'UTC')"

    return " OR ".join(f"({column} >= {bound(a)} AND {column} < {bound(b)})" for a, b in ranges)
