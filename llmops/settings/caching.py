"""Caches (seed: L1 in-process, L2 Redis), with the design document's TTLs."""

from .celery import REDIS_URL
from .env import env

CACHE_REDIS_URL = env("CACHE_REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + "/1")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_REDIS_URL,
        "KEY_PREFIX": "llmops",
    },
}

# L1, per process.
PRICING_CACHE_TTL_S = env("PRICING_CACHE_TTL_S", 3600)  # pricing tables: 1 h
CONFIG_CACHE_TTL_S = env("CONFIG_CACHE_TTL_S", 300)  # config/flags: 5 min
HOT_TRACE_CACHE_MAX_BYTES = env("HOT_TRACE_CACHE_MAX_BYTES", 100 * 1024 * 1024)  # 100 MB LRU
# L2, Redis.
QUERY_CACHE_TTL_S = env("QUERY_CACHE_TTL_S", 60)  # query results: 1-5 min
QUERY_CACHE_MAX_TTL_S = env("QUERY_CACHE_MAX_TTL_S", 300)
COST_CACHE_TTL_S = env("COST_CACHE_TTL_S", 300)  # cost aggregations: 5 min
SESSION_CACHE_TTL_S = env("SESSION_CACHE_TTL_S", 24 * 3600)  # user sessions: 24 h
RATE_LIMIT_WINDOW_S = env("RATE_LIMIT_WINDOW_S", 60)  # rate-limit counters: 1 min
# Pub/sub channel on which config and pricing changes are broadcast to every process.
CONFIG_CHANNEL = env("CONFIG_CHANNEL", "llmops:config-changed")
