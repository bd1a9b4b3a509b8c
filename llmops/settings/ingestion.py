"""Span ingestion: request limits, per-org rates, sampling, drain batches and leases."""

from .env import env

INGEST_MAX_SPANS_PER_REQUEST = env("INGEST_MAX_SPANS_PER_REQUEST", 1000)
INGEST_MAX_BODY_BYTES = env("INGEST_MAX_BODY_BYTES", 5 * 1024 * 1024)
# Spans per org per rate window (RATE_LIMIT_WINDOW_S); an org row may override it.
INGEST_DEFAULT_ORG_RATE_LIMIT = env("INGEST_DEFAULT_ORG_RATE_LIMIT", 600_000)
INGEST_DEFAULT_SAMPLE_RATE = env("INGEST_DEFAULT_SAMPLE_RATE", 1.0)
# Seed, level 2 "Reduced Sampling": sample rate 1 %.
INGEST_DEGRADED_SAMPLE_RATE = env("INGEST_DEGRADED_SAMPLE_RATE", 0.01)
INGEST_RETRY_AFTER_S = env("INGEST_RETRY_AFTER_S", 30)

# Drains: one Celery task per partition, one lease per partition in Redis.
# Spans per drain batch (about: messages, which may hold many spans, are taken whole).
DRAIN_BATCH_SIZE = env("DRAIN_BATCH_SIZE", 5000)
# How long a batch's first message may wait for more, counted from when Kafka stamped it
# (what arrived during the last insert goes at once). Longer: fewer, larger inserts
# (each also feeds the views on spans); shorter: lower latency at low rates. At 10,000
# spans/s on 12 partitions here, 500 ms gave the lowest accepted-to-queryable p50 and p99
# (200 ms: p50 2.2 s, p99 4.3 s; 500 ms: 1.1 s, 2.9 s; 1,000 ms: 1.6 s, 3.4 s).
DRAIN_BATCH_WAIT_MS = env("DRAIN_BATCH_WAIT_MS", 500)
# A drain task works this long, then hands its partition back to the queue so none starves.
DRAIN_TASK_BUDGET_S = env("DRAIN_TASK_BUDGET_S", 30.0)
# A lease not renewed for this long passes to another worker (its holder died).
DRAIN_LEASE_TTL_S = env("DRAIN_LEASE_TTL_S", 15)
DRAIN_SCHEDULE_INTERVAL_S = env("DRAIN_SCHEDULE_INTERVAL_S", 2.0)
# How long a process trusts a resolved API key (a revoked key stops within this time).
API_KEY_CACHE_TTL_S = env("API_KEY_CACHE_TTL_S", 10.0)
# A drain with nothing to read for this long ends, and the scheduler brings one back later.
DRAIN_IDLE_EXIT_S = env("DRAIN_IDLE_EXIT_S", 5.0)

# What one span may hold, checked before it is acknowledged (rejected in the 207 otherwise).
# A span may start at most this far ahead; behind, the spans' TTL (CLICKHOUSE_SPANS_TTL_DAYS,
# or a shorter emergency TTL in force) bounds it, since ClickHouse would delete it at once.
INGEST_MAX_FUTURE_S = env("INGEST_MAX_FUTURE_S", 86400)
# How long a process trusts the emergency TTL it read (operations.TtlChange).
INGEST_RETENTION_CACHE_TTL_S = env("INGEST_RETENTION_CACHE_TTL_S", 10.0)
# Far above any real call, far below what the spans table holds: costs are Decimal64(12),
# 18 digits of which 12 decimals, so under 1e6 USD (ClickHouse refuses to parse more; the
# Int64 underneath holds ~9.2e6), and token counts are UInt64 summed per trace and per org.
INGEST_MAX_COST_USD = env("INGEST_MAX_COST_USD", 100_000.0)
INGEST_MAX_TOKENS = env("INGEST_MAX_TOKENS", 100_000_000)
# An input or output whose JSON is longer is stored truncated, with a marker, and its size
# in the span's metadata (`llmops.input.original_bytes`, `llmops.output.original_bytes`).
INGEST_MAX_CONTENT_BYTES = env("INGEST_MAX_CONTENT_BYTES", 1024 * 1024)
