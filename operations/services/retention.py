"""Emergency TTL reduction: shorten how long spans are kept when storage runs out."""

from django.db import transaction

from costs.clickhouse import cost_hourly
from ingestion.clickhouse import (
    span_content,
    span_keys,
    span_metrics_hourly,
    spans,
    trace_index,
)
from llmops import changes
from llmops.clickhouse import get_client
from operations.models import TtlChange

# The tables whose rows age out, and the time column each one's TTL counts from: spans,
# and every table derived from them, so no listing or report counts what spans no longer hold.
TTL_TABLES = {"spans": (spans, "toDateTime(start_time)"),
              "span_content": (span_content, "toDateTime(last_seen)"),
              "span_keys": (span_keys, "toDateTime(start_time)"),
              "trace_index": (trace_index, "day"),
              "cost_hourly": (cost_hourly, "hour"),
              "span_metrics_hourly": (span_metrics_hourly, "hour")}
# Announced once a change commits: ingestion drops its cached retention (accept.retention_days).
RETENTION_TOPIC = "retention"


@transaction.atomic
def set_spans_ttl(*, days: int, reason: str, changed_by: str) -> list[TtlChange]:
    """Set the TTL of spans, their content and the tables derived from them to `days`;
    ClickHouse drops older rows in its next merges (MODIFY TTL re-applies it to existing parts)."""
    if days < 1:
        raise ValueError("days must be at least 1")
    client = get_client()
    records = []
    for name, (table, column) in TTL_TABLES.items():
        for statement in table().alter(f"MODIFY TTL {column} + INTERVAL {int(days)} DAY"):
            client.command(statement)
        records.append(TtlChange.objects.create(table=name, days=days, reason=reason,
                                                changed_by=changed_by))
    transaction.on_commit(lambda: changes.announce(RETENTION_TOPIC))
    return records
