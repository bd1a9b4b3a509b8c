"""Helpers for ingestion tests: orgs and keys, span factories, draining, reading back."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connections
from rest_framework.test import APIClient

from ingestion.models import ApiKey, Org
from ingestion.services.drain import PartitionDrainer
from ingestion.services.partitions import partition_lags
from llmops.clickhouse import get_client
from llmops.kafka import end_offsets, new_consumer


def days_ago(days: int) -> datetime:
    """Midnight (UTC) `days` days before today. Tests store spans at times relative to now:
    fixed dates fall out of the retention (the TTL deletes them; the API refuses them)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


def iso_z(moment: datetime) -> str:
    """As the API writes a time: ISO 8601, `Z` for UTC, no fraction when it is zero."""
    return moment.isoformat().replace("+00:00", "Z")


# Noon a week ago: whole days on either side, well inside the retention.
BASE_TIME = days_ago(7) + timedelta(hours=12)


def new_org(**fields) -> tuple[Org, str]:
    """A fresh org per test (tests isolate by tenant) and a key for it."""
    org = Org.objects.create(slug=f"org-{uuid.uuid4().hex[:12]}", **fields)
    _, raw = ApiKey.issue(org)
    return org, raw


def client_for(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def post_spans(client: APIClient, spans: list[dict], **extra):
    return client.post("/api/v1/spans", {"spans": spans}, format="json", **extra)


def make_span(trace_id: str, index: int, **overrides) -> dict:
    start = BASE_TIME + timedelta(seconds=index, microseconds=index * 137)
    span = {
        "trace_id": trace_id,
        "span_id": f"{trace_id}-s{index}",
        "parent_span_id": f"{trace_id}-s0" if index else None,
        "name": f"step {index}",
        "kind": "llm",
        "start_time": start.isoformat().replace("+00:00", "Z"),
        "end_time": (start + timedelta(milliseconds=250 + index)).isoformat(),
        "status": "error" if index % 7 == 3 else "ok",
        "status_message": "boom" if index % 7 == 3 else "",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "input": [{"role": "user", "content": f"question {index} " + "x" * 300}],
        "output": f"answer {index} " + "y" * 300,
        "usage": {"input_tokens": 100 + index, "output_tokens": 20 + index,
                  "cached_input_tokens": index % 5},
        "session_id": f"sess-{trace_id}",
        "user_id": "user-1",
        "tags": ["prod", f"t{index % 3}"],
        "metadata": {"team": "search", "attempt": index % 4, "flag": True},
        "environment": "production",
    }
    span.update(overrides)
    return span


def _drain_partition(partition: int):
    try:
        return PartitionDrainer(partition).run(budget_s=10)
    finally:
        # A drain reads prices through its thread's own DB connection: closed with the thread,
        # so the test database can be dropped at the end.
        connections.close_all()


def drain_everything(timeout_s: float = 60) -> None:
    """Drain every partition with the real drainer until nothing is left."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = [lag.partition for lag in partition_lags() if lag.lag or lag.in_flight]
        if not pending:
            return
        # In parallel, as the threaded ingest worker does: a partition each.
        with ThreadPoolExecutor(len(pending)) as pool:
            list(pool.map(_drain_partition, pending))
    raise AssertionError(f"partitions still lagging after {timeout_s}s: {partition_lags()}")


def stored_spans(org_id: int) -> list[dict]:
    result = get_client().query(
        """
        SELECT s.*, s.duration_ms AS duration_ms,
               ci.content AS input_content, ci.format AS input_format,
               co.content AS output_content, co.format AS output_format
        FROM spans AS s FINAL
        LEFT JOIN (SELECT * FROM span_content FINAL WHERE org_id = {org:UInt64}) AS ci
            ON ci.content_hash = s.input_hash
        LEFT JOIN (SELECT * FROM span_content FINAL WHERE org_id = {org:UInt64}) AS co
            ON co.content_hash = s.output_hash
        WHERE s.org_id = {org:UInt64} AND s.is_deleted = 0
        ORDER BY s.trace_id, s.span_id
        """,
        parameters={"org": org_id},
    )
    return list(result.named_results())


def count_rows(org_id: int, final: bool = False) -> int:
    return get_client().command(
        f"SELECT count() FROM spans {'FINAL' if final else ''} WHERE org_id = {{o:UInt64}}"
        + (" AND is_deleted = 0" if final else ""),
        parameters={"o": org_id},
    )


def dead_letter_ends() -> list:
    """Each dead-letter partition at its end: where a test starts reading what it parks."""
    consumer = new_consumer(**{"group.id": f"dlq-reader-{uuid.uuid4().hex}"})
    try:
        return end_offsets(consumer, settings.KAFKA_DEAD_LETTER_TOPIC)
    finally:
        consumer.close()


def dead_letters_since(starts: list) -> list:
    """The dead letters parked after `starts` (see dead_letter_ends)."""
    consumer = new_consumer(**{"group.id": f"dlq-reader-{uuid.uuid4().hex}"})
    consumer.assign(starts)
    messages = [m for m in consumer.consume(num_messages=10_000, timeout=5) if not m.error()]
    consumer.close()
    return messages
