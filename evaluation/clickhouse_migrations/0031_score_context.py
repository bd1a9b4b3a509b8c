"""Scores keep the environment, metadata and config id their client sent (Langfuse scores)."""

from evaluation.clickhouse import score_context

operations = score_context()
