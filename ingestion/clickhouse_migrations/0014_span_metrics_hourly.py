"""Hourly span metrics, fed from spans by a materialized view (read by the metrics API and the
dashboard's Overview)."""

from ingestion.clickhouse import (
    span_metrics_hourly,
    span_metrics_hourly_fill,
    span_metrics_hourly_view,
)

operations = [span_metrics_hourly(), span_metrics_hourly_view()]


class _Backfill:
    """The spans stored before the view existed, one row per span (its newest version), so a
    deployment's past days are exact at once, duplicates or not. A span inserted meanwhile,
    or a rerun, counts twice: its day is then read from spans (see span_metrics_hourly)
    until `rebuild_span_metrics` rebuilds it."""

    def backfill(self) -> list[str]:
        return [span_metrics_hourly_fill()]


backfill = [_Backfill()]
