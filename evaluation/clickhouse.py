"""The evaluation app's ClickHouse table: scores, from evaluators, humans and clients."""

from django.conf import settings

from llmops.clickhouse_schema import Alter, Table


def scores() -> Table:
    return Table(
        name="scores",
        columns="""
org_id UInt64,
trace_id String,
span_id String,
evaluator LowCardinality(String),
score_id String,
evaluator_id UInt64,
evaluator_type LowCardinality(String),
source LowCardinality(String),
status LowCardinality(String),
data_type LowCardinality(String),
value Nullable(Float64),
string_value String,
comment String,
latency_ms Float64,
model LowCardinality(String),
span_time DateTime64(6, 'UTC'),
timestamp DateTime64(3, 'UTC'),
version UInt64,
INDEX idx_timestamp timestamp TYPE minmax GRANULARITY 1,
INDEX idx_evaluator evaluator TYPE bloom_filter(0.01) GRANULARITY 4
""",
        # One row per (span, evaluator, score id): a replayed or repeated evaluation replaces
        # the earlier row; `version` makes a result outrank a `skipped` placeholder.
        engine="ReplacingMergeTree(version)",
        # By the span's time, not the score's: a replay lands in the partition of the row it
        # replaces (rows in different partitions are never merged).
        partition_by="toYYYYMM(span_time)",
        order_by="(org_id, trace_id, span_id, evaluator, score_id)",
        ttl=f"toDateTime(span_time) + INTERVAL {settings.CLICKHOUSE_SPANS_TTL_DAYS} DAY",
        # Seed: evaluation results co-located with their trace.
        shard_key="cityHash64(trace_id)",
    )


def score_context() -> list[Alter]:
    # What a client says about its score (Langfuse's environment, metadata and configId).
    return [Alter(scores(), f"ADD COLUMN IF NOT EXISTS {column}") for column in (
        "environment LowCardinality(String) DEFAULT '' AFTER model",
        "metadata Map(LowCardinality(String), String) AFTER environment",
        "config_id String DEFAULT '' AFTER metadata")]
