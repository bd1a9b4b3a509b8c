"""Query caches: a hit never reaches ClickHouse (its queries are counted), an answer lives no
longer than its endpoint's TTL, keys are per org and normalised, Redis down costs only speed."""

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from redis import Redis

from ingestion.query.views import hot_traces
from llmops.cache import ENTRY_OVERHEAD_BYTES, ByteLRU
from tests.ingest_helpers import client_for, drain_everything, post_spans
from tests.query_workload import (
    ingest_workload,
    iso,
    merges_stopped,
    now_floor_hour,
    simple_trace,
    wait_for_settle,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def orgs(django_db_setup, django_db_blocker):
    with merges_stopped(), django_db_blocker.unblock():
        yield ingest_workload(base=now_floor_hour() - timedelta(hours=5),
                               traces_per_org=(8, 3), seed=11)


@pytest.fixture(autouse=True)
def empty_caches():
    cache.clear()
    hot_traces.clear()


def endpoints(data) -> list[tuple[str, dict]]:
    trace_id = next(iter(data.traces))
    session = next(s["session_id"] for s in data.spans if s["session_id"])
    return [("/api/v1/traces", {"limit": 5}), (f"/api/v1/traces/{trace_id}", {}),
            ("/api/v1/spans", {"model": "gpt-4o"}), (f"/api/v1/sessions/{session}", {}),
            ("/api/v1/metrics", {"group_by": "model"})]


def test_a_cache_hit_does_not_reach_clickhouse(orgs, clickhouse_queries):
    client = client_for(orgs[0].key)
    for path, params in endpoints(orgs[0]):
        first = client.get(path, params)
        assert first.status_code == 200 and first["X-Cache"] == "miss", path
        assert clickhouse_queries, path  # computed: it did query
        clickhouse_queries.clear()
        again = client.get(path, params)
        assert again["X-Cache"] in ("l1", "l2") and again.content == first.content, path
        assert clickhouse_queries == [], path


def test_a_hot_trace_comes_from_the_process_then_from_redis(orgs, clickhouse_queries):
    client = client_for(orgs[0].key)
    path = endpoints(orgs[0])[1][0]
    assert client.get(path)["X-Cache"] == "miss"
    assert client.get(path)["X-Cache"] == "l1"
    hot_traces.clear()  # another API process: its L1 is cold, Redis has the answer
    clickhouse_queries.clear()
    assert client.get(path)["X-Cache"] == "l2"
    assert client.get(path)["X-Cache"] == "l1"
    assert clickhouse_queries == []


def test_an_answer_expires_after_its_ttl(orgs, clickhouse_queries):
    client = client_for(orgs[0].key)
    with override_settings(QUERY_TRACES_CACHE_TTL_S=1, QUERY_TRACE_CACHE_TTL_S=1,
                           QUERY_METRICS_CACHE_TTL_S=1):
        for path, params in [endpoints(orgs[0])[i] for i in (0, 1, 4)]:
            assert client.get(path, params)["X-Cache"] == "miss"
            assert client.get(path, params)["X-Cache"] in ("l1", "l2")
            time.sleep(1.1)
            clickhouse_queries.clear()
            assert client.get(path, params)["X-Cache"] == "miss", path
            assert clickhouse_queries, path


def test_the_redis_entry_carries_the_endpoints_ttl(orgs):
    client = client_for(orgs[0].key)
    with override_settings(QUERY_SPANS_CACHE_TTL_S=77):
        client.get("/api/v1/spans", {"limit": 3})
    redis = Redis.from_url(settings.CACHES["default"]["LOCATION"])
    keys = list(redis.scan_iter(match=f"*q:spans:v1:{orgs[0].org.id}:*"))
    assert len(keys) == 1
    assert 70 < redis.ttl(keys[0]) <= 77


def test_a_cached_answer_is_stale_until_its_ttl_then_fresh(orgs):
    client = client_for(orgs[1].key)
    window = {"from": iso(now_floor_hour() - timedelta(hours=6)),
              "to": iso(now_floor_hour() + timedelta(hours=1))}
    ttl = 6
    with override_settings(QUERY_TRACES_CACHE_TTL_S=ttl):
        before = client.get("/api/v1/traces", window).json()["items"]
        cached_at = time.monotonic()
        assert post_spans(client, simple_trace("fresh", now_floor_hour())).status_code == 202
        drain_everything()
        wait_for_settle()
        assert time.monotonic() - cached_at < ttl - 0.5, "too slow to see the stale answer"
        # Stored, yet the cached answer stands: an answer can be as old as its TTL.
        assert client.get("/api/v1/traces", window).json()["items"] == before
        time.sleep(max(0.0, ttl + 0.1 - (time.monotonic() - cached_at)))
        after = client.get("/api/v1/traces", window).json()["items"]
    assert {t["trace_id"] for t in after} == {t["trace_id"] for t in before} | {"fresh"}


def test_keys_are_per_org_and_normalised(orgs, clickhouse_queries):
    first, second = client_for(orgs[0].key), client_for(orgs[1].key)
    one = first.get("/api/v1/traces?status=ok&limit=4&environment=production")
    clickhouse_queries.clear()
    same = first.get("/api/v1/traces?environment=production&limit=4&status=ok")
    assert same["X-Cache"] == "l2" and same.content == one.content
    assert clickhouse_queries == []
    other = second.get("/api/v1/traces?status=ok&limit=4&environment=production")
    assert other["X-Cache"] == "miss" and clickhouse_queries
    ids = {t["trace_id"] for t in other.json()["items"]}
    assert ids and ids <= set(orgs[1].traces) and not ids & (set(orgs[0].traces) - {
        "shared-trace-id"})


def test_a_404_is_not_cached(orgs):
    client = client_for(orgs[0].key)
    assert client.get("/api/v1/traces/arrives-later").status_code == 404
    assert post_spans(client, simple_trace("arrives-later", now_floor_hour())).status_code == 202
    drain_everything()
    response = client.get("/api/v1/traces/arrives-later")
    assert response.status_code == 200 and response["X-Cache"] == "miss"
    assert response.json()["span_count"] == 3


def test_with_redis_down_answers_still_come(orgs):
    client = client_for(orgs[0].key)
    # Every cache alias on the dead Redis (the dashboard's sessions too).
    dead = {alias: {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": "redis://127.0.0.1:1/0"} for alias in settings.CACHES}
    with override_settings(CACHES=dead):
        for _ in range(2):
            response = client.get("/api/v1/traces", {"limit": 3})
            assert response.status_code == 200 and response["X-Cache"] == "miss"
            assert len(response.json()["items"]) == 3


def test_the_hot_trace_lru_is_bounded_by_bytes_and_evicts_the_least_recent():
    value = b"x" * 1000
    per_entry = len("k0") + len(value) + ENTRY_OVERHEAD_BYTES
    lru = ByteLRU(max_bytes=per_entry * 3)
    far = time.time() + 60
    for name in ("k0", "k1", "k2"):
        lru.put(name, value, far)
    assert lru.get("k0") == value  # k0 is now the most recent; k1 the least
    lru.put("k3", value, far)
    assert lru.get("k1") is None and {lru.get(k) for k in ("k0", "k2", "k3")} == {value}
    assert lru.size == per_entry * 3 == lru.max_bytes and len(lru) == 3
    lru.put("k4", b"y" * (per_entry * 3), far)  # larger than the whole cache: not kept
    assert lru.get("k4") is None and len(lru) == 3
    lru.put("k5", value, time.time() - 1)  # already expired: not kept, evicts nothing
    assert lru.get("k5") is None and len(lru) == 3
    lru.put("k6", value, time.time() + 0.2)
    time.sleep(0.3)
    assert lru.get("k6") is None  # expired in place
    assert len(lru) == 2 and lru.size == per_entry * 2
