"""A workload for query tests (orgs, models, sessions, errors, tags, orphans, duplicates),
ingested through the real API and drain, and the Python reference the answers must match."""

import random
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings

from ingestion.models import Org
from llmops.clickhouse import get_client
from tests.ingest_helpers import (
    client_for,
    count_rows,
    drain_everything,
    new_org,
    post_spans,
    stored_spans,
)

MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet"]
KINDS = ["llm", "llm", "tool", "retrieval", "chain", "agent"]
TAGS = ["prod", "beta", "rag", "chat", "it's", "ünï-🙂"]
NAMES = ["Checkout Flow", "search flow", "Résumé builder", "agent loop", "RAG answer"]


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class OrgData:
    org: Org
    key: str
    spans: list[dict] = field(default_factory=list)  # as sent, each once
    cost: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # as stored

    @property
    def traces(self) -> dict[str, list[dict]]:
        grouped = defaultdict(list)
        for span in self.spans:
            grouped[span["trace_id"]].append(span)
        return grouped


def make_trace(rng: random.Random, org_tag: str, number: int, start: datetime) -> list[dict]:
    """A root, children and grandchildren; some traces also get an orphan (its parent was
    never sent), and every ninth has no root at all."""
    trace_id = f"{org_tag}-trace-{number:03d}"
    if number == 7:
        trace_id = "shared-trace-id"  # the same id in every org: each must see only its own
    user = rng.choice([f"user-{org_tag}-{k}" for k in range(4)] + [""])
    session = f"sess-{org_tag}-{rng.randrange(6)}"
    environment = rng.choice(["production", "staging"])
    spans = []
    ids = []
    for index in range(rng.randint(2, 9)):
        span_start = start + timedelta(seconds=index * rng.uniform(0.1, 3),
                                       microseconds=rng.randrange(1_000_000))
        if index == 0:
            parent = None if number % 9 else "never-sent-root"
        elif rng.random() < 0.1:
            parent = "never-sent-parent"
        else:
            parent = rng.choice(ids)
        kind = "agent" if index == 0 else rng.choice(KINDS)
        model = rng.choice(MODELS) if kind == "llm" else ""
        input_tokens = rng.randint(10, 4000) if kind == "llm" else 0
        span = {
            "trace_id": trace_id,
            "span_id": f"{trace_id}-s{index}",
            "parent_span_id": parent,
            "name": rng.choice(NAMES) if index == 0 else f"{kind} step {index}",
            "kind": kind,
            "start_time": iso(span_start),
            "status": "error" if rng.random() < 0.12 else "ok",
            "model": model,
            "provider": "openai" if model.startswith("gpt") else ("anthropic" if model else ""),
            "usage": {"input_tokens": input_tokens,
                      "output_tokens": rng.randint(1, 900) if kind == "llm" else 0,
                      "cached_input_tokens": input_tokens // 4},
            "cost": round(rng.uniform(0, 0.05), 6),
            "session_id": session if rng.random() < 0.9 else "",
            "user_id": user,
            "tags": rng.sample(TAGS, rng.randint(0, 3)),
            "environment": environment,
            "input": [{"role": "user", "content": f"q{index} \"quoted\" ünï"}]
            if rng.random() < 0.7 else f"plain text {index}",
            "output": f"answer {index} 🙂" if rng.random() < 0.9 else None,
        }
        if rng.random() < 0.93:  # the rest are still running: no end time
            span["end_time"] = iso(span_start + timedelta(
                microseconds=int(rng.lognormvariate(12.5, 1))))
        if span["status"] == "error":
            span["status_message"] = "boom"
        spans.append(span)
        ids.append(span["span_id"])
    return spans


def simple_span(trace_id: str, index, start: datetime, parent: str | None = "root") -> dict:
    return {"trace_id": trace_id, "span_id": f"{trace_id}-{index}", "name": f"step {index}",
            "parent_span_id": parent and f"{trace_id}-{parent}", "kind": "llm",
            "start_time": iso(start), "end_time": iso(start + timedelta(milliseconds=80)),
            "model": "gpt-4o", "usage": {"input_tokens": 5, "output_tokens": 1}}


def simple_trace(trace_id: str, start: datetime) -> list[dict]:
    """A root and two children, a second apart."""
    return [simple_span(trace_id, "root", start, parent=None),
            *(simple_span(trace_id, i, start + timedelta(seconds=i)) for i in range(1, 3))]


def ingest_workload(*, base: datetime, traces_per_org: tuple[int, ...] = (40, 25, 6),
                    seed: int = 4) -> list[OrgData]:
    """Orgs with their traces, sent through the API (a few spans sent twice, as a client
    retrying would), drained, then given QUERY_LIST_SETTLE_MS to settle. Call it inside
    `merges_stopped`, so the duplicates stay unmerged and only FINAL reads hide them."""
    rng = random.Random(seed)
    orgs = []
    for org_number, count in enumerate(traces_per_org):
        org, key = new_org()
        data = OrgData(org, key)
        for number in range(count):
            start = base + timedelta(seconds=rng.uniform(0, 4 * 3600))
            data.spans.extend(make_trace(rng, f"o{org_number}", number, start))
        for first in range(0, len(data.spans), 200):
            response = post_spans(client_for(key), data.spans[first:first + 200])
            assert response.status_code == 202, response.content
        orgs.append(data)
    drain_everything()
    # Duplicates: a client resending spans it had sent (newer version, same content), stored
    # by a later insert, so only FINAL (or argMax) reads see each span once.
    for data in orgs:
        resent = rng.sample(data.spans, min(8, len(data.spans)))
        assert post_spans(client_for(data.key), resent).status_code == 202
    drain_everything()
    for data in orgs:
        data.cost = {(r["trace_id"], r["span_id"]): r["cost"] for r in stored_spans(data.org.id)}
        assert len(data.cost) == len(data.spans)
        assert count_rows(data.org.id) == len(data.spans) + 8  # the duplicates are there
    wait_for_settle()
    return orgs


@contextmanager
def merges_stopped():
    """No background merge of spans meanwhile (this test database only)."""
    client = get_client()
    client.command("SYSTEM STOP MERGES spans")
    try:
        yield
    finally:
        client.command("SYSTEM START MERGES spans")


def wait_for_settle() -> None:
    time.sleep(settings.QUERY_LIST_SETTLE_MS / 1000 + 0.2)


# -- the reference -----------------------------------------------------------------------

def span_end(span: dict) -> datetime:
    return parse(span.get("end_time") or span["start_time"])


def trace_summary(data: OrgData, trace_id: str) -> dict:
    spans = data.traces[trace_id]
    root = min(spans, key=lambda s: (s["parent_span_id"] is not None, parse(s["start_time"]),
                                     s["name"]))
    by_start = sorted(spans, key=lambda s: parse(s["start_time"]))
    start = parse(by_start[0]["start_time"])
    end = max(span_end(s) for s in spans)
    fields = trace_level(spans)[trace_id]
    return {
        "trace_id": trace_id,
        "name": fields["name"] or root["name"],
        "start_time": start,
        "end_time": end,
        "duration_ms": (end - start) / timedelta(milliseconds=1),
        "span_count": len(spans),
        "input_tokens": sum(s["usage"]["input_tokens"] for s in spans),
        "output_tokens": sum(s["usage"]["output_tokens"] for s in spans),
        "cost": sum((data.cost[(trace_id, s["span_id"])] for s in spans), Decimal(0)),
        "status": "error" if any(s["status"] == "error" for s in spans) else "ok",
        "user_id": fields["user_id"],
        "session_id": fields["session_id"],
        "tags": fields["tags"],
    }


def _moment(value) -> datetime:
    return value if isinstance(value, datetime) else parse(value)


def trace_level(spans: list[dict]) -> dict[str, dict]:
    """Issue 12's rule, per trace of these (newest) spans: its user, session and trace name
    are the root span's, else the earliest span's that carries one (the name: metadata
    `trace.name`); its tags are all of its spans'."""
    by_trace = defaultdict(list)
    for span in spans:
        by_trace[span["trace_id"]].append(span)

    def first(members: list[dict], value) -> str:
        carrying = sorted((bool(s["parent_span_id"]), _moment(s["start_time"]), value(s))
                          for s in members if value(s))
        return carrying[0][2] if carrying else ""

    return {trace: {
        "user_id": first(members, lambda s: s["user_id"]),
        "session_id": first(members, lambda s: s["session_id"]),
        "tags": sorted({t for s in members for t in s["tags"]}),
        "name": first(members, lambda s: (s.get("metadata") or {}).get("trace.name", "")),
    } for trace, members in by_trace.items()}


def inherited(spans: list[dict]) -> list[dict]:
    """The spans with their trace's user, session and tags where they have none."""
    fields = trace_level(spans)
    return [{**s, "user_id": s["user_id"] or fields[s["trace_id"]]["user_id"],
             "session_id": s["session_id"] or fields[s["trace_id"]]["session_id"],
             "tags": list(s["tags"]) or fields[s["trace_id"]]["tags"]} for s in spans]


def span_matches(span: dict, filters: dict) -> bool:
    checks = {
        "user_id": lambda v: span["user_id"] == v,
        "session_id": lambda v: span["session_id"] == v,
        "model": lambda v: span["model"] == v,
        "tag": lambda v: v in span["tags"],
        "environment": lambda v: span["environment"] == v,
        "status": lambda v: span["status"] == v,
        "kind": lambda v: span["kind"] == v,
        "name": lambda v: v.lower() in span["name"].lower(),
        "min_latency_ms": lambda v: "end_time" in span and duration_ms(span) >= v,
        "min_tokens": lambda v: span["usage"]["input_tokens"] + span["usage"]["output_tokens"]
        >= v,
    }
    return all(checks[name](value) for name, value in filters.items())


def duration_ms(span: dict) -> float:
    return (span_end(span) - parse(span["start_time"])) / timedelta(milliseconds=1)


def expected_trace_ids(data: OrgData, start: datetime, end: datetime, filters: dict) -> list:
    """Newest first; a trace matches a filter when any span does, `status` and `name` are
    the trace's (error if any span erred; its root's name)."""
    result = []
    for trace_id in data.traces:
        summary = trace_summary(data, trace_id)
        if not start <= summary["start_time"] < end:
            continue
        span_filters = {k: v for k, v in filters.items() if k not in ("status", "name")}
        if span_filters and not any(span_matches(s, span_filters)
                                    for s in data.traces[trace_id]):
            continue
        if "status" in filters and summary["status"] != filters["status"]:
            continue
        if "name" in filters and filters["name"].lower() not in summary["name"].lower():
            continue
        result.append((summary["start_time"], trace_id))
    return [trace_id for _, trace_id in sorted(result, reverse=True)]


def expected_tree(spans: list[dict]) -> list:
    """[(span_id, [children...]), ...] in start order; orphans at the top."""
    ordered = sorted(spans, key=lambda s: (parse(s["start_time"]), s["span_id"]))
    ids = {s["span_id"] for s in spans}

    def children_of(parent_id: str) -> list:
        return [(s["span_id"], children_of(s["span_id"])) for s in ordered
                if s["parent_span_id"] == parent_id]

    return [(s["span_id"], children_of(s["span_id"])) for s in ordered
            if s["parent_span_id"] not in ids]


def tree_shape(nodes: list[dict]) -> list:
    return [(node["span_id"], tree_shape(node["children"])) for node in nodes]


def within_quantile_error(value: float, values: list[float], level: float) -> bool:
    """Whether `value` is the `level` quantile of `values` up to the engine's error: for at
    most 8,192 values ClickHouse's `quantiles` keeps them all and interpolates between the
    neighbours of rank level*(n-1), so it must lie within one rank of that place."""
    ordered = sorted(values)
    place = level * (len(ordered) - 1)
    low = ordered[max(0, int(place) - 1)]
    high = ordered[min(len(ordered) - 1, int(place) + 2)]
    return low - 1e-6 <= value <= high + 1e-6


def now_floor_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
