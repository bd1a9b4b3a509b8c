"""The retry log (seed fallback SKIP_EVALUATION, log_for_retry): evaluations skipped while
their breaker was open, or that a drain could not queue, kept to be run again.

One Redis list per breaker, plus one for the unqueued. Not the Django DB: during an outage
evaluations are skipped at the rate spans arrive, not at the provider's rate, and a row
written then deleted for each would load PostgreSQL for nothing; not ClickHouse: it is no
queue. The list is shared by the fleet, O(1) to append to and to measure (the queue depth
for the degradation trigger), and as durable as the Celery queue it stands in for, which
lives in the same Redis. Every skipped evaluation also has its `skipped` score in ClickHouse,
so none disappears without a trace, even past the log's bound."""

import logging
import time

import orjson
from django.conf import settings

from evaluation.services.breakers import EMBEDDING_API, LLM_EVALUATION
from llmops.redis import get_redis

logger = logging.getLogger(__name__)

UNQUEUED = "unqueued"
LOGS = (LLM_EVALUATION, EMBEDDING_API, UNQUEUED)


def key(log: str) -> str:
    return f"evaluation:retry-log:{log}"


def log_for_retry(items: list[dict], *, log: str) -> bool:
    """Append `items`; False (and nothing appended) when the log is full."""
    redis = get_redis()
    if redis.llen(key(log)) + len(items) > settings.EVALUATION_RETRY_LOG_MAX_ENTRIES:
        logger.error("retry log %s is full: %d evaluation(s) not logged", log, len(items))
        return False
    now = time.time()
    redis.rpush(key(log), *(orjson.dumps({**item, "logged_at": now}) for item in items))
    return True


def length(log: str | None = None) -> int:
    redis = get_redis()
    return sum(redis.llen(key(name)) for name in ([log] if log else LOGS))


def oldest(log: str, count: int) -> list[dict]:
    return [orjson.loads(raw) for raw in get_redis().lrange(key(log), 0, count - 1)]


def forget_oldest(log: str, count: int) -> None:
    get_redis().ltrim(key(log), count, -1)
