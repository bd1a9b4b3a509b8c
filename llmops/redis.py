"""The shared Redis connection (broker, cache, counters, leases, breaker state)."""

from functools import cache

import redis
from django.conf import settings


@cache
def get_redis() -> redis.Redis:
    # redis-py pools connections and is thread-safe; one client per process is enough.
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
