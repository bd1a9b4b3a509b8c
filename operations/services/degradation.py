"""The degradation level: read by every process through a short cache, moved by operators
and by triggers measured every few seconds, with hysteresis so it does not flap."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from llmops import changes
from operations.models import DegradationChange, DegradationLevel, DegradationState

logger = logging.getLogger(__name__)
TOPIC = "degradation"


def _read_level() -> int:
    return DegradationState.load().effective_level


cached_level = changes.AnnouncedCache(TOPIC, _read_level, ttl_setting="DEGRADATION_CACHE_TTL_S")


def current_level() -> DegradationLevel:
    """The level in force, at most DEGRADATION_CACHE_TTL_S old (a change is announced)."""
    return DegradationLevel(cached_level.get())


def forget_cached_level() -> None:
    cached_level.forget()


def _record(state: DegradationState, before: int, *, manual: bool, reason: str,
            changed_by: str) -> None:
    after = state.effective_level
    if after == before:
        return
    DegradationChange.objects.create(from_level=before, to_level=after, manual=manual,
                                     reason=reason, changed_by=changed_by)
    logger.warning("degradation level %d -> %d by %s: %s", before, after, changed_by, reason)
    forget_cached_level()  # this process at once; the others when the commit is announced
    transaction.on_commit(lambda: changes.announce(TOPIC))


@transaction.atomic
def set_manual_level(level: int | None, *, reason: str, changed_by: str) -> DegradationState:
    """An operator's level, which wins over the triggers until cleared (None)."""
    state = DegradationState.objects.select_for_update().get(pk=DegradationState.load().pk)
    before = state.effective_level
    state.manual_level = level
    state.reason = reason
    state.changed_by = changed_by
    state.save()
    _record(state, before, manual=True, reason=reason, changed_by=changed_by)
    return state


@dataclass(frozen=True)
class Measurements:
    evaluation_queue_depth: int
    ingestion_lag: int
    storage_used_pct: float
    critical_failure: str  # "" when none; else what has been unreachable too long


def _active(value: float, threshold: float, was_active: bool) -> bool:
    # Once active, a trigger clears only well below its threshold.
    return value > (threshold * settings.DEGRADATION_CLEAR_RATIO if was_active else threshold)


def wanted_level(m: Measurements, current: int) -> tuple[DegradationLevel, str]:
    """The highest level whose trigger holds, with the reason; the design document's table."""
    level, reason = DegradationLevel.NORMAL, "all systems healthy"
    checks = [
        (DegradationLevel.REDUCED_EVALUATION, m.evaluation_queue_depth,
         settings.DEGRADATION_EVAL_QUEUE_THRESHOLD, "evaluation queue depth"),
        (DegradationLevel.REDUCED_SAMPLING, m.ingestion_lag,
         settings.DEGRADATION_INGESTION_LAG_THRESHOLD, "ingestion lag"),
        (DegradationLevel.ESSENTIAL_ONLY, m.storage_used_pct,
         settings.DEGRADATION_STORAGE_PCT_THRESHOLD, "storage used %"),
    ]
    for candidate, value, threshold, name in checks:
        if _active(value, threshold, current >= candidate):
            level, reason = candidate, f"{name} {value:g} over {threshold:g}"
    if m.critical_failure:
        level, reason = DegradationLevel.READ_ONLY, f"critical failure: {m.critical_failure}"
    return level, reason


@transaction.atomic
def apply_triggers(m: Measurements) -> DegradationState:
    """Raise the automatic level at once; lower it only after DEGRADATION_COOLDOWN_S calm."""
    state = DegradationState.objects.select_for_update().get(pk=DegradationState.load().pk)
    before = state.effective_level
    wanted, reason = wanted_level(m, state.level)
    now = timezone.now()
    if wanted > state.level:
        state.level, state.calm_since, state.reason = wanted, None, reason
    elif wanted < state.level:
        if state.calm_since is None:
            state.calm_since = now
        elif now - state.calm_since >= timedelta(seconds=settings.DEGRADATION_COOLDOWN_S):
            state.level, state.calm_since = wanted, None
            state.reason = f"recovered: {reason}"
    else:
        state.calm_since = None
    state.save()
    _record(state, before, manual=False, reason=state.reason, changed_by="triggers")
    return state
