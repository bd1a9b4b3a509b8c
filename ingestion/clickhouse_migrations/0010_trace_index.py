"""The per-trace index behind trace listings, fed from spans by a materialized view."""

from ingestion.clickhouse import trace_index, trace_index_view

operations = [trace_index(), trace_index_view()]
# Spans stored before the view existed; indexing one twice is harmless (see trace_index).
backfill = [trace_index_view()]
