"""Rebuilding the hourly span metrics of an org's days, so each stored span counts once there
again: days holding a span inserted twice (resent, a newer version) are otherwise read from
`spans FINAL` (ingestion.query.hourly), exactly but slower."""

from datetime import date

from ingestion.clickhouse import span_metrics_hourly, span_metrics_hourly_fill
from llmops.clickhouse import get_client
from llmops.clickhouse_schema import cluster


def rebuild_span_metrics(*, org_id: int, days: list[date]) -> None:
    """Replace the org's span_metrics_hourly rows of these days by the sums over its stored
    spans. A span stored meanwhile may count twice: its day stays inexact, never wrong."""
    if not days:
        return
    day_list = ", ".join(f"'{day.isoformat()}'" for day in days)
    client = get_client()
    for statement in span_metrics_hourly().alter(
            f"DELETE WHERE org_id = {int(org_id)} AND toDate(hour) IN ({day_list})"):
        client.command(statement, settings={"mutations_sync": 2})
    insert_settings = {"insert_deduplicate": 0}  # the same sums as a past rebuild must land
    if cluster():
        insert_settings["distributed_foreground_insert"] = 1
    client.command(span_metrics_hourly_fill(
        f"org_id = {int(org_id)} AND toDate(start_time) IN ({day_list})"),
        settings=insert_settings)
