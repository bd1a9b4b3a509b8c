"""Evaluation: task sizes, rate-limit bursts, the retry log and its replay, embedding cache.

The breakers, the `external_api` retry policy and the provider rates are the design
document's and live in reliability.py; what is here the document leaves unsaid."""

from .env import env
from .reliability import LLM_PROVIDER_RATE_PER_S

# (span, evaluator) pairs per Celery task as a drain queues them: the drain's cost is one
# publish per task. A task runs its built-in scorers (microseconds each) at once and queues
# its external evaluations (slow, rate-limited) as tasks of EVALUATION_EXTERNAL_TASK_SIZE,
# so one stuck call holds up no other and the queue length counts the waiting slow ones.
EVALUATION_TASK_SIZE = env("EVALUATION_TASK_SIZE", 500)
EVALUATION_EXTERNAL_TASK_SIZE = env("EVALUATION_EXTERNAL_TASK_SIZE", 1)
# How long a process trusts its list of active evaluator configs; a change is announced
# on pub/sub at once, so this only bounds staleness while Redis is unreachable.
EVALUATION_CONFIG_CACHE_TTL_S = env("EVALUATION_CONFIG_CACHE_TTL_S", 60.0)
# A drain batch replayed after a crash must not enqueue its evaluations twice.
EVALUATION_ENQUEUE_MARKER_TTL_S = env("EVALUATION_ENQUEUE_MARKER_TTL_S", 24 * 3600)

# Token buckets hold this many seconds of their rate (at least one token): the burst.
EVALUATION_RATE_BURST_S = env("EVALUATION_RATE_BURST_S", 1.0)
EMBEDDING_RATE_PER_S = env("EMBEDDING_RATE_PER_S", LLM_PROVIDER_RATE_PER_S)
# Longest wait for a token (or a provider's Retry-After); beyond it the evaluation is
# skipped and logged for retry rather than holding a worker thread.
EVALUATION_RATE_MAX_WAIT_S = env("EVALUATION_RATE_MAX_WAIT_S", 60.0)

# Retry log (fallback SKIP_EVALUATION, log_for_retry): bounded so an outage cannot fill Redis.
EVALUATION_RETRY_LOG_MAX_ENTRIES = env("EVALUATION_RETRY_LOG_MAX_ENTRIES", 1_000_000)
# An entry older than this is dropped at replay; its score stays `skipped`.
EVALUATION_RETRY_LOG_MAX_AGE_S = env("EVALUATION_RETRY_LOG_MAX_AGE_S", 24 * 3600)
EVALUATION_REPLAY_INTERVAL_S = env("EVALUATION_REPLAY_INTERVAL_S", 5.0)
# Replay tops the evaluation queue up to this many tasks, no more (no flood after an outage).
EVALUATION_REPLAY_BATCH = env("EVALUATION_REPLAY_BATCH", 1000)

# Embeddings are cached by content hash. A cached one this young is used instead of a call;
# up to EMBEDDING_CACHE_STALE_MS old (seed: 1 h) it is the fallback while the breaker is open.
EMBEDDING_CACHE_FRESH_MS = env("EMBEDDING_CACHE_FRESH_MS", 300_000)

# The judge's answer: asked for as JSON, bounded so a runaway answer costs little.
LLM_JUDGE_MAX_TOKENS = env("LLM_JUDGE_MAX_TOKENS", 512)
