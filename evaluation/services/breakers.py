"""Circuit breakers shared by the fleet: pybreaker's state in Redis, a sliding window above it.

pybreaker holds the state (closed, open, half-open, opened_at) in Redis through its
CircuitRedisStorage, so every worker sees one breaker, and makes the transitions (with its
listeners). Its own rule (N consecutive failures; one failed trial reopens) is not the design
document's, so the decisions are made here, atomically in Redis:
- closed: the outcomes of the last `sliding_window_size` calls of the whole fleet, a Redis
  list; from `minimum_calls` on, a failure rate or slow-call rate at or over its threshold
  opens the breaker;
- open: every call is refused until `wait_duration_in_open_state_ms` has passed;
- half-open: `permitted_calls_in_half_open_state` trial calls in the whole fleet; once all have
  reported, the same thresholds over their outcomes close or reopen it.
Each decision is taken by exactly one caller (a Lua script clears what it decided on), so
concurrent workers never open or close a breaker twice.
We never call pybreaker's `call()`: it holds a process-wide lock for the whole guarded call,
which would serialise a threaded worker's calls to the provider.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import pybreaker
from django.conf import settings

from llmops.redis import get_redis

logger = logging.getLogger(__name__)

LLM_EVALUATION = "llm_evaluation"
EMBEDDING_API = "embedding_api"
_SETTINGS = {LLM_EVALUATION: "LLM_EVAL_BREAKER", EMBEDDING_API: "EMBEDDING_BREAKER"}

BreakerOpen = pybreaker.CircuitBreakerError

# Outcome codes: s ok, S ok but slow, f failed, F failed and slow.
_RATES = """
local failed, slow = 0, 0
for _, outcome in ipairs(outcomes) do
  if outcome == 'f' or outcome == 'F' then failed = failed + 1 end
  if outcome == 'S' or outcome == 'F' then slow = slow + 1 end
end
local over = failed * 100 >= tonumber(ARGV[3]) * #outcomes
  or slow * 100 >= tonumber(ARGV[4]) * #outcomes
"""
# KEYS[1] window; ARGV outcome, window size, failure %, slow %, minimum calls. 1: trip.
_WINDOW = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local outcomes = redis.call('LRANGE', KEYS[1], 0, -1)
if #outcomes < tonumber(ARGV[5]) then return 0 end
""" + _RATES + """
if over then redis.call('DEL', KEYS[1]) return 1 end
return 0
"""
# KEYS[1] trial outcomes of one open period; ARGV outcome, permitted calls, failure %, slow %,
# ttl. 0: undecided, 1: close, 2: reopen.
_TRIALS = """
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5], 'NX')
if n < tonumber(ARGV[2]) then return 0 end
local outcomes = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
""" + _RATES + """
if over then return 2 end
return 1
"""


class PreciseRedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, with `opened_at` kept to the millisecond: it keeps whole
    seconds, which would cut up to a second off every open period."""

    @property
    def opened_at(self) -> datetime | None:
        raw = self._redis.get(self._namespace("opened_at"))
        return datetime.fromtimestamp(float(raw), UTC) if raw else None

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        # One caller decides each transition (see the module), so no compare-and-set here.
        self._redis.set(self._namespace("opened_at"), repr(now.timestamp()))


class _LogTransitions(pybreaker.CircuitBreakerListener):
    def state_change(self, cb, old_state, new_state) -> None:
        if old_state is not None and old_state.name == new_state.name:
            return
        logger.warning("circuit breaker %s: %s -> %s", cb.name,
                       old_state.name if old_state else "?", new_state.name)


@dataclass(frozen=True)
class Ticket:
    """A permitted call. `epoch` names the open period a half-open trial belongs to."""

    breaker: str
    epoch: str = ""


_close_callbacks: list[Callable[[str], None]] = []


def on_close(callback: Callable[[str], None]) -> None:
    """Call `callback(breaker name)` in the process that closes a breaker."""
    if callback not in _close_callbacks:
        _close_callbacks.append(callback)


class FleetBreaker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = f"breaker:{name}"
        self.storage = PreciseRedisStorage(pybreaker.STATE_CLOSED, get_redis(),
                                           namespace=self.prefix)
        self.pybreaker = pybreaker.CircuitBreaker(name=name, state_storage=self.storage,
                                                  listeners=[_LogTransitions()])
        redis = get_redis()
        self._window_script = redis.register_script(_WINDOW)
        self._trials_script = redis.register_script(_TRIALS)

    @property
    def config(self) -> dict:
        # Read at each use, so a changed setting applies without a restart.
        return getattr(settings, _SETTINGS[self.name])

    @property
    def state(self) -> str:
        return self.pybreaker.current_state

    @property
    def open_s(self) -> float:
        return self.config["wait_duration_in_open_state_ms"] / 1000

    def _key(self, suffix: str) -> str:
        return f"{self.prefix}:{suffix}"

    def _epoch(self) -> str:
        raw = get_redis().get(self.storage._namespace("opened_at"))
        return raw.decode() if raw else ""

    def _phase_ttl(self) -> int:
        # A half-open phase whose trials never all report (a worker died mid-call) starts
        # over once this has passed.
        return int(self.open_s + 2 * settings.EXTERNAL_API_TIMEOUT_MS / 1000) + 1

    def open_period_over(self, epoch: str | None = None) -> bool:
        epoch = self._epoch() if epoch is None else epoch
        return not epoch or time.time() >= float(epoch) + self.open_s

    def permit(self) -> Ticket:
        """A ticket for one call, or BreakerOpen."""
        state = self.state
        if state == pybreaker.STATE_CLOSED:
            return Ticket(self.name)
        epoch = self._epoch()
        redis = get_redis()
        if state == pybreaker.STATE_OPEN:
            if not self.open_period_over(epoch):
                raise BreakerOpen(f"circuit breaker {self.name} is open")
            # The first caller past the open period moves the breaker to half-open.
            if redis.set(self._key(f"half-open:{epoch}"), 1, nx=True, ex=self._phase_ttl()):
                self.pybreaker.half_open()
        trials_key = self._key(f"trial-permits:{epoch}")
        pipe = redis.pipeline()
        pipe.incr(trials_key)
        pipe.expire(trials_key, self._phase_ttl(), nx=True)
        taken, _ = pipe.execute()
        if taken > self.config["permitted_calls_in_half_open_state"]:
            raise BreakerOpen(f"circuit breaker {self.name} is half-open, its trials are taken")
        return Ticket(self.name, epoch)

    def release(self, ticket: Ticket) -> None:
        """A permitted call that was never made gives its trial back."""
        if ticket.epoch:
            get_redis().decr(self._key(f"trial-permits:{ticket.epoch}"))

    def record(self, ticket: Ticket, *, failed: bool, seconds: float) -> None:
        """The outcome of a permitted call; may open or close the breaker."""
        config = self.config
        slow = seconds * 1000 > config["slow_call_duration_ms"]
        outcome = ("F" if failed else "S") if slow else ("f" if failed else "s")
        thresholds = [config["failure_threshold_percentage"],
                      config["slow_call_threshold_percentage"]]
        if not ticket.epoch:
            tripped = self._window_script(
                keys=[self._key("window")],
                args=[outcome, config["sliding_window_size"], *thresholds,
                      config["minimum_calls"]])
            if tripped:
                self.pybreaker.open()
            return
        verdict = self._trials_script(
            keys=[self._key(f"trials:{ticket.epoch}")],
            args=[outcome, config["permitted_calls_in_half_open_state"], *thresholds,
                  self._phase_ttl()])
        if verdict == 2:
            self.pybreaker.open()
        elif verdict == 1:
            get_redis().delete(self._key("window"))
            self.pybreaker.close()
            for callback in list(_close_callbacks):
                try:
                    callback(self.name)
                except Exception:
                    logger.exception("on-close callback of breaker %s failed", self.name)

    def window(self) -> list[str]:
        """The closed state's recent outcomes, newest first (for operators and tests)."""
        return [item.decode() for item in get_redis().lrange(self._key("window"), 0, -1)]

    def reset(self) -> None:
        """Closed, with an empty window (operators; tests)."""
        redis = get_redis()
        keys = list(redis.scan_iter(match=f"{self.prefix}:*"))
        if keys:
            redis.delete(*keys)
        self.pybreaker.close()


@cache
def get_breaker(name: str) -> FleetBreaker:
    return FleetBreaker(name)
