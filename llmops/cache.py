"""Query-result caches: L1 an in-process LRU bounded by bytes, L2 Redis with a TTL."""

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import orjson
import redis
from django.core.cache import cache

from llmops.metrics import CACHE_LOOKUPS

logger = logging.getLogger(__name__)

# What an entry costs beyond its value and key (the OrderedDict node, the tuple, the floats).
ENTRY_OVERHEAD_BYTES = 200


class ByteLRU:
    """Entries (bytes) under a total size bound: the least recently used go first, and each
    expires at its own time. Thread-safe (gunicorn threads share it)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _cost(key: str, value: bytes) -> int:
        return len(key) + len(value) + ENTRY_OVERHEAD_BYTES

    def get(self, key: str, now: float | None = None) -> bytes | None:
        now = time.time() if now is None else now
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= now:
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: str, value: bytes, expires_at: float) -> None:
        cost = self._cost(key, value)
        if cost > self.max_bytes or expires_at <= time.time():
            return  # would evict everything else and still not fit, or is dead already
        with self._lock:
            if key in self._entries:
                self._remove(key)
            self._entries[key] = (expires_at, value)
            self.size += cost
            while self.size > self.max_bytes:
                self._remove(next(iter(self._entries)))

    def _remove(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self.size -= self._cost(key, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.size = 0

    def __len__(self) -> int:
        return len(self._entries)


def query_key(namespace: str, org_id: int, params: dict) -> str:
    """The L2/L1 key of a query: its endpoint, its org and its parameters, normalised (sorted
    keys, typed values), hashed so any user input makes a short, safe Redis key."""
    normalised = orjson.dumps(params, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z,
                              default=str)
    return f"q:{namespace}:{org_id}:{hashlib.sha256(normalised).hexdigest()[:40]}"


def get_or_compute(*, key: str, ttl_s: float, compute: Callable[[], bytes],
                   local: ByteLRU | None = None) -> tuple[bytes, str]:
    """(body, where it came from: "l1", "l2" or "miss"). An answer is never older than
    `ttl_s`: L2 stores its expiry beside it, and L1 keeps it no longer than that either.
    Redis being down only costs the cache, never the answer."""
    body, source = _get_or_compute(key=key, ttl_s=ttl_s, compute=compute, local=local)
    CACHE_LOOKUPS.labels(cache=key.split(":")[1], result=source).inc()
    return body, source


def _get_or_compute(*, key: str, ttl_s: float, compute: Callable[[], bytes],
                   local: ByteLRU | None = None) -> tuple[bytes, str]:
    now = time.time()
    if local is not None and (body := local.get(key, now)) is not None:
        return body, "l1"
    try:
        entry = cache.get(key)
    except redis.RedisError as exc:
        logger.warning("query cache unavailable, reading through: %s", exc)
        entry = None
    if entry is not None and entry[0] > now:
        if local is not None:
            local.put(key, entry[1], entry[0])
        return entry[1], "l2"
    body = compute()
    expires_at = now + ttl_s
    try:
        cache.set(key, (expires_at, body), timeout=ttl_s)
    except redis.RedisError as exc:
        logger.warning("query cache unavailable, answer not cached: %s", exc)
    if local is not None:
        local.put(key, body, expires_at)
    return body, "miss"
