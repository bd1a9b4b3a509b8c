"""Embedded ClickHouse: one process owns the chDB directory and serves ClickHouse's HTTP API."""
