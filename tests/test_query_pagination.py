"""Cursor walks stay exact while a second client keeps ingesting: every trace (and span)
that existed when the walk began is listed exactly once."""

import threading
from datetime import timedelta

import pytest
from django.db import connection

from tests.ingest_helpers import client_for, drain_everything, new_org, post_spans
from tests.query_workload import iso, now_floor_hour, simple_span, simple_trace, wait_for_settle

pytestmark = pytest.mark.django_db(transaction=True)  # the ingesting thread sees the org


class Ingestor(threading.Thread):
    """The second client: in rounds, sends new traces that start between the listed ones,
    and late root spans that move already listed traces to the end of the order (their
    start becomes the earliest of all), then drains. `rounds` counts finished rounds."""

    def __init__(self, key: str, base, listed: list[str]):
        super().__init__(daemon=True)
        self.key, self.base, self.listed = key, base, listed
        self.rounds, self.moved, self.added = 0, set(), []
        self.stop, self.done_round, self.error = threading.Event(), threading.Event(), None

    def run(self) -> None:
        client = client_for(self.key)
        try:
            while not self.stop.is_set():
                spans = []
                for trace_id in [t for t in list(self.listed) if t not in self.moved][:3]:
                    early = self.base - timedelta(minutes=30, seconds=len(self.moved))
                    spans.append(simple_span(trace_id, "late-root", early, parent=None))
                    self.moved.add(trace_id)
                for k in range(2):
                    new_id = f"new-{self.rounds}-{k}"
                    start = self.base + timedelta(seconds=60 * (7 * self.rounds + 3 * k) + 30)
                    spans.extend(simple_trace(new_id, start))
                    self.added.append(new_id)
                response = post_spans(client, spans)
                assert response.status_code == 202, response.content
                drain_everything()
                self.rounds += 1
                self.done_round.set()
        except BaseException as exc:  # reported by the test thread
            self.error = exc
            self.done_round.set()
        finally:
            connection.close()  # this thread's own, or the test database cannot be dropped


def test_a_trace_walk_lists_each_trace_once_while_spans_keep_arriving():
    base = now_floor_hour() - timedelta(hours=3)
    org, key = new_org()
    originals = [f"orig-{i:02d}" for i in range(60)]
    client = client_for(key)
    spans = [s for i, trace_id in enumerate(originals)
             for s in simple_trace(trace_id, base + timedelta(minutes=i))]
    assert post_spans(client, spans).status_code == 202
    drain_everything()
    wait_for_settle()
    window = {"from": iso(base - timedelta(hours=2)), "to": iso(base + timedelta(hours=2)),
              "limit": 8}

    listed: list[str] = []
    ingestor = Ingestor(key, base, listed)
    page = client.get("/api/v1/traces", window).json()
    listed.extend(item["trace_id"] for item in page["items"])
    ingestor.start()
    try:
        while page["next_cursor"]:
            # Let the other client store a round (late roots for listed traces, new traces)
            # between any two pages.
            ingestor.done_round.clear()
            assert ingestor.done_round.wait(60) and ingestor.error is None, ingestor.error
            response = client.get("/api/v1/traces", {**window, "cursor": page["next_cursor"]})
            assert response.status_code == 200, response.content
            page = response.json()
            listed.extend(item["trace_id"] for item in page["items"])
    finally:
        ingestor.stop.set()
        ingestor.join(60)
    assert ingestor.error is None, ingestor.error

    assert len(listed) == len(set(listed)), "a trace was listed twice"
    assert sorted(listed) == sorted(originals), "a trace was missed, or a new one slipped in"
    assert listed == sorted(originals, reverse=True)  # the order as the walk began
    assert ingestor.rounds >= 5 and len(ingestor.moved) >= 10  # the race really happened

    # A new walk sees the world as it is now: moved traces last, new ones in between. (Not
    # the same query: the first one's pages are cached for QUERY_TRACES_CACHE_TTL_S.)
    wait_for_settle()
    fresh, cursor, window["limit"] = [], None, 9
    while True:
        page = client.get("/api/v1/traces", {**window, **({"cursor": cursor} if cursor else {})})
        fresh.extend(item["trace_id"] for item in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert sorted(fresh) == sorted(originals + ingestor.added)
    assert set(fresh[-len(ingestor.moved):]) == ingestor.moved


def test_a_span_walk_lists_each_span_once_while_spans_keep_arriving():
    base = now_floor_hour() - timedelta(hours=2)
    org, key = new_org()
    client = client_for(key)
    originals = [s for i in range(20)
                 for s in simple_trace(f"t{i:02d}", base + timedelta(minutes=i))]
    assert post_spans(client, originals).status_code == 202
    drain_everything()
    window = {"from": iso(base - timedelta(hours=1)), "to": iso(base + timedelta(hours=1)),
              "limit": 9}
    listed, cursor, round_number = [], None, 0
    while True:
        response = client.get("/api/v1/spans", {**window, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.content
        listed.extend((i["trace_id"], i["span_id"]) for i in response.json()["items"])
        cursor = response.json()["next_cursor"]
        if not cursor:
            break
        # Meanwhile: newer spans (above the cursor), and a resent copy of a span not listed
        # yet (below it: only a deduplicating read lists it once).
        newer = simple_trace(f"late{round_number}", base + timedelta(minutes=50 + round_number))
        resent = next(s for s in originals if (s["trace_id"], s["span_id"]) not in listed)
        assert post_spans(client, [*newer, resent]).status_code == 202
        drain_everything()
        round_number += 1
    assert round_number >= 5
    assert len(listed) == len(set(listed))
    assert set(listed) == {(s["trace_id"], s["span_id"]) for s in originals}
