"""Hostile input: quotes, SQL, placeholders, unicode, 10 KB strings, forged cursors and
another org's ids get correct empty answers or 400s naming the parameter; nothing leaks,
and no user value ever becomes SQL text."""

from datetime import timedelta

import pytest
from django.core.cache import cache

from ingestion.query.views import hot_traces
from tests.ingest_helpers import client_for, count_rows, days_ago, iso_z
from tests.query_workload import ingest_workload, merges_stopped, now_floor_hour

pytestmark = pytest.mark.django_db

HOSTILE = [
    "' OR 1=1 --",
    "x'); DROP TABLE spans; --",
    "\\' OR \\'1\\'=\\'1",
    "{org:UInt64}",
    "%' OR ''='",
    "\u202e🙂 中文 ünï",
    "a\\",
    "`backtick` \"double\"",
    "1 UNION ALL SELECT * FROM system.tables",
]
TRACE_FILTERS = ["user_id", "session_id", "model", "tag", "environment", "name"]
SPAN_FILTERS = [*TRACE_FILTERS]


@pytest.fixture(scope="module")
def orgs(django_db_setup, django_db_blocker):
    with merges_stopped(), django_db_blocker.unblock():
        yield ingest_workload(base=now_floor_hour() - timedelta(hours=4),
                               traces_per_org=(6, 6), seed=23)


@pytest.fixture(autouse=True)
def empty_caches():
    cache.clear()
    hot_traces.clear()


def assert_bad(response, parameter: str) -> None:
    assert response.status_code == 400, (parameter, response.status_code, response.content)
    assert parameter in response.json(), response.json()


@pytest.mark.parametrize("path,filters", [("/api/v1/traces", TRACE_FILTERS),
                                          ("/api/v1/spans", SPAN_FILTERS)])
def test_hostile_filter_values_are_bound_and_match_nothing(orgs, clickhouse_queries, path,
                                                           filters):
    client = client_for(orgs[0].key)
    rows_before = count_rows(orgs[0].org.id, final=True)
    for name in filters:
        clickhouse_queries.clear()
        benign = client.get(path, {name: "zzz-nothing"})
        assert benign.status_code == 200 and benign.json()["items"] == []
        benign_sql = [sql for sql, _ in clickhouse_queries]
        for value in HOSTILE:
            clickhouse_queries.clear()
            response = client.get(path, {name: value})
            assert response.status_code == 200, (name, value, response.content)
            assert response.json()["items"] == [], (name, value)
            # The SQL is the same whatever the value; the value travels as a parameter.
            assert [sql for sql, _ in clickhouse_queries] == benign_sql, (name, value)
            assert value in clickhouse_queries[0][1].values(), (name, value)
    assert count_rows(orgs[0].org.id, final=True) == rows_before  # nothing dropped or altered


def test_ten_kilobyte_and_null_character_values_are_400s(orgs, clickhouse_queries):
    client = client_for(orgs[0].key)
    for path, names in (("/api/v1/traces", TRACE_FILTERS), ("/api/v1/spans", SPAN_FILTERS)):
        for name in names:
            assert_bad(client.get(path, {name: "x" * 10240}), name)
            assert_bad(client.get(path, {name: "a\x00b"}), name)
    assert_bad(client.get("/api/v1/traces", {"cursor": "c" * 10240}), "cursor")
    assert clickhouse_queries == []  # refused before any query


def test_hostile_path_ids_are_404s(orgs):
    client = client_for(orgs[0].key)
    for value in [*HOSTILE, "x" * 10240, "..", "%2e%2e"]:
        for kind in ("traces", "sessions"):
            response = client.get(f"/api/v1/{kind}/{value.replace('/', '%2F')}")
            assert response.status_code == 404, (kind, value, response.content)


def test_another_orgs_ids_find_nothing_and_nothing_leaks(orgs):
    mine, theirs = orgs
    client = client_for(mine.key)
    their_only = [t for t in theirs.traces if t not in mine.traces]
    their_users = {s["user_id"] for s in theirs.spans if s["user_id"]}
    their_sessions = {s["session_id"] for s in theirs.spans if s["session_id"]}
    for trace_id in their_only:
        assert client.get(f"/api/v1/traces/{trace_id}").status_code == 404
    for session in their_sessions:
        assert client.get(f"/api/v1/sessions/{session}").status_code == 404
        for path in ("/api/v1/traces", "/api/v1/spans"):
            assert client.get(path, {"session_id": session}).json()["items"] == []
    for user in their_users:
        for path in ("/api/v1/traces", "/api/v1/spans"):
            assert client.get(path, {"user_id": user}).json()["items"] == []
    # Every answer of mine, unfiltered, holds only my traces.
    listed = client.get("/api/v1/traces", {"limit": 500}).json()["items"]
    assert {t["trace_id"] for t in listed} == set(mine.traces)
    spans = client.get("/api/v1/spans", {"limit": 500}).json()["items"]
    assert {(s["trace_id"], s["span_id"]) for s in spans} == {
        (s["trace_id"], s["span_id"]) for s in mine.spans}
    total = sum(p["span_count"] for p in client.get("/api/v1/metrics").json()["series"])
    assert total == len(mine.spans)


def test_forged_and_foreign_cursors(orgs):
    mine, theirs = orgs
    client = client_for(mine.key)
    page = client.get("/api/v1/traces", {"limit": 2}).json()
    cursor = page["next_cursor"]
    assert cursor
    spans_cursor = client.get("/api/v1/spans", {"limit": 2}).json()["next_cursor"]
    tampered = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")
    for bad in ("garbage", tampered, spans_cursor, "' OR 1=1 --", cursor + "x"):
        assert_bad(client.get("/api/v1/traces", {"limit": 2, "cursor": bad}), "cursor")
    # A cursor is only good with the filters it was made for.
    assert_bad(client.get("/api/v1/traces", {"limit": 2, "cursor": cursor, "status": "ok"}),
               "cursor")
    # Another org replaying my cursor reads its own traces, never mine.
    foreign = client_for(theirs.key).get("/api/v1/traces", {"limit": 2, "cursor": cursor})
    assert foreign.status_code == 200
    assert {t["trace_id"] for t in foreign.json()["items"]} <= set(theirs.traces)


@pytest.mark.parametrize("path,params,parameter", [
    ("/api/v1/traces", {"limit": "0"}, "limit"),
    ("/api/v1/traces", {"limit": "501"}, "limit"),
    ("/api/v1/traces", {"limit": "ten"}, "limit"),
    ("/api/v1/traces", {"from": "yesterday"}, "from"),
    ("/api/v1/traces", {"to": f"{days_ago(1).year}-13-01T00:00:00Z"}, "to"),
    ("/api/v1/traces", {"from": iso_z(days_ago(1)), "to": iso_z(days_ago(2))}, "from"),
    ("/api/v1/traces", {"from": iso_z(days_ago(61)), "to": iso_z(days_ago(0))}, "from"),
    ("/api/v1/traces", {"from": "1900-01-01T00:00:00Z", "to": "1900-01-02T00:00:00Z"}, "from"),
    ("/api/v1/traces", {"from": "9999-01-01T00:00:00Z", "to": "9999-01-02T00:00:00Z"}, "from"),
    ("/api/v1/traces", {"status": "maybe"}, "status"),
    ("/api/v1/traces", {"modle": "gpt-4o"}, "modle"),
    ("/api/v1/spans", {"kind": "robot"}, "kind"),
    ("/api/v1/spans", {"min_latency_ms": "nan"}, "min_latency_ms"),
    ("/api/v1/spans", {"min_latency_ms": "inf"}, "min_latency_ms"),
    ("/api/v1/spans", {"min_latency_ms": "-1"}, "min_latency_ms"),
    ("/api/v1/spans", {"min_tokens": "-1"}, "min_tokens"),
    ("/api/v1/spans", {"min_tokens": str(2**64)}, "min_tokens"),
    ("/api/v1/metrics", {"bucket": "week"}, "bucket"),
    ("/api/v1/metrics", {"group_by": "user_id"}, "group_by"),
    ("/api/v1/metrics", {"group_by": "model; DROP TABLE spans"}, "group_by"),
    ("/api/v1/metrics", {"bucket": "minute", "from": iso_z(days_ago(31)),
                         "to": iso_z(days_ago(1))}, "bucket"),
    ("/api/v1/traces/some-trace", {"expand": "all"}, "expand"),
])
def test_bad_parameters_are_400s_naming_them(orgs, clickhouse_queries, path, params,
                                             parameter):
    assert_bad(client_for(orgs[0].key).get(path, params), parameter)
    assert clickhouse_queries == []


def test_no_key_or_a_bad_key_is_401(orgs):
    from django.test import Client

    assert Client().get("/api/v1/traces").status_code == 401
    bad = Client(HTTP_AUTHORIZATION="Bearer llm_not-a-key' OR 1=1 --")
    for path in ("/api/v1/traces", "/api/v1/spans", "/api/v1/metrics", "/api/v1/traces/x"):
        assert bad.get(path).status_code == 401
