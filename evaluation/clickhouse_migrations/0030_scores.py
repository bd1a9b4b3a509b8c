"""Scores."""

from evaluation.clickhouse import scores

operations = [scores()]
