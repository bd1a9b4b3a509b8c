"""Span metrics from the hourly rollup (span_metrics_hourly) where it is exact, from
`spans FINAL` elsewhere: the same answers as the reads over `spans FINAL` alone, for a
fraction of their cost over long windows.

llmops.rollups plans each window: whole hours of the days where the rollup counts every
stored span once are read from it; the partial hours at the window's ends and the days
holding a span inserted twice (resent, a newer version, a tombstone) from `spans FINAL`.
Each read below unites both parts in one query, in states that merge exactly: counts and
sums add, latency quantile states merge (ClickHouse's `quantiles` reservoir: exact up to
8192 values per point, as over spans), trace key sets unite."""

from datetime import datetime, timedelta
from decimal import Decimal, localcontext

from django.conf import settings

from ingestion.query.selectors import FINAL_SETTINGS, _rows
from llmops.rollups import Plan, ranges_sql, window_plan

TABLE = "span_metrics_hourly"
# Buckets an hourly rollup can answer (a minute needs the spans).
BUCKETS = {"hour": "toStartOfHour", "day": "toStartOfDay"}
# Groups it keeps: span-level fields only (user, session and tags are trace-level).
GROUPS = {"none": "''", "model": "model", "kind": "kind", "environment": "environment"}


def serves(*, start: datetime, end: datetime, bucket: str) -> bool:
    """Whether reads of this window and bucket go through the rollup (QUERY_METRICS_ROLLUP,
    longer than QUERY_METRICS_ROLLUP_MIN_HOURS, hour or day buckets)."""
    return (settings.QUERY_METRICS_ROLLUP and bucket in BUCKETS
            and end - start > timedelta(hours=settings.QUERY_METRICS_ROLLUP_MIN_HOURS))


def window(*, org_id: int, start: datetime, end: datetime) -> Plan:
    return window_plan(table=TABLE, org_id=org_id, start=start, end=end, memo=True)


def _union(the_plan: Plan, rollup_select: str, span_select: str, group_by: str) -> str:
    """The two parts of the plan, each `<select> FROM <source> WHERE <org and its ranges>
    GROUP BY <group_by>`, as one UNION ALL."""
    parts = []
    if the_plan.rollup:
        parts.append(f"{rollup_select} FROM {TABLE} WHERE org_id = {{org:UInt64}}"
                     f" AND ({ranges_sql('hour', the_plan.rollup)}) GROUP BY {group_by}")
    if the_plan.scan:
        parts.append(f"{span_select} FROM spans FINAL WHERE org_id = {{org:UInt64}}"
                     f" AND is_deleted = 0 AND ({ranges_sql('start_time', the_plan.scan)})"
                     f" GROUP BY {group_by}")
    return " UNION ALL ".join(parts)


def metric_rows(*, org_id: int, start: datetime, end: datetime, bucket: str,
                group: str) -> list[dict]:
    """selectors.span_metrics' rows (bucket_start, grp, spans_n, errors_n, latency,
    tokens_in, tokens_out, tokens_total), ordered by bucket and group."""
    the_plan = window(org_id=org_id, start=start, end=end)
    if not (the_plan.rollup or the_plan.scan):
        return []
    to_bucket, grp = BUCKETS[bucket], GROUPS[group]
    union = _union(
        the_plan,
        f"""SELECT {to_bucket}(hour) AS bucket_start, {grp} AS grp, sum(spans) AS spans_n,
            sum(errors) AS errors_n, quantilesIfMergeState(0.5, 0.95, 0.99)(latency) AS lat,
            sum(input_tokens) AS tokens_in, sum(output_tokens) AS tokens_out,
            sum(total_tokens) AS tokens_total""",
        f"""SELECT {to_bucket}(start_time) AS bucket_start, {grp} AS grp, count() AS spans_n,
            countIf(status = 'error') AS errors_n,
            quantilesIfState(0.5, 0.95, 0.99)(duration_ms, end_time IS NOT NULL) AS lat,
            sum(input_tokens) AS tokens_in, sum(output_tokens) AS tokens_out,
            sum(total_tokens) AS tokens_total""",
        "bucket_start, grp")
    return _rows(f"""
        SELECT bucket_start, grp, sum(spans_n) AS spans_n, sum(errors_n) AS errors_n,
            quantilesIfMerge(0.5, 0.95, 0.99)(lat) AS latency,
            sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
            sum(tokens_total) AS tokens_total
        FROM ({union})
        GROUP BY bucket_start, grp
        ORDER BY bucket_start, grp
        {FINAL_SETTINGS}
    """, {"org": org_id})


def traces_per_bucket(*, org_id: int, start: datetime, end: datetime,
                      bucket: str) -> dict[int, int]:
    """Traces per bucket start (epoch seconds), each counted once, in the first bucket of the
    window holding one of its spans. Each bucket's trace keys (a set, not a count) are united
    with the earlier buckets' in order: what the union gains at a bucket is the traces first
    seen there. A trace over several hours or days, or over both parts of the plan, is one
    key in the union, so it is counted once."""
    the_plan = window(org_id=org_id, start=start, end=end)
    if not (the_plan.rollup or the_plan.scan):
        return {}
    to_bucket = BUCKETS[bucket]
    union = _union(
        the_plan,
        f"SELECT {to_bucket}(hour) AS bucket, uniqExactMergeState(traces) AS keys",
        f"SELECT {to_bucket}(start_time) AS bucket,"
        " uniqExactState(cityHash64(trace_id)) AS keys",
        "bucket")
    rows = _rows(f"""
        SELECT toUnixTimestamp(bucket) AS tick,
            uniqExactMerge(keys) OVER (ORDER BY bucket
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS seen
        FROM (SELECT bucket, uniqExactMergeState(keys) AS keys FROM ({union}) GROUP BY bucket)
        ORDER BY bucket
        {FINAL_SETTINGS}
    """, {"org": org_id})
    counts, before = {}, 0
    for row in rows:
        if row["seen"] > before:
            counts[row["tick"]] = row["seen"] - before
        before = row["seen"]
    return counts


def top_names(*, org_id: int, start: datetime, end: datetime, limit: int) -> list[dict]:
    """Span names by cost over the window (grp, cost, spans), most costly first."""
    the_plan = window(org_id=org_id, start=start, end=end)
    if not (the_plan.rollup or the_plan.scan):
        return []
    union = _union(the_plan,
                   "SELECT name AS grp, sum(cost) AS cost_sum, sum(spans) AS spans_n",
                   "SELECT name AS grp, sum(cost) AS cost_sum, count() AS spans_n",
                   "grp")
    return _rows(f"""
        SELECT grp, sum(cost_sum) AS cost, sum(spans_n) AS spans
        FROM ({union})
        GROUP BY grp
        ORDER BY cost DESC, spans DESC, grp
        LIMIT {{limit:UInt32}}
        {FINAL_SETTINGS}
    """, {"org": org_id, "limit": limit})


def cost_by_model(*, org_id: int, start: datetime, end: datetime, bucket: str) -> dict:
    """What the Overview takes from the cost report by model, equal to it: per bucket and
    model, cost, spans, input and output tokens and unpriced spans (`buckets`), and the total
    cost (`totals`), costs as the report writes them (12 decimals)."""
    the_plan = window(org_id=org_id, start=start, end=end)
    rows = []
    if the_plan.rollup or the_plan.scan:
        to_bucket = BUCKETS[bucket]
        measures = ("sum(input_tokens) AS tokens_in, sum(output_tokens) AS tokens_out,"
                    " sum(cost) AS cost_sum")
        union = _union(
            the_plan,
            f"SELECT {to_bucket}(hour) AS bucket_start, toString(model) AS grp,"
            f" sum(spans) AS spans_n, sum(unpriced_spans) AS unpriced_n, {measures}",
            f"SELECT {to_bucket}(start_time) AS bucket_start, toString(model) AS grp,"
            f" count() AS spans_n, countIf(cost_source = 'unpriced') AS unpriced_n, {measures}",
            "bucket_start, grp")
        rows = _rows(f"""
            SELECT bucket_start, grp, sum(spans_n) AS spans, sum(unpriced_n) AS unpriced,
                sum(tokens_in) AS input_tokens, sum(tokens_out) AS output_tokens,
                sum(cost_sum) AS cost
            FROM ({union})
            GROUP BY bucket_start, grp
            ORDER BY bucket_start, grp
            {FINAL_SETTINGS}
        """, {"org": org_id})
    with localcontext(prec=60):  # Decimal(38, 12) sums, exact
        total = sum((row["cost"] for row in rows), Decimal(0))
    return {
        "totals": {"cost": f"{total:.12f}"},
        "buckets": [{"start": row["bucket_start"].isoformat().replace("+00:00", "Z"),
                     "group": row["grp"], "cost": f"{row['cost']:.12f}", "spans": row["spans"],
                     "input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"],
                     "unpriced_spans": row["unpriced"]} for row in rows],
    }
