"""Spans and their content."""

from ingestion.clickhouse import span_content, spans

operations = [spans(), span_content()]
