"""Issue 12, item 4: a user id, session id, tags or trace name set on any span of a trace
count for every span of it (the ones without their own) in the trace list, sessions, span
search, the cost report and the metrics; the newest version of each span decides."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ingestion.query.views import hot_traces
from tests.ingest_helpers import client_for, drain_everything, new_org, post_spans
from tests.query_workload import wait_for_settle

pytestmark = pytest.mark.django_db(transaction=True)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def base_time() -> datetime:
    """Three hours ago, on the hour: the whole test lies in the last day."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def window() -> dict:
    start = base_time()
    return {"from": iso(start - timedelta(hours=1)), "to": iso(start + timedelta(hours=2))}


def span(trace: str, number: int, cost: str, **fields) -> dict:
    """Span `number` of `trace` (0: the root, the others its children), with a cost."""
    start = base_time() + timedelta(minutes=1, seconds=number)
    return {"trace_id": trace, "span_id": f"{trace}-{number}",
            "parent_span_id": f"{trace}-0" if number else None,
            "name": "agent run" if number == 0 else f"step {number}", "kind": "llm",
            "start_time": iso(start), "end_time": iso(start + timedelta(milliseconds=500)),
            "model": "acme-one", "provider": "acme",
            "usage": {"input_tokens": 10, "output_tokens": 5}, "cost": float(cost), **fields}


def send_and_store(key: str, spans: list[dict]) -> None:
    response = post_spans(client_for(key), spans)
    assert response.status_code == 202, response.content
    drain_everything()
    wait_for_settle()


def get(key: str, path: str, **params) -> dict:
    from django.core.cache import cache

    cache.clear()  # each read computes its answer
    hot_traces.clear()
    response = client_for(key).get(path, params)
    assert response.status_code == 200, (path, params, response.content)
    return response.json()


def traces(key: str, **filters) -> list[dict]:
    return get(key, "/api/v1/traces", **window(), **filters)["items"]


def costs_by(key: str, group_by: str) -> dict[str, tuple[int, Decimal]]:
    """(spans, cost) per group over the test's window, all buckets together."""
    report = get(key, "/api/v1/costs", **window(), bucket="day", group_by=group_by)
    groups = defaultdict(lambda: [0, Decimal(0)])
    for bucket in report["buckets"]:
        groups[bucket["group"]][0] += bucket["spans"]
        groups[bucket["group"]][1] += Decimal(bucket["cost"])
    return {group: (n, cost) for group, (n, cost) in groups.items()}


def cost_totals(key: str, **filters) -> tuple[int, Decimal]:
    """(spans, cost) of the cost report over the test's window, filtered."""
    totals = get(key, "/api/v1/costs", **window(), **filters)["totals"]
    return totals["spans"], Decimal(totals["cost"])


def metric_spans(key: str, **filters) -> int:
    series = get(key, "/api/v1/metrics", **window(), bucket="hour", **filters)["series"]
    return sum(point["span_count"] for point in series)


def searched(key: str, **filters) -> list[str]:
    return sorted(item["span_id"]
                  for item in get(key, "/api/v1/spans", **window(), **filters)["items"])


ROOT_FIELDS = {"user_id": "alice", "session_id": "sess-a", "tags": ["vip"],
               "metadata": {"trace.name": "Checkout"}}


def test_fields_on_the_root_alone_count_for_every_span_of_the_trace():
    drain_everything()
    org, key = new_org()
    send_and_store(key, [
        span("ta", 0, "0.1", **ROOT_FIELDS), span("ta", 1, "0.2"), span("ta", 2, "0.3"),
        # Another trace: a child with a user of its own keeps it.
        span("tc", 0, "1", user_id="carol", session_id="sess-c", tags=["free"]),
        span("tc", 1, "2", user_id="dave"), span("tc", 2, "4"),
    ])

    # The trace list: filtered by, and showing, the trace's fields and name.
    [item] = traces(key, name="checkout")
    assert (item["trace_id"], item["name"], item["user_id"], item["session_id"],
            item["tags"], item["span_count"]) == ("ta", "Checkout", "alice", "sess-a",
                                                  ["vip"], 3)
    assert [i["trace_id"] for i in traces(key, user_id="alice", session_id="sess-a",
                                          tag="vip")] == ["ta"]
    assert traces(key, name="agent run") == [i for i in traces(key) if i["trace_id"] == "tc"]
    [carol] = traces(key, user_id="carol")
    assert (carol["name"], carol["user_id"]) == ("agent run", "carol")  # the root's user
    assert [i["trace_id"] for i in traces(key, user_id="dave")] == ["tc"]

    # The session: its traces, with the totals of all their spans.
    session = get(key, "/api/v1/sessions/sess-a")
    assert [(t["trace_id"], t["span_count"], t["cost"]) for t in session["traces"]] == [
        ("ta", 3, "0.600000000000")]

    # The cost report by user, session and tag: every span under its trace's values.
    assert costs_by(key, "user") == {"alice": (3, Decimal("0.6")), "carol": (2, Decimal(5)),
                                     "dave": (1, Decimal(2))}
    assert costs_by(key, "session") == {"sess-a": (3, Decimal("0.6")),
                                        "sess-c": (3, Decimal(7))}
    assert costs_by(key, "tag") == {"vip": (3, Decimal("0.6")), "free": (3, Decimal(7))}
    assert [cost_totals(key, user_id="alice"), cost_totals(key, user_id="carol"),
            cost_totals(key, session_id="sess-c"), cost_totals(key, tag="vip"),
            cost_totals(key, user_id="dave", tag="free")] == [
        (3, Decimal("0.6")), (2, Decimal(5)), (3, Decimal(7)), (3, Decimal("0.6")),
        (1, Decimal(2))]

    # The metrics and span search, filtered by user, session and tag.
    assert [metric_spans(key, user_id="alice"), metric_spans(key, session_id="sess-a"),
            metric_spans(key, tag="vip"), metric_spans(key, user_id="carol"),
            metric_spans(key, user_id="dave"), metric_spans(key, session_id="sess-c")] == [
        3, 3, 3, 2, 1, 3]
    assert searched(key, user_id="alice") == ["ta-0", "ta-1", "ta-2"]
    assert searched(key, user_id="carol") == ["tc-0", "tc-2"]
    assert searched(key, tag="vip", session_id="sess-a") == ["ta-0", "ta-1", "ta-2"]

    # The trace itself names the trace and its fields the same way; its spans show what
    # each one carries.
    detail = get(key, "/api/v1/traces/ta")
    assert (detail["name"], detail["user_id"], detail["session_id"], detail["tags"]) == (
        "Checkout", "alice", "sess-a", ["vip"])
    assert detail["spans"][0]["children"][0]["user_id"] == ""


def test_fields_on_a_child_sent_after_the_root_count_for_the_whole_trace():
    drain_everything()
    org, key = new_org()
    send_and_store(key, [span("tb", 0, "1"), span("tb", 1, "2")])
    assert costs_by(key, "user") == {"": (2, Decimal(3))}
    send_and_store(key, [span("tb", 2, "4", user_id="bob", session_id="sess-b",
                              tags=["late"], metadata={"trace.name": "Late named"})])

    [item] = traces(key, name="late named")
    assert (item["trace_id"], item["user_id"], item["session_id"], item["tags"]) == (
        "tb", "bob", "sess-b", ["late"])
    assert [i["trace_id"] for i in traces(key, user_id="bob", tag="late")] == ["tb"]
    session = get(key, "/api/v1/sessions/sess-b")
    assert [(t["trace_id"], t["span_count"], t["cost"]) for t in session["traces"]] == [
        ("tb", 3, "7.000000000000")]
    assert costs_by(key, "user") == {"bob": (3, Decimal(7))}
    assert cost_totals(key, user_id="bob") == cost_totals(key, tag="late") == (3, Decimal(7))
    assert costs_by(key, "session") == {"sess-b": (3, Decimal(7))}
    assert costs_by(key, "tag") == {"late": (3, Decimal(7))}
    assert [metric_spans(key, user_id="bob"), metric_spans(key, session_id="sess-b"),
            metric_spans(key, tag="late")] == [3, 3, 3]
    assert searched(key, user_id="bob") == ["tb-0", "tb-1", "tb-2"]


def test_a_resent_root_without_the_user_removes_it_from_the_whole_trace():
    drain_everything()
    org, key = new_org()
    send_and_store(key, [span("ta", 0, "0.1", **ROOT_FIELDS), span("ta", 1, "0.2"),
                         span("ta", 2, "0.3")])
    assert costs_by(key, "user") == {"alice": (3, Decimal("0.6"))}
    assert metric_spans(key, user_id="alice") == 3

    # A new version of the root, without user, session, tags or trace name.
    send_and_store(key, [span("ta", 0, "0.1")])
    [item] = traces(key)
    assert (item["name"], item["user_id"], item["session_id"], item["tags"]) == (
        "agent run", "", "", [])
    assert traces(key, user_id="alice") == traces(key, name="checkout") == []
    assert costs_by(key, "user") == {"": (3, Decimal("0.6"))}
    assert costs_by(key, "session") == {"": (3, Decimal("0.6"))}
    assert costs_by(key, "tag") == {"": (3, Decimal("0.6"))}
    assert metric_spans(key, user_id="alice") == metric_spans(key, tag="vip") == 0
    assert cost_totals(key, user_id="alice") == (0, Decimal(0))
    assert searched(key, user_id="alice") == []
    assert get(key, "/api/v1/traces/ta")["user_id"] == ""
    response = client_for(key).get("/api/v1/sessions/sess-a")
    assert response.status_code == 404


def test_a_root_moved_to_another_day_leaves_no_fields_behind():
    """The root's new version starts on the day before: the old one, tombstoned, no longer
    names the trace's user; the new one does, for every span."""
    drain_everything()
    org, key = new_org()
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    late = midnight - timedelta(hours=2)  # yesterday evening
    spans = [span("tm", n, "1") for n in range(3)]
    for number, item in enumerate(spans):
        item["start_time"] = iso(late + timedelta(seconds=number))
        item["end_time"] = iso(late + timedelta(seconds=number + 1))
    send_and_store(key, [{**spans[0], "user_id": "alice"}, *spans[1:]])
    moved = iso(late - timedelta(hours=12))  # the morning before, within a day of the rest
    send_and_store(key, [{**spans[0], "user_id": "bob", "start_time": moved,
                          "end_time": moved}])
    days = {"from": iso(midnight - timedelta(days=2)), "to": iso(midnight)}
    report = get(key, "/api/v1/costs", **days, bucket="day", group_by="user")
    assert {b["group"] for b in report["buckets"]} == {"bob"}
    assert report["totals"]["spans"] == 3
    series = get(key, "/api/v1/metrics", **days, bucket="day", user_id="alice")["series"]
    assert series == []
    assert sum(p["span_count"] for p in get(key, "/api/v1/metrics", **days, bucket="day",
                                            user_id="bob")["series"]) == 3
    [item] = get(key, "/api/v1/traces", **days)["items"]
    assert (item["trace_id"], item["user_id"], item["span_count"]) == ("tm", "bob", 3)
