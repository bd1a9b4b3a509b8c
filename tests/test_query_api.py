"""The query API against a reference computed in Python over the same spans: several orgs,
models, sessions, errors, tags, orphans and resent duplicates, through the real pipeline."""

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from django.test import override_settings

from ingestion.query.selectors import span_tree
from ingestion.query.views import hot_traces
from tests.ingest_helpers import client_for
from tests.query_workload import (
    duration_ms,
    expected_trace_ids,
    expected_tree,
    ingest_workload,
    iso,
    merges_stopped,
    now_floor_hour,
    parse,
    span_matches,
    trace_summary,
    tree_shape,
    within_quantile_error,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def workload(django_db_setup, django_db_blocker):
    base = now_floor_hour() - timedelta(hours=6)
    with merges_stopped():
        with django_db_blocker.unblock():
            orgs = ingest_workload(base=base)
        yield {"base": base, "orgs": orgs, "window": (base - timedelta(minutes=1),
                                                     base + timedelta(hours=5))}


@pytest.fixture(autouse=True)
def empty_caches():
    """Each test computes its answers: none comes from another test's cache."""
    from django.core.cache import cache

    cache.clear()
    hot_traces.clear()


def get(key: str, path: str, **params):
    response = client_for(key).get(path, params)
    assert response.status_code == 200, (path, params, response.content)
    return response.json()


def walk(key: str, path: str, **params) -> list[dict]:
    """Every item of a paginated listing, following next_cursor."""
    items, cursor = [], None
    for _ in range(1000):
        page = get(key, path, **params, **({"cursor": cursor} if cursor else {}))
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


def as_expected(item: dict) -> dict:
    """An API trace summary in the reference's types."""
    return {**item, "start_time": parse(item["start_time"]), "end_time": parse(item["end_time"]),
            "cost": Decimal(item["cost"])}


TRACE_FILTERS = [
    {},
    {"model": "gpt-4o"},
    {"status": "error"},
    {"status": "ok"},
    {"tag": "it's"},
    {"tag": "ünï-🙂", "environment": "staging"},
    {"name": "FLOW"},
    {"name": "résumé"},
    {"model": "claude-3-5-sonnet", "status": "error"},
]


def test_trace_list_matches_the_reference_for_every_filter(workload):
    start, end = workload["window"]
    for data in workload["orgs"]:
        user = next(s["user_id"] for s in data.spans if s["user_id"])
        session = data.spans[0]["session_id"] or data.spans[1]["session_id"]
        for filters in [*TRACE_FILTERS, {"user_id": user}, {"session_id": session}]:
            items = walk(data.key, "/api/v1/traces", limit=7, **filters,
                         **{"from": iso(start), "to": iso(end)})
            expected = expected_trace_ids(data, start, end, filters)
            assert [i["trace_id"] for i in items] == expected, filters
            for item in items:
                assert as_expected(item) == trace_summary(data, item["trace_id"])
    # The filters are not vacuous: each selects some traces and not all of them.
    first = workload["orgs"][0]
    for filters in TRACE_FILTERS[1:]:
        assert 0 < len(expected_trace_ids(first, start, end, filters)) < len(first.traces), filters


def test_trace_list_defaults_to_the_last_24_hours_newest_first(workload):
    data = workload["orgs"][1]
    page = get(data.key, "/api/v1/traces", limit=500)
    assert parse(page["to"]) - parse(page["from"]) == timedelta(hours=24)
    assert [i["trace_id"] for i in page["items"]] == expected_trace_ids(
        data, parse(page["from"]), parse(page["to"]), {})
    assert len(page["items"]) == len(data.traces)
    assert page["next_cursor"] is None


def test_a_window_cuts_traces_by_their_start(workload):
    data = workload["orgs"][0]
    starts = sorted(trace_summary(data, t)["start_time"] for t in data.traces)
    start, end = starts[5], starts[20]  # inclusive start, exclusive end
    items = walk(data.key, "/api/v1/traces", **{"from": iso(start), "to": iso(end)})
    assert [i["trace_id"] for i in items] == expected_trace_ids(data, start, end, {})
    assert len(items) == 15


def test_trace_tree_content_and_summary(workload):
    for data in workload["orgs"]:
        for trace_id, spans in data.traces.items():
            trace = get(data.key, f"/api/v1/traces/{trace_id}")
            assert tree_shape(trace["spans"]) == expected_tree(spans), trace_id
            summary = {k: v for k, v in trace.items() if k not in ("spans", "truncated")}
            assert as_expected(summary) == trace_summary(data, trace_id)
            assert trace["truncated"] is False
            sent = {s["span_id"]: s for s in spans}
            stack = list(trace["spans"])
            while stack:
                node = stack.pop()
                stack.extend(node["children"])
                span = sent[node["span_id"]]
                assert node["input"] == span["input"]  # JSON parsed, text as text
                assert node["output"] == span["output"]
                assert node["parent_span_id"] == span["parent_span_id"]
                assert node["status"] == span["status"] and node["model"] == span["model"]
                assert node["tags"] == span["tags"]
                if "end_time" in span:
                    assert node["duration_ms"] == pytest.approx(duration_ms(span))
                else:
                    assert node["end_time"] is None and node["duration_ms"] is None
    shapes = [expected_tree(spans) for d in workload["orgs"] for spans in d.traces.values()]
    assert any(len(shape) > 1 for shape in shapes), "no trace with an orphan at the top"
    assert any(any(children for _, kids in shape for _, children in kids) for shape in shapes)


def test_another_orgs_trace_and_session_are_404(workload):
    first, second = workload["orgs"][:2]
    own = next(t for t in second.traces if t != "shared-trace-id")
    response = client_for(first.key).get(f"/api/v1/traces/{own}")
    assert response.status_code == 404
    session = next(s["session_id"] for s in second.spans if s["session_id"])
    assert client_for(first.key).get(f"/api/v1/sessions/{session}").status_code == 404
    # The same trace id in two orgs: each sees its own spans only.
    for data in (first, second):
        trace = get(data.key, "/api/v1/traces/shared-trace-id")
        assert trace["span_count"] == len(data.traces["shared-trace-id"])


def test_span_search_matches_the_reference(workload):
    start, end = workload["window"]
    data = workload["orgs"][0]
    cases = [{}, {"model": "gpt-4o-mini"}, {"kind": "tool"}, {"status": "error"},
             {"min_latency_ms": 300}, {"min_tokens": 2500}, {"tag": "rag", "kind": "llm"},
             {"name": "STEP 3"}, {"min_latency_ms": 100, "min_tokens": 100, "status": "ok"}]
    for filters in cases:
        items = walk(data.key, "/api/v1/spans", limit=13, **filters,
                     **{"from": iso(start), "to": iso(end)})
        expected = sorted((s for s in data.spans if span_matches(s, filters)),
                          key=lambda s: (parse(s["start_time"]), s["trace_id"], s["span_id"]),
                          reverse=True)
        assert [(i["trace_id"], i["span_id"]) for i in items] == [
            (s["trace_id"], s["span_id"]) for s in expected], filters
        if filters:
            assert 0 < len(expected) < len(data.spans), filters
        for item in items:
            span = next(s for s in expected if s["span_id"] == item["span_id"])
            assert item["total_tokens"] == (span["usage"]["input_tokens"]
                                            + span["usage"]["output_tokens"])
            assert Decimal(item["cost"]) == data.cost[(span["trace_id"], span["span_id"])]


def test_a_session_lists_its_traces_oldest_first(workload):
    for data in workload["orgs"]:
        sessions = {s["session_id"] for s in data.spans if s["session_id"]}
        for session in sessions:
            body = get(data.key, f"/api/v1/sessions/{session}")
            expected = sorted(
                (trace_summary(data, t) for t, spans in data.traces.items()
                 if any(s["session_id"] == session for s in spans)),
                key=lambda t: (t["start_time"], t["trace_id"]))
            assert [as_expected(t) for t in body["traces"]] == expected
            assert body["truncated"] is False


@pytest.mark.parametrize("group_by", ["none", "model", "kind", "environment"])
def test_metrics_match_the_reference(workload, group_by):
    start, end = workload["window"]
    for data in workload["orgs"][:2]:
        body = get(data.key, "/api/v1/metrics", bucket="hour", group_by=group_by,
                   **{"from": iso(start), "to": iso(end)})
        groups = defaultdict(list)
        for span in data.spans:
            bucket = parse(span["start_time"]).replace(minute=0, second=0, microsecond=0)
            groups[(bucket, "" if group_by == "none" else span[group_by])].append(span)
        assert len(body["series"]) == len(groups)
        for point in body["series"]:
            spans = groups[(parse(point["bucket_start"]), point.get("group", ""))]
            assert point["span_count"] == len(spans)
            errors = sum(s["status"] == "error" for s in spans)
            assert point["error_count"] == errors
            assert point["error_rate"] == pytest.approx(errors / len(spans))
            assert point["input_tokens"] == sum(s["usage"]["input_tokens"] for s in spans)
            assert point["output_tokens"] == sum(s["usage"]["output_tokens"] for s in spans)
            latencies = [duration_ms(s) for s in spans if "end_time" in s]
            for level, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
                value = point["latency_ms"][name]
                if latencies:
                    assert within_quantile_error(value, latencies, level), (name, value)
                else:
                    assert value is None


def test_metrics_buckets_by_minute_and_day(workload):
    start, end = workload["window"]
    data = workload["orgs"][0]
    for bucket, width in (("minute", timedelta(minutes=1)), ("day", timedelta(days=1))):
        body = get(data.key, "/api/v1/metrics", bucket=bucket,
                   **{"from": iso(start), "to": iso(end)})
        assert sum(p["span_count"] for p in body["series"]) == len(data.spans)
        for point in body["series"]:
            bucket_start = parse(point["bucket_start"])
            inside = [s for s in data.spans
                      if bucket_start <= parse(s["start_time"]) < bucket_start + width]
            assert point["span_count"] == len(inside)


def test_openapi_schema_and_docs_cover_every_endpoint(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = orjson.loads(schema.content)["paths"]
    assert set(paths["/api/v1/spans"]) >= {"get", "post"}
    for path in ("/api/v1/traces", "/api/v1/traces/{trace_id}", "/api/v1/metrics",
                 "/api/v1/sessions/{session_id}"):
        assert "Cached per org and query for" in paths[path]["get"]["description"], path
    names = {p["name"] for p in paths["/api/v1/traces"]["get"]["parameters"]}
    assert names >= {"from", "to", "user_id", "session_id", "model", "status", "tag",
                     "environment", "name", "limit", "cursor"}
    assert client.get("/api/docs/").status_code == 200


def test_long_sessions_and_traces_are_cut_and_say_so(workload):
    data = workload["orgs"][0]
    session, traces = max(
        ((s, {t for t, spans in data.traces.items() if any(x["session_id"] == s for x in spans)})
         for s in {x["session_id"] for x in data.spans if x["session_id"]}),
        key=lambda item: len(item[1]))
    oldest = sorted(traces, key=lambda t: (trace_summary(data, t)["start_time"], t))
    with override_settings(QUERY_SESSION_MAX_TRACES=2, QUERY_TRACE_MAX_SPANS=3):
        body = get(data.key, f"/api/v1/sessions/{session}")
        assert body["truncated"] is True
        assert [t["trace_id"] for t in body["traces"]] == oldest[:2]
        trace_id, spans = max(data.traces.items(), key=lambda item: len(item[1]))
        trace = get(data.key, f"/api/v1/traces/{trace_id}")
    assert len(traces) > 2 and len(spans) > 3
    assert trace["truncated"] is True and trace["span_count"] == 3


def test_span_tree_keeps_cycles_and_deep_chains_within_bounds():
    def node(span_id, parent):
        return {"span_id": span_id, "parent_span_id": parent}

    # a <-> b form a cycle, c hangs under b, d is a root: the cycle is cut at its first span.
    tree = span_tree([node("a", "b"), node("b", "a"), node("c", "b"), node("d", "")])
    assert tree_shape(tree) == [("a", [("b", [("c", [])])]), ("d", [])]
    chain = [node("s0", "")] + [node(f"s{i}", f"s{i - 1}") for i in range(1, 250)]
    tree = span_tree(chain)
    assert [n["span_id"] for n in tree] == ["s0", "s101", "s202"]  # re-rooted every 101
    assert orjson.dumps(tree)  # within the encoder's nesting limit
