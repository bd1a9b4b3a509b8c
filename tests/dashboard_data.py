"""Traces for the dashboard tests, posted through the real API and drained into ClickHouse,
at times relative to now (within the list's default 24 h window)."""

import time
import uuid
from datetime import UTC, datetime, timedelta

from django.conf import settings

from ingestion.models import ApiKey, Org
from tests.ingest_helpers import client_for, drain_everything, make_span


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def span(trace_id: str, index: int, *, start: datetime, parent: str | None = None,
         **fields) -> dict:
    """A span `index` seconds after `start`, lasting 200 ms (+ index ms)."""
    begin = start + timedelta(milliseconds=10 * index)
    return make_span(trace_id, index, **{
        "parent_span_id": parent, "start_time": iso(begin),
        "end_time": iso(begin + timedelta(milliseconds=200 + index)),
        "status": "ok", "status_message": "", **fields})


def post(org: Org, spans: list[dict]) -> None:
    """Send through POST /api/v1/spans in batches (as a client would), drain, and wait
    until the trace list shows them (QUERY_LIST_SETTLE_MS)."""
    _, raw = ApiKey.issue(org, name="test data")
    client = client_for(raw)
    for at in range(0, len(spans), 500):
        answer = client.post("/api/v1/spans", {"spans": spans[at:at + 500]}, format="json")
        assert answer.status_code == 202, answer.content[:500]
    drain_everything()
    time.sleep(settings.QUERY_LIST_SETTLE_MS / 1000 + 0.2)  # listings show settled spans


def new_trace_id() -> str:
    return uuid.uuid4().hex


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)
