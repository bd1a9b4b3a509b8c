"""What the trace pages read: the query API's own selectors, under the query API's own cache
keys and TTLs (a page and an API call for the same query share one cached answer), each
bound to the org passed in, which the views take from the signed-in user's current org.

Answers are the API's JSON bodies, parsed back: times are RFC 3339 text, costs exact decimal
text. Two small reads of what the query API does not answer are kept here: the scores of a
page of traces, and how each span of a trace was priced."""

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import orjson
from django.conf import settings

from evaluation.services import scores
from ingestion.query import selectors
from ingestion.query.selectors import FINAL_SETTINGS
from ingestion.query.views import CACHE_VERSION, ID_MAX_LENGTH, cached_body, hot_traces
from llmops.cache import ByteLRU
from llmops.clickhouse import get_client

# Namespaces of the pages' own reads (never an API endpoint's).
SCORES_CACHE = "dash-trace-scores:v1"
PRICING_CACHE = "dash-span-pricing:v1"


def _cached(namespace: str, org_id: int, params: dict, ttl_s: float,
            compute: Callable[[], object], local: ByteLRU | None = None):
    """The API's cached answer, parsed (not cached when `compute` raises: the trace may
    arrive)."""
    body, _ = cached_body(namespace=namespace, org_id=org_id, params=params, ttl_s=ttl_s,
                          compute=compute, local=local)
    return orjson.loads(body)


class NotFound(Exception):
    """The current org has no such trace or session."""


def _found(value):
    if value is None:
        raise NotFound
    return value


def trace_page(*, org_id: int, params: dict) -> dict:
    """A page of the trace list: the API's GET /traces for these validated parameters."""
    return _cached(f"traces:v{CACHE_VERSION}", org_id, params, settings.QUERY_TRACES_CACHE_TTL_S,
                   lambda: selectors.list_traces(org_id=org_id, params=params))


def trace(*, org_id: int, trace_id: str) -> dict:
    """The API's GET /traces/{id}: the span tree with content (L1 hot traces too)."""
    if len(trace_id) > ID_MAX_LENGTH:
        raise NotFound
    return _cached(f"trace:v{CACHE_VERSION}", org_id, {"trace_id": trace_id},
                   settings.QUERY_TRACE_CACHE_TTL_S,
                   lambda: _found(selectors.get_trace(org_id=org_id, trace_id=trace_id)),
                   local=hot_traces)


def session(*, org_id: int, session_id: str) -> dict:
    """The API's GET /sessions/{id}: the session's traces, oldest first."""
    if len(session_id) > ID_MAX_LENGTH:
        raise NotFound
    return _cached(f"session:v{CACHE_VERSION}", org_id, {"session_id": session_id},
                   settings.QUERY_SESSION_CACHE_TTL_S,
                   lambda: _found(selectors.session_traces(org_id=org_id,
                                                           session_id=session_id)))


def trace_scores(*, org_id: int, trace_ids: list[str]) -> dict[str, list[dict]]:
    """Per trace, its scores' mean per name (results only, not skipped or failed)."""
    if not trace_ids:
        return {}

    def compute() -> list[dict]:
        result = get_client().query(f"""
            SELECT trace_id, evaluator, avg(value) AS mean, count() AS n,
                any(string_value) AS label
            FROM scores FINAL
            WHERE org_id = {{org:UInt64}} AND trace_id IN {{ids:Array(String)}}
                AND status IN ('ok', 'fallback')
            GROUP BY trace_id, evaluator
            ORDER BY trace_id, evaluator
            {FINAL_SETTINGS}
        """, parameters={"org": org_id, "ids": trace_ids})
        return list(result.named_results())

    rows = _cached(SCORES_CACHE, org_id, {"ids": sorted(trace_ids)},
                   settings.QUERY_TRACES_CACHE_TTL_S, compute)
    found: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        found[row["trace_id"]].append(row)
    return found


def span_scores(*, org_id: int, trace_id: str) -> dict[str, list[dict]]:
    """The trace's scores (the scores API's read) by span id ('' for the trace's own)."""
    rows = _cached(SCORES_CACHE, org_id, {"trace_id": trace_id},
                   settings.QUERY_TRACE_CACHE_TTL_S,
                   lambda: scores.read(org_id=org_id, trace_id=trace_id,
                                       limit=settings.QUERY_TRACE_MAX_SPANS))
    found: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        found[row["span_id"]].append(row)
    return found


def span_pricing(*, org_id: int, trace_id: str) -> dict[str, dict]:
    """How each span's cost came about: cost_source (provided, computed, unpriced, none) and
    usage_source (reported or estimated), which the query API does not answer."""

    def compute() -> list[dict]:
        result = get_client().query(f"""
            SELECT span_id, cost_source, usage_source
            FROM spans FINAL
            WHERE org_id = {{org:UInt64}} AND trace_id = {{trace:String}} AND is_deleted = 0
            {FINAL_SETTINGS}
        """, parameters={"org": org_id, "trace": trace_id})
        return list(result.named_results())

    rows = _cached(PRICING_CACHE, org_id, {"trace_id": trace_id},
                   settings.QUERY_TRACE_CACHE_TTL_S, compute)
    return {row["span_id"]: row for row in rows}


def when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def money(text: str | None) -> Decimal:
    return Decimal(text or "0")
