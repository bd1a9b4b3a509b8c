"""Change announcements across processes (config flags, prices, the degradation level).

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
