"""Circuit breakers, retry policies and external APIs, with the design document's values."""

from .env import env

# Circuit breaker `llm_evaluation`.
LLM_EVAL_BREAKER = {
    "failure_threshold_percentage": env("LLM_EVAL_BREAKER_FAILURE_PCT", 50),
    "slow_call_threshold_percentage": env("LLM_EVAL_BREAKER_SLOW_PCT", 80),
    "slow_call_duration_ms": env("LLM_EVAL_BREAKER_SLOW_MS", 5000),
    "minimum_calls": env("LLM_EVAL_BREAKER_MIN_CALLS", 20),
    "sliding_window_size": env("LLM_EVAL_BREAKER_WINDOW", 100),
    "wait_duration_in_open_state_ms": env("LLM_EVAL_BREAKER_OPEN_MS", 30000),
    "permitted_calls_in_half_open_state": env("LLM_EVAL_BREAKER_HALF_OPEN_CALLS", 10),
}
# Circuit breaker `embedding_api`; the seed leaves minimum calls, window and half-open
# calls unsaid, so they follow `llm_evaluation`.
EMBEDDING_BREAKER = {
    "failure_threshold_percentage": env("EMBEDDING_BREAKER_FAILURE_PCT", 30),
    "slow_call_threshold_percentage": env("EMBEDDING_BREAKER_SLOW_PCT", 80),
    "slow_call_duration_ms": env("EMBEDDING_BREAKER_SLOW_MS", 500),
    "minimum_calls": env("EMBEDDING_BREAKER_MIN_CALLS", 20),
    "sliding_window_size": env("EMBEDDING_BREAKER_WINDOW", 100),
    "wait_duration_in_open_state_ms": env("EMBEDDING_BREAKER_OPEN_MS", 10000),
    "permitted_calls_in_half_open_state": env("EMBEDDING_BREAKER_HALF_OPEN_CALLS", 10),
}
EMBEDDING_CACHE_STALE_MS = env("EMBEDDING_CACHE_STALE_MS", 3_600_000)

# Retry policies.
CLICKHOUSE_WRITE_RETRY = {
    "max_attempts": env("CLICKHOUSE_WRITE_MAX_ATTEMPTS", 5),
    "initial_backoff_ms": env("CLICKHOUSE_WRITE_INITIAL_BACKOFF_MS", 100),
    "max_backoff_ms": env("CLICKHOUSE_WRITE_MAX_BACKOFF_MS", 10000),
    "backoff_multiplier": env("CLICKHOUSE_WRITE_BACKOFF_MULTIPLIER", 2.0),
    "jitter_factor": env("CLICKHOUSE_WRITE_JITTER", 0.0),
}
EXTERNAL_API_RETRY = {
    "max_attempts": env("EXTERNAL_API_MAX_ATTEMPTS", 3),
    "initial_backoff_ms": env("EXTERNAL_API_INITIAL_BACKOFF_MS", 1000),
    "max_backoff_ms": env("EXTERNAL_API_MAX_BACKOFF_MS", 30000),
    "backoff_multiplier": env("EXTERNAL_API_BACKOFF_MULTIPLIER", 2.0),
    "jitter_factor": env("EXTERNAL_API_JITTER", 0.2),
}
EXTERNAL_API_TIMEOUT_MS = env("EXTERNAL_API_TIMEOUT_MS", 30000)

# The evaluation judge (an OpenAI-compatible chat-completions API) and embeddings.
LLM_JUDGE_BASE_URL = env("LLM_JUDGE_BASE_URL", "http://127.0.0.1:8900/v1")
LLM_JUDGE_API_KEY = env("LLM_JUDGE_API_KEY", "")
LLM_JUDGE_DEFAULT_MODEL = env("LLM_JUDGE_DEFAULT_MODEL", "gpt-4o-mini")
EMBEDDING_BASE_URL = env("EMBEDDING_BASE_URL", LLM_JUDGE_BASE_URL)
EMBEDDING_API_KEY = env("EMBEDDING_API_KEY", LLM_JUDGE_API_KEY)
EMBEDDING_MODEL = env("EMBEDDING_MODEL", "text-embedding-3-small")
LLM_PROVIDER_RATE_PER_S = env("LLM_PROVIDER_RATE_PER_S", 10.0)
LLM_ORG_RATE_PER_S = env("LLM_ORG_RATE_PER_S", 5.0)
