"""Query API: windows, page sizes and the cache TTL of each endpoint (seed: 1-5 min)."""

from .caching import QUERY_CACHE_MAX_TTL_S, QUERY_CACHE_TTL_S
from .env import env

# Without `from`/`to` a query covers the last 24 hours; no query may span more than this.
QUERY_DEFAULT_WINDOW_S = env("QUERY_DEFAULT_WINDOW_S", 24 * 3600)
QUERY_MAX_WINDOW_DAYS = env("QUERY_MAX_WINDOW_DAYS", 31)
QUERY_DEFAULT_LIMIT = env("QUERY_DEFAULT_LIMIT", 50)
QUERY_MAX_LIMIT = env("QUERY_MAX_LIMIT", 500)
# A trace's spans are looked for this many days either side of its window (long traces).
QUERY_TRACE_MAX_DAYS = env("QUERY_TRACE_MAX_DAYS", 1)
# A trace listing reads the spans stored up to this long before its first page: an insert
# still in flight then cannot shift a trace between pages.
QUERY_LIST_SETTLE_MS = env("QUERY_LIST_SETTLE_MS", 1000)
QUERY_TRACE_MAX_SPANS = env("QUERY_TRACE_MAX_SPANS", 10_000)
QUERY_SESSION_MAX_TRACES = env("QUERY_SESSION_MAX_TRACES", 1000)
# Per series point: minute buckets over ~33 hours, hour buckets over ~83 days.
QUERY_METRICS_MAX_BUCKETS = env("QUERY_METRICS_MAX_BUCKETS", 2000)
# Span metrics (API and Overview) read the hourly rollup where it is exact
# (ingestion.query.hourly); off, they scan spans FINAL, with the same answers, slower.
QUERY_METRICS_ROLLUP = env("QUERY_METRICS_ROLLUP", True)
# ... for windows longer than this: the partial hours at a window's ends are read from spans,
# a whole day each (the days' sort key), which costs about what a week of rollup saves
# (measured over the bench's 1M spans: 7 days, 33 ms of ClickHouse CPU against 25 ms).
QUERY_METRICS_ROLLUP_MIN_HOURS = env("QUERY_METRICS_ROLLUP_MIN_HOURS", 7 * 24)
# How long a day found exact in a rollup is remembered (with its fingerprint, llmops.rollups);
# a day is verified again after that, or as soon as its rows change.
ROLLUP_EXACT_DAYS_MEMO_TTL_S = env("ROLLUP_EXACT_DAYS_MEMO_TTL_S", 86400)

# L2 (Redis) TTL per endpoint: how stale a cached answer can be. The hot-trace L1 keeps an
# entry no longer than its L2 TTL either.
QUERY_TRACES_CACHE_TTL_S = env("QUERY_TRACES_CACHE_TTL_S", QUERY_CACHE_TTL_S)
QUERY_TRACE_CACHE_TTL_S = env("QUERY_TRACE_CACHE_TTL_S", QUERY_CACHE_TTL_S)
QUERY_SPANS_CACHE_TTL_S = env("QUERY_SPANS_CACHE_TTL_S", QUERY_CACHE_TTL_S)
QUERY_SESSION_CACHE_TTL_S = env("QUERY_SESSION_CACHE_TTL_S", QUERY_CACHE_TTL_S)
# Aggregates over time ranges, like the seed's cost aggregations: 5 min.
QUERY_METRICS_CACHE_TTL_S = env("QUERY_METRICS_CACHE_TTL_S", QUERY_CACHE_MAX_TTL_S)
