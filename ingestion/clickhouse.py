"""The ingestion app's ClickHouse tables: spans, and their content stored once per hash."""

from django.conf import settings

from llmops.clickhouse_schema import Alter, MaterializedView, Table


def spans() -> Table:
    return Table(
        name="spans",
        columns="""
org_id UInt64,
trace_id String,
span_id String,
parent_span_id String,
name String,
kind LowCardinality(String),
status LowCardinality(String),
status_message String,
start_time DateTime64(6, 'UTC'),
end_time Nullable(DateTime64(6, 'UTC')),
duration_ms Float64 MATERIALIZED if(isNull(end_time), 0,
    dateDiff('microsecond', start_time, assumeNotNull(end_time)) / 1000.),
model LowCardinality(String),
provider LowCardinality(String),
input_hash String,
output_hash String,
input_tokens UInt64,
output_tokens UInt64,
cached_input_tokens UInt64,
total_tokens UInt64,
usage_source LowCardinality(String),
cost Decimal64(12),
cost_source LowCardinality(String),
price_id UInt64,
session_id String,
user_id String,
tags Array(LowCardinality(String)),
metadata Map(LowCardinality(String), String),
environment LowCardinality(String),
received_at DateTime64(6, 'UTC'),
ingested_at DateTime64(6, 'UTC') DEFAULT now64(6),
version UInt64,
INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 4,
INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 4
""",
        # The newest version of a span wins; readers deduplicate with FINAL.
        engine="ReplacingMergeTree(version)",
        partition_by="toYYYYMM(start_time)",
        order_by="(org_id, toDate(start_time), trace_id, span_id)",
        ttl=f"toDateTime(start_time) + INTERVAL {settings.CLICKHOUSE_SPANS_TTL_DAYS} DAY",
        shard_key="cityHash64(org_id)",
    )


def span_is_deleted() -> Alter:
    """A tombstone: the newest version of a span moved to another day (another sort key),
    so the drain writes, at the old key, a row with the new version and is_deleted = 1. FINAL
    keeps it over the old version there, and every reader drops it (`is_deleted = 0`,
    applied after FINAL)."""
    return Alter(spans(), "ADD COLUMN IF NOT EXISTS is_deleted UInt8 DEFAULT 0 AFTER version")


def span_keys() -> Table:
    """Where each span's newest version is stored: the drain looks up a batch's spans here
    to know when a new version moved to another day and needs a tombstone at the old one."""
    return Table(
        name="span_keys",
        columns="""
org_id UInt64,
trace_id String,
span_id String,
start_time DateTime64(6, 'UTC'),
version UInt64
""",
        engine="ReplacingMergeTree(version)",
        order_by="(org_id, trace_id, span_id)",
        ttl=f"toDateTime(start_time) + INTERVAL {settings.CLICKHOUSE_SPANS_TTL_DAYS} DAY",
        # Looked up by a few keys at a time: small granules read little.
        settings={"index_granularity": 256},
        shard_key="cityHash64(org_id)",  # as spans
    )


def span_content() -> Table:
    return Table(
        name="span_content",
        columns="""
org_id UInt64,
content_hash String,
format LowCardinality(String),
content String CODEC(ZSTD(3)),
last_seen DateTime64(3, 'UTC') DEFAULT now64(3)
""",
        # Each body is stored once per org; seeing it again refreshes last_seen, so the
        # TTL keeps what recent spans still point to.
        engine="ReplacingMergeTree(last_seen)",
        order_by="(org_id, content_hash)",
        ttl=f"toDateTime(last_seen) + INTERVAL {settings.CLICKHOUSE_SPANS_TTL_DAYS} DAY",
        shard_key="cityHash64(content_hash)",
    )


def trace_index() -> Table:
    """Per-trace facts for listing traces, one row per (trace, day of its spans, insert).

    Every column is a duplicate-insensitive aggregate (min, max, set union) over every
    version ever stored, superseded ones and tombstones included: a superset that names the
    candidate traces of a listing; the newest versions (`spans FINAL`) of those decide.
    `ingested` in the key keeps each insert apart, so a listing can read the traces as they
    stood at one instant (its snapshot) while spans keep arriving.
    """
    return Table(
        name="trace_index",
        columns="""
org_id UInt64,
day Date,
trace_id String,
ingested DateTime64(3, 'UTC'),
trace_start SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
root SimpleAggregateFunction(min, Tuple(UInt8, DateTime64(6, 'UTC'), String)),
has_error SimpleAggregateFunction(max, UInt8),
models SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
environments SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
users SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
sessions SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
tags SimpleAggregateFunction(groupUniqArrayArray, Array(String))
""",
        engine="AggregatingMergeTree",
        partition_by="toYYYYMM(day)",
        order_by="(org_id, day, trace_id, ingested)",
        ttl=f"day + INTERVAL {settings.CLICKHOUSE_SPANS_TTL_DAYS} DAY",
        shard_key="cityHash64(org_id)",  # as spans: a shard's view feeds its own index
    )


def trace_index_view() -> MaterializedView:
    return MaterializedView(
        name="trace_index_mv",
        source=spans(),
        target=trace_index(),
        # root: the span without a parent first, then the earliest; its name names the trace.
        select="""
SELECT org_id, toDate(start_time) AS day, trace_id, toDateTime64(ingested_at, 3) AS ingested,
    min(start_time) AS trace_start,
    min((parent_span_id != '', start_time, name)) AS root,
    max(status = 'error') AS has_error,
    groupUniqArrayIf(toString(model), model != '') AS models,
    groupUniqArray(toString(environment)) AS environments,
    groupUniqArrayIf(user_id, user_id != '') AS users,
    groupUniqArrayIf(session_id, session_id != '') AS sessions,
    groupUniqArrayArray(CAST(tags, 'Array(String)')) AS tags
FROM {source}
GROUP BY org_id, day, trace_id, ingested
""",
    )


def span_metrics_hourly() -> Table:
    """Span metrics per org, hour, environment, model, kind and span name: what the metrics
    API and the dashboard's Overview read instead of scanning `spans FINAL`.

    Like cost_hourly, a sum here counts a span as often as it was inserted (resent, a newer
    version, a tombstone), while `spans FINAL` keeps one version: `spans` (rows) against
    `span_keys` (distinct spans) says per org and day whether the rows are exact, and days
    where they are not are read from spans (llmops.rollups); `key_sum` (the keys' hashes
    summed, wrapping) fingerprints a day's rows, so a day found exact is not checked again
    until they change. `traces` holds the trace keys
    themselves, so traces over several hours are counted once however hours are summed.
    User, session and tags are not kept: they are trace-level (a span naming them may arrive
    hours later), so reads filtered by them go to spans.
    """
    return Table(
        name="span_metrics_hourly",
        columns="""
org_id UInt64,
hour DateTime('UTC'),
environment LowCardinality(String),
model LowCardinality(String),
kind LowCardinality(String),
name String,
spans UInt64,
span_keys AggregateFunction(uniqExact, UInt64),
key_sum UInt64,
errors UInt64,
latency AggregateFunction(quantilesIf(0.5, 0.95, 0.99), Float64, UInt8),
input_tokens UInt64,
output_tokens UInt64,
total_tokens UInt64,
cost Decimal(38, 12),
unpriced_spans UInt64,
traces AggregateFunction(uniqExact, UInt64)
""",
        # Sums the numeric columns and merges the aggregate states of rows with one key.
        engine="SummingMergeTree",
        partition_by="toYYYYMM(hour)",
        order_by="(org_id, hour, environment, model, kind, name)",
        ttl=f"hour + INTERVAL {settings.CLICKHOUSE_SPANS_TTL_DAYS} DAY",
        shard_key="cityHash64(org_id, hour)",  # as cost_hourly
    )


def span_metrics_hourly_view() -> MaterializedView:
    # Every row inserted into spans, tombstones included: a tombstone makes its day inexact
    # (two rows, one span), so that day is read from spans, where it deletes.
    return MaterializedView(
        name="span_metrics_hourly_mv",
        source=spans(),
        target=span_metrics_hourly(),
        select="""
SELECT org_id, toStartOfHour(start_time) AS hour, environment, model, kind, name,
    count() AS spans,
    uniqExactState(cityHash64(trace_id, span_id)) AS span_keys,
    sum(cityHash64(trace_id, span_id)) AS key_sum,
    countIf(status = 'error') AS errors,
    quantilesIfState(0.5, 0.95, 0.99)(duration_ms, end_time IS NOT NULL) AS latency,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(total_tokens) AS total_tokens,
    sum(cost) AS cost,
    countIf(cost_source = 'unpriced') AS unpriced_spans,
    uniqExactState(cityHash64(trace_id)) AS traces
FROM {source}
GROUP BY org_id, hour, environment, model, kind, name
""",
    )


def span_metrics_hourly_fill(where: str = "1") -> str:
    """INSERT of span_metrics_hourly rows from the spans `where` says, one row per span (its
    newest version, `spans FINAL`): so the days they cover count each span once."""
    view = span_metrics_hourly_view()
    # duration_ms is MATERIALIZED: `*` leaves it out.
    source = (f"(SELECT *, duration_ms FROM {view.source.name} FINAL"
              f" WHERE is_deleted = 0 AND ({where})"
              " SETTINGS do_not_merge_across_partitions_select_final = 1)")
    return f"INSERT INTO {view.target.name}\n{view.select.format(source=source).strip()}"
