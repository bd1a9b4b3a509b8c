"""Change announcements across processes (config flags, prices, the degradation level...),
and AnnouncedCache, the one way a process caches what such a change can make stale.

An operator's change is committed to the DB, then announced on Redis pub/sub
(CONFIG_CHANNEL). Each process runs one listener thread that calls the callbacks
registered for that topic, which drop their in-process caches; the TTLs of those caches
only bound staleness while Redis is unreachable.
"""

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

_callbacks: dict[str, list[Callable[[], None]]] = defaultdict(list)
_lock = threading.Lock()
_listener_pid: int | None = None
listening = threading.Event()


def on_change(topic: str, callback: Callable[[], None]) -> None:
    """Call `callback` in this process whenever `topic` is announced by any process."""
    with _lock:
        if callback not in _callbacks[topic]:
            _callbacks[topic].append(callback)
    _ensure_listener()


def announce(topic: str) -> None:
    """Tell every process that `topic` changed; this one acts at once."""
    _run(topic)
    try:
        from llmops.redis import get_redis

        get_redis().publish(settings.CONFIG_CHANNEL, topic)
    except redis.RedisError as exc:
        # The change is saved; other processes see it when their cache TTL runs out.
        logger.error("could not announce a change of %s: %s", topic, exc)


def _run(topic: str) -> None:
    for callback in list(_callbacks.get(topic, ())):
        try:
            callback()
        except Exception:
            logger.exception("change callback for %s failed", topic)


def _ensure_listener() -> None:
    """One listener per process: a forked worker (another pid) starts its own."""
    global _listener_pid
    if _listener_pid == os.getpid():
        return
    with _lock:
        if _listener_pid == os.getpid():
            return
        _listener_pid = os.getpid()
        listening.clear()
        threading.Thread(target=_listen, name="change-listener", daemon=True).start()


def _listen() -> None:
    while True:
        try:
            client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5,
                                          health_check_interval=30)
            pubsub = client.pubsub()
            pubsub.subscribe(settings.CONFIG_CHANNEL)
            for message in pubsub.listen():
                if message["type"] == "subscribe":
                    # Whatever changed while this process was not listening counts as changed.
                    for topic in list(_callbacks):
                        _run(topic)
                    listening.set()
                elif message["type"] == "message":
                    _run(message["data"].decode())
        except redis.RedisError as exc:
            listening.clear()
            logger.warning("change listener lost Redis (%s); reconnecting", exc)
            time.sleep(1)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    value: T
    generation: int
    loaded_at: float


class AnnouncedCache(Generic[T]):
    """One value (`load()`'s answer) that each process keeps for at most the setting
    `ttl_setting` seconds, and drops as soon as any process announces `topic`.

    A change bumps a generation counter; a load reads the generation before it reads the
    value, under a lock. So a value loaded while a change is announced may answer the read
    that loaded it (it began before the change), but it is never kept: the next read loads
    again. Reads of a fresh value take no lock and no query."""

    def __init__(self, topic: str, load: Callable[[], T], *, ttl_setting: str) -> None:
        self.topic = topic
        self.ttl_setting = ttl_setting
        self._load = load
        self._entry: _Entry[T] | None = None
        self._generation = 0
        self._generation_lock = threading.Lock()  # a bump is never lost to another bump
        self._load_lock = threading.Lock()

    def get(self) -> T:
        """The value, loaded again if a change was announced since it was loaded or it is
        older than the TTL. Whatever `load()` raises is raised (see `last()`)."""
        entry = self._entry  # one read: a change meanwhile cannot pull it from under this one
        return entry.value if self._fresh(entry) else self._reload()

    def last(self) -> T | None:
        """The value last loaded, fresh or not (None before the first load): what a caller
        keeps using while the store behind `load()` is unreachable."""
        entry = self._entry
        return None if entry is None else entry.value

    def forget(self) -> None:
        """Drop this process's value; the next read loads it again."""
        with self._generation_lock:
            self._generation += 1

    def _fresh(self, entry: _Entry[T] | None) -> bool:
        return (entry is not None and entry.generation == self._generation
                and time.monotonic() - entry.loaded_at <= getattr(settings, self.ttl_setting))

    def _reload(self) -> T:
        with self._load_lock:
            entry = self._entry
            if self._fresh(entry):
                return entry.value  # another thread loaded it while this one waited
            on_change(self.topic, self.forget)  # here, not at import: a forked worker listens too
            # The generation first: a change announced during the load makes the value stale.
            generation = self._generation
            value = self._load()
            self._entry = _Entry(value, generation, time.monotonic())
            return value
