"""GET endpoints of the query API: thin; parameters in query.params, SQL in query.selectors,
caching (L1 hot traces, L2 Redis per org and normalised query) in llmops.cache."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.views import APIView

from ingestion.query import docs, selectors
from ingestion.query.params import (
    MetricsParams,
    NoParams,
    SpanSearchParams,
    TraceListParams,
)
from ingestion.views import SpansView
from llmops.auth import ApiKeyAuthentication, HasOrg
from llmops.cache import ByteLRU, get_or_compute, query_key
from operations.services.flags import flag_for

# Bumped when an answer's shape changes, so no cached answer of the old shape is served.
CACHE_VERSION = 1
# L1: hot trace lookups, per process (seed: 100 MB, LRU).
hot_traces = ByteLRU(settings.HOT_TRACE_CACHE_MAX_BYTES)
ID_MAX_LENGTH = 128  # trace and session ids are at most this long (ingestion.schema)


def cached_body(*, namespace: str, org_id: int, params: dict, ttl_s: float,
                compute: Callable[[], object], local: ByteLRU | None = None
                ) -> tuple[bytes, str]:
    """An answer's JSON and where it came from: L1/L2 if fresh, else computed and cached;
    computed and not cached ("bypass") when the operator's `query-cache-enabled` flag is off
    for the org. An answer that raises (a 404, say) is not cached: the trace may arrive any
    moment. The API and the dashboard's pages both read through it, so they share entries."""
    if flag_for("query-cache-enabled", org_id):
        return get_or_compute(key=query_key(namespace, org_id, params), ttl_s=ttl_s,
                              local=local, compute=lambda: selectors.to_json(compute()))
    return selectors.to_json(compute()), "bypass"


def cached_answer(request, *, endpoint: str, params: dict, ttl_s: float,
                  compute: Callable[[], object], local: ByteLRU | None = None) -> HttpResponse:
    """The JSON answer from the query cache (cached_body). `X-Cache` says which."""
    body, source = cached_body(namespace=f"{endpoint}:v{CACHE_VERSION}",
                               org_id=request.user.org_id, params=params, ttl_s=ttl_s,
                               compute=compute, local=local)
    response = HttpResponse(body, content_type="application/json")
    response["X-Cache"] = source
    return response


def one_by_id(request, *, endpoint: str, name: str, value: str, ttl_s: float,
              fetch: Callable[..., object | None], local: ByteLRU | None = None):
    """A trace or session by id, cached; a 404 when the caller's org has none by that id
    (never 403: another org's ids look like ids that do not exist)."""
    NoParams.parse(request)
    org_id = request.user.org_id
    if len(value) > ID_MAX_LENGTH:
        raise NotFound(f"no such {endpoint}")

    def compute():
        found = fetch(org_id=org_id, **{name: value})
        if found is None:
            raise NotFound(f"no such {endpoint}")
        return found

    return cached_answer(request, endpoint=endpoint, params={name: value}, ttl_s=ttl_s,
                         compute=compute, local=local)


def staleness(setting: str) -> str:
    return (f"\n\nCached per org and query for {getattr(settings, setting)} s ({setting}): an "
            "answer can be that much older than the spans stored, and spans are stored a few "
            "seconds after they are sent. The `X-Cache` header says `l1`, `l2` or `miss` "
            "(`bypass` while the operator's `query-cache-enabled` flag is off).")


NOT_FOUND = docs.errors(400, 401, 404, 503)  # 400: a query parameter (none is taken)
BAD_REQUEST = docs.errors(400, 401, 503)


class QueryView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrg]


class TraceListView(QueryView):
    @extend_schema(
        operation_id="list_traces", summary="List traces", parameters=[TraceListParams],
        description=(
            "Traces whose first span starts in [`from`, `to`), newest first. Filters match a "
            "trace when any of its spans matches. Walk the pages with `next_cursor`: a walk "
            "lists the traces as they stood at its first page, less the last "
            f"{settings.QUERY_LIST_SETTLE_MS} ms (QUERY_LIST_SETTLE_MS), so each is listed "
            "exactly once while spans keep arriving; counts and tokens shown are current."
            + staleness("QUERY_TRACES_CACHE_TTL_S")),
        responses={200: docs.TracePage, **BAD_REQUEST},
    )
    def get(self, request):
        params = TraceListParams.parse(request)
        org_id = request.user.org_id
        return cached_answer(
            request, endpoint="traces", params=params, ttl_s=settings.QUERY_TRACES_CACHE_TTL_S,
            compute=lambda: selectors.list_traces(org_id=org_id, params=params))


class TraceView(QueryView):
    @extend_schema(
        operation_id="get_trace", summary="A trace as a tree of spans",
        description=(
            "Every span of the trace with its input and output (JSON content parsed, text as a "
            "string), children nested under their parents in start order; spans whose parent "
            "is missing are kept at the top level. Hot traces are also kept in each API "
            "process (HOT_TRACE_CACHE_MAX_BYTES, LRU), never longer than the TTL below."
            + staleness("QUERY_TRACE_CACHE_TTL_S")),
        responses={200: docs.TraceDetail, **NOT_FOUND},
    )
    def get(self, request, trace_id: str):
        return one_by_id(request, endpoint="trace", name="trace_id", value=trace_id,
                         ttl_s=settings.QUERY_TRACE_CACHE_TTL_S, fetch=selectors.get_trace,
                         local=hot_traces)


class SpanSearchView(QueryView):
    @extend_schema(
        operation_id="search_spans", summary="Search spans", parameters=[SpanSearchParams],
        description=("Spans starting in [`from`, `to`), newest first, matching every filter "
                     "given; pages by `next_cursor`." + staleness("QUERY_SPANS_CACHE_TTL_S")),
        responses={200: docs.SpanPage, **BAD_REQUEST},
    )
    def get(self, request):
        params = SpanSearchParams.parse(request)
        org_id = request.user.org_id
        return cached_answer(
            request, endpoint="spans", params=params, ttl_s=settings.QUERY_SPANS_CACHE_TTL_S,
            compute=lambda: selectors.search_spans(org_id=org_id, params=params))


class SessionView(QueryView):
    @extend_schema(
        operation_id="get_session", summary="A session's traces",
        description=("The traces with a span in this session, oldest first (at most "
                     "QUERY_SESSION_MAX_TRACES)." + staleness("QUERY_SESSION_CACHE_TTL_S")),
        responses={200: docs.SessionTraces, **NOT_FOUND},
    )
    def get(self, request, session_id: str):
        return one_by_id(request, endpoint="session", name="session_id", value=session_id,
                         ttl_s=settings.QUERY_SESSION_CACHE_TTL_S,
                         fetch=selectors.session_traces)


class MetricsView(QueryView):
    @extend_schema(
        operation_id="span_metrics", summary="Span metrics over time", parameters=[MetricsParams],
        description=(
            "Per time bucket (and group): span count, errors and error rate, latency p50/p95/"
            "p99 in ms (spans with an end time; ClickHouse `quantiles`: exact up to 8,192 "
            "spans per point, sampled beyond), tokens. At most QUERY_METRICS_MAX_BUCKETS "
            "buckets per window." + staleness("QUERY_METRICS_CACHE_TTL_S")),
        responses={200: docs.Metrics, **BAD_REQUEST},
    )
    def get(self, request):
        params = MetricsParams.parse(request)
        org_id = request.user.org_id
        return cached_answer(
            request, endpoint="metrics", params=params, ttl_s=settings.QUERY_METRICS_CACHE_TTL_S,
            compute=lambda: selectors.span_metrics(org_id=org_id, params=params))


class SpansEndpoint(SpansView, SpanSearchView):
    """/api/v1/spans: POST sends spans (SpansView), GET searches them."""
