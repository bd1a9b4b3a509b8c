"""The degradation level as every process reads it: a DB row behind a short in-process cache."""

import time

from django.conf import settings

from operations.models import DegradationLevel, DegradationState

_cached: tuple[float, int] | None = None


def current_level() -> DegradationLevel:
    """The level in force, at most DEGRADATION_CACHE_TTL_S old."""
    global _cached
    now = time.monotonic()
    if _cached is None or now - _cached[0] > settings.DEGRADATION_CACHE_TTL_S:
        _cached = (now, DegradationState.load().effective_level)
    return DegradationLevel(_cached[1])


def set_manual_level(level: int | None, *, reason: str, changed_by: str) -> DegradationState:
    state = DegradationState.load()
    state.manual_level = level
    state.reason = reason
    state.changed_by = changed_by
    state.save()
    forget_cached_level()
    return state


def forget_cached_level() -> None:
    global _cached
    _cached = None
