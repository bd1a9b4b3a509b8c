"""The costs app's ClickHouse tables: hourly cost rollups fed from spans by a materialized view."""

from django.conf import settings

from ingestion.clickhouse import spans
from llmops.clickhouse_schema import Alter, MaterializedView, Table


def span_cache_write_tokens() -> Alter:
    # Part of input_tokens, like cached_input_tokens: prompt tokens written to a cache.
    return Alter(spans(), "ADD COLUMN IF NOT EXISTS cache_write_tokens UInt64 DEFAULT 0"
                          " AFTER cached_input_tokens")


def cost_hourly() -> Table:
    """Cost and tokens per org, hour, environment, model, provider and user.

    A sum counts a span as often as it was inserted, and a span can be inserted more than once
    (a client resending it, recompute_costs repricing it): `spans` keeps its newest version,
    this table keeps them all. `spans` (rows inserted) against `span_keys` (distinct spans)
    tells, per org and day, whether the sums are exact; reports read `spans FINAL` for a day
    where they are not (costs.services.reports).
    """
    return Table(
        name="cost_hourly",
        columns="""
org_id UInt64,
hour DateTime('UTC'),
environment LowCardinality(String),
model LowCardinality(String),
provider LowCardinality(String),
user_id String,
spans UInt64,
span_keys AggregateFunction(uniqExact, UInt64),
cost Decimal(38, 12),
input_tokens UInt64,
cached_input_tokens UInt64,
cache_write_tokens UInt64,
output_tokens UInt64,
total_tokens UInt64,
unpriced_spans UInt64,
estimated_spans UInt64
""",
        # Sums the numeric columns and merges the span_keys states of rows with one key.
        engine="SummingMergeTree",
        partition_by="toYYYYMM(hour)",
        order_by="(org_id, hour, environment, model, provider, user_id)",
        ttl=f"hour + INTERVAL {settings.CLICKHOUSE_SPANS_TTL_DAYS} DAY",
        # Design document: cost aggregations sharded by org_id + time_bucket. The view writes
        # on the shard of its spans; backfills and rebuilds go through the Distributed table.
        shard_key="cityHash64(org_id, hour)",
    )


def cost_hourly_view() -> MaterializedView:
    return MaterializedView(
        name="cost_hourly_mv",
        source=spans(),
        target=cost_hourly(),
        select="""
SELECT org_id, toStartOfHour(start_time) AS hour, environment, model, provider, user_id,
    count() AS spans,
    uniqExactState(cityHash64(trace_id, span_id)) AS span_keys,
    sum(cost) AS cost,
    sum(input_tokens) AS input_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(output_tokens) AS output_tokens,
    sum(total_tokens) AS total_tokens,
    countIf(cost_source = 'unpriced') AS unpriced_spans,
    countIf(usage_source = 'estimated') AS estimated_spans
FROM {source}
GROUP BY org_id, hour, environment, model, provider, user_id
""",
    )
