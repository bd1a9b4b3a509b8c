"""Hourly cost rollups, fed from spans by a materialized view."""

from costs.clickhouse import cost_hourly, cost_hourly_view

operations = [cost_hourly(), cost_hourly_view()]
# Spans stored before the view existed. A rerun or a span inserted meanwhile counts twice
# here: reports see it (rows against distinct spans) and read those days from spans.
backfill = [cost_hourly_view()]
