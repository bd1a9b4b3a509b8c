"""Config flags as every process reads them: all flags in an L1 cache for CONFIG_CACHE_TTL_S,
dropped at once when any process announces a change."""

import time

from django.conf import settings

from llmops import changes
from operations.models import ConfigFlag

TOPIC = "flags"
_cache: tuple[float, dict] | None = None


def flag(key: str, default=None):
    """The flag's typed value, or `default` when no such flag exists."""
    global _cache
    now = time.monotonic()
    if _cache is None or now - _cache[0] > settings.CONFIG_CACHE_TTL_S:
        changes.on_change(TOPIC, forget_cached_flags)
        _cache = (now, {f.key: f.typed_value() for f in ConfigFlag.objects.all()})
    return _cache[1].get(key, default)


def forget_cached_flags() -> None:
    global _cache
    _cache = None


def flags_changed() -> None:
    changes.announce(TOPIC)
