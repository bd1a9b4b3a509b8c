"""Spans count the prompt tokens written to a cache, priced at the cache-write price."""

from costs.clickhouse import span_cache_write_tokens

operations = [span_cache_write_tokens()]
