"""Emergency TTL reduction: shorten how long spans are kept when storage runs out."""

from django.db import transaction

from ingestion.clickhouse import span_content, spans
from llmops.clickhouse import get_client
from operations.models import TtlChange

# The tables whose rows age out, and the time column each one's TTL counts from.
TTL_TABLES = {"spans": (spans, "toDateTime(start_time)"),
              "span_content": (span_content, "toDateTime(last_seen)")}


@transaction.atomic
def set_spans_ttl(*, days: int, reason: str, changed_by: str) -> list[TtlChange]:
    """Set the TTL of spans and their content to `days`; ClickHouse drops older rows in its
    next merges (MODIFY TTL re-applies it to existing parts)."""
    if days < 1:
        raise ValueError("days must be at least 1")
    client = get_client()
    records = []
    for name, (table, column) in TTL_TABLES.items():
        for statement in table().alter(f"MODIFY TTL {column} + INTERVAL {int(days)} DAY"):
            client.command(statement)
        records.append(TtlChange.objects.create(table=name, days=days, reason=reason,
                                                changed_by=changed_by))
    return records
