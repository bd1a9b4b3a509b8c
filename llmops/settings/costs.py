"""Costs: token estimation, cost reports and repricing (cache TTLs live in caching.py)."""

from .env import env

# Encoding used to estimate tokens of a model tiktoken does not know (non-OpenAI models).
COSTS_FALLBACK_ENCODING = env("COSTS_FALLBACK_ENCODING", "o200k_base")
# Distinct (model, provider) pairs whose matching prices a process remembers between reloads.
COSTS_PRICE_MEMO_MAX = env("COSTS_PRICE_MEMO_MAX", 100_000)
# Spans re-inserted per ClickHouse insert when recompute_costs reprices a window.
COSTS_RECOMPUTE_BATCH_ROWS = env("COSTS_RECOMPUTE_BATCH_ROWS", 10_000)
