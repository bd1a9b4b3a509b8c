"""The one in-process cache of values a change can make stale (llmops.changes.AnnouncedCache):
a change announced on Redis while a value loads is not lost, the TTL bounds the value when no
announcement comes, and every such cache of the platform is built on it and hears its topic."""

import threading
import uuid

import pytest
import redis
from django.conf import settings

from costs.services.pricing import cached_prices
from evaluation.services.matching import cached_configs
from ingestion.services.accept import cached_retention
from llmops import changes
from llmops.changes import AnnouncedCache
from operations.services.degradation import cached_level
from operations.services.flags import cached_flags


def announce_from_elsewhere(topic: str) -> None:
    """What another process's `changes.announce` sends: a message on the Redis channel, with
    none of this process's callbacks run directly (the listener thread must hear it)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        assert client.publish(settings.CONFIG_CHANNEL, topic) >= 1, "no listener subscribed"
    finally:
        client.close()


def heard(topic: str) -> threading.Event:
    """Set once this process's listener has run the callbacks of `topic` registered so far
    (they run in order, so the cache's own `forget` has run too)."""
    event = threading.Event()
    changes.on_change(topic, event.set)
    return event


class Source:
    """What a cache loads: a value, and a count of the loads."""

    def __init__(self, value) -> None:
        self.value = value
        self.loads = 0

    def load(self):
        self.loads += 1
        return self.value


def test_a_value_loaded_while_a_change_is_announced_on_redis_is_not_kept():
    topic = f"test-{uuid.uuid4().hex}"
    source = Source("before")
    loading, release = threading.Event(), threading.Event()

    def slow_load():
        value = source.load()  # read before the change...
        loading.set()
        assert release.wait(10)
        return value  # ...and handed over after it

    # An hour's TTL: only the announcement can make the next read load again.
    cache = AnnouncedCache(topic, slow_load, ttl_setting="PRICING_CACHE_TTL_S")
    answers = []
    reader = threading.Thread(target=lambda: answers.append(cache.get()))
    reader.start()
    try:
        assert loading.wait(10)
        assert changes.listening.wait(10), "the change listener did not subscribe to Redis"
        change_heard = heard(topic)
        source.value = "after"
        announce_from_elsewhere(topic)
        assert change_heard.wait(5), "the announcement did not come back through Redis"
    finally:
        release.set()
        reader.join(10)
    assert answers == ["before"]  # the read that began before the change: either is fair
    assert cache.get() == "after"  # the value loaded before the change was not kept
    assert source.loads == 2
    assert cache.get() == "after" and source.loads == 2  # and the new one is kept


def test_without_an_announcement_the_ttl_bounds_the_value(settings):
    settings.TEST_ANNOUNCED_CACHE_TTL_S = 3600
    source = Source(1)
    cache = AnnouncedCache(f"test-{uuid.uuid4().hex}", source.load,
                           ttl_setting="TEST_ANNOUNCED_CACHE_TTL_S")
    assert cache.get() == 1
    source.value = 2
    assert cache.get() == 1 and source.loads == 1  # kept: nothing announced, TTL not over
    settings.TEST_ANNOUNCED_CACHE_TTL_S = 0
    assert cache.get() == 2 and source.loads == 2


def test_last_keeps_the_value_last_loaded_when_a_load_fails():
    source = Source(1)
    failing = [False]

    def load():
        if failing[0]:
            raise ConnectionError("store away")
        return source.load()

    cache = AnnouncedCache(f"test-{uuid.uuid4().hex}", load, ttl_setting="PRICING_CACHE_TTL_S")
    assert cache.last() is None
    assert cache.get() == 1
    cache.forget()
    failing[0] = True
    with pytest.raises(ConnectionError):
        cache.get()  # the caller decides what an unreachable store means...
    assert cache.last() == 1  # ...with the last value at hand
    failing[0] = False
    source.value = 2
    assert cache.get() == 2  # the failed load kept nothing: the next read loads again


PLATFORM_CACHES = {
    "pricing": cached_prices,
    "evaluator matching": cached_configs,
    "degradation": cached_level,
    "flags": cached_flags,
    "retention": cached_retention,
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", PLATFORM_CACHES)
def test_each_platform_cache_drops_its_value_when_another_process_announces_a_change(
        name, monkeypatch):
    cache = PLATFORM_CACHES[name]
    assert isinstance(cache, AnnouncedCache)
    loads = []
    real_load = cache._load
    monkeypatch.setattr(cache, "_load", lambda: loads.append(1) or real_load())
    cache.get()  # registers its callback; the listener's first subscription drops it too
    assert changes.listening.wait(10), "the change listener did not subscribe to Redis"
    cache.forget()
    loads.clear()
    cache.get()
    cache.get()
    assert len(loads) == 1  # kept between reads
    change_heard = heard(cache.topic)
    announce_from_elsewhere(cache.topic)
    assert change_heard.wait(5), f"{cache.topic!r} was not heard through Redis"
    cache.get()
    assert len(loads) == 2, f"the {name} cache kept its value after {cache.topic!r} was announced"
