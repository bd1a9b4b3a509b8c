"""Repricing an org's stored spans after a price fix: newer versions of them, rollups rebuilt."""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import msgspec
from django.conf import settings

from costs.clickhouse import cost_hourly, cost_hourly_view
from costs.services.pricing import forget_cached_prices, price_usage
from costs.services.reports import costs_recorded
from costs.services.tokens import TokenUsage
from ingestion.services.rows import SPAN_COLUMNS, StoredSpan
from ingestion.services.span_metrics import rebuild_span_metrics
from llmops.clickhouse import get_client, new_client
from llmops.clickhouse_schema import cluster


@dataclass
class RecomputeResult:
    spans_read: int = 0
    spans_repriced: int = 0
    days_rebuilt: list[date] = field(default_factory=list)


def _days(start: datetime, end: datetime) -> list[date]:
    first, last = start.astimezone(UTC).date(), (end - timedelta(microseconds=1)).astimezone(
        UTC).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _repriced(row: tuple) -> tuple | None:
    """The row (SPAN_COLUMNS, as read) with its cost as the prices now say, under a newer
    version; None if the same. A client's own cost stays."""
    span = StoredSpan(*row)
    if span.cost_source == "provided":
        return None
    usage = TokenUsage(input_tokens=span.input_tokens, output_tokens=span.output_tokens,
                       cached_input_tokens=span.cached_input_tokens,
                       cache_write_tokens=span.cache_write_tokens,
                       total_tokens=span.total_tokens, source=span.usage_source)
    priced = price_usage(model=span.model, provider=span.provider, at=span.start_time,
                         usage=usage)
    if (priced.cost, priced.source, priced.price_id) == (
            span.cost, span.cost_source, span.price_id):
        return None
    # Version + 1, not now: a newer message of the span still sent by its client still wins.
    return msgspec.structs.replace(span, cost=priced.cost, cost_source=priced.source,
                                   price_id=priced.price_id, version=span.version + 1).row()


def rebuild_rollups(*, org_id: int, days: list[date]) -> None:
    """Replace the org's cost_hourly rows of these days by sums over its stored spans, so each
    span counts once there again."""
    if not days:
        return
    day_list = ", ".join(f"'{day.isoformat()}'" for day in days)
    client = get_client()
    for statement in cost_hourly().alter(
            f"DELETE WHERE org_id = {int(org_id)} AND toDate(hour) IN ({day_list})"):
        client.command(statement, settings={"mutations_sync": 2})
    view = cost_hourly_view()
    spans = (f"(SELECT * FROM {view.source.name} FINAL WHERE org_id = {int(org_id)}"
             f" AND toDate(start_time) IN ({day_list}) AND is_deleted = 0)")
    insert_settings = {"insert_deduplicate": 0}  # the same sums as a past rebuild must land
    if cluster():
        insert_settings["distributed_foreground_insert"] = 1
    client.command(f"INSERT INTO {view.target.name}\n{view.select.format(source=spans)}",
                   settings=insert_settings)


def recompute_costs(*, org_id: int, start: datetime, end: datetime) -> RecomputeResult:
    """Reprice the org's spans starting in [start, end) with the prices in force now, then
    rebuild the rollups of the days touched, and drop the org's cached reports."""
    forget_cached_prices()  # the fix was just saved: never price with what this process held
    result = RecomputeResult()
    reader, writer = get_client(), new_client()
    batch: list[tuple] = []

    def flush() -> None:
        if batch:
            writer.insert("spans", batch, column_names=SPAN_COLUMNS)
            result.spans_repriced += len(batch)
            batch.clear()

    try:
        with reader.query_rows_stream(
                f"SELECT {', '.join(SPAN_COLUMNS)} FROM spans FINAL WHERE org_id = {{org:UInt64}}"
                " AND is_deleted = 0"
                " AND start_time >= {lo:DateTime64(6, 'UTC')}"
                " AND start_time < {hi:DateTime64(6, 'UTC')}",
                parameters={"org": org_id, "lo": start, "hi": end}) as rows:
            for row in rows:
                result.spans_read += 1
                repriced = _repriced(row)
                if repriced is not None:
                    batch.append(repriced)
                    if len(batch) >= settings.COSTS_RECOMPUTE_BATCH_ROWS:
                        flush()
        flush()
    finally:
        writer.close()
    result.days_rebuilt = _days(start, end)
    rebuild_rollups(org_id=org_id, days=result.days_rebuilt)
    # The new versions made those days inexact in the span metrics' rollup too.
    rebuild_span_metrics(org_id=org_id, days=result.days_rebuilt)
    costs_recorded(org_ids={org_id})
    return result
