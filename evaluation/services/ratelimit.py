"""Token buckets in Redis, shared by every worker: per provider and per org, taken atomically.

A Lua script refills and takes from all the buckets of a call at once, on Redis's clock, so
workers on different machines share one rate and none takes a token another one needed.
A provider's 429 Retry-After blocks every worker until it has passed.
"""

import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings

from llmops.redis import get_redis

# KEYS[1] the provider's block (epoch ms, from Retry-After), KEYS[2..] buckets;
# ARGV rate per second and capacity of each bucket. Returns 0 (tokens taken) or ms to wait.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0')
if blocked > now then return math.ceil(blocked - now) end
local wait, tokens = 0, {}
for i = 2, #KEYS do
  local rate, capacity = tonumber(ARGV[2 * i - 3]), tonumber(ARGV[2 * i - 2])
  local bucket = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local level = tonumber(bucket[1]) or capacity
  local at = tonumber(bucket[2]) or now
  level = math.min(capacity, level + math.max(0, now - at) * rate / 1000)
  tokens[i] = level
  if level < 1 then wait = math.max(wait, (1 - level) * 1000 / rate) end
end
if wait > 0 then return math.max(1, math.ceil(wait)) end
for i = 2, #KEYS do
  local rate, capacity = tonumber(ARGV[2 * i - 3]), tonumber(ARGV[2 * i - 2])
  redis.call('HSET', KEYS[i], 'tokens', tokens[i] - 1, 'at', now)
  -- A bucket left alone refills; once full it needs no key.
  redis.call('PEXPIRE', KEYS[i], math.ceil(capacity * 1000 / rate) + 1000)
end
return 0
"""
# KEYS[1] the provider's block; ARGV[1] ms from now. Only ever extended: a shorter
# Retry-After arriving later does not cut a longer one.
_BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + math.ceil(tonumber(ARGV[1]))
if until_ms > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], until_ms, 'PX', math.ceil(tonumber(ARGV[1])) + 1000)
end
"""


@cache
def _script(source: str):
    return get_redis().register_script(source)


class RateLimitWaitTooLong(Exception):
    """No token within EVALUATION_RATE_MAX_WAIT_S: the caller skips and logs for retry."""


@dataclass(frozen=True)
class Limit:
    key: str
    rate_per_s: float

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate_per_s * settings.EVALUATION_RATE_BURST_S)


def _block_key(api: str) -> str:
    return f"ratelimit:eval:{api}:blocked-until"


def limits_for(api: str, org_id: int) -> list[Limit]:
    provider_rate = (settings.LLM_PROVIDER_RATE_PER_S if api == "llm_judge"
                     else settings.EMBEDDING_RATE_PER_S)
    return [Limit(f"ratelimit:eval:{api}:provider", provider_rate),
            Limit(f"ratelimit:eval:{api}:org:{org_id}", settings.LLM_ORG_RATE_PER_S)]


def try_take(*, api: str, org_id: int) -> float:
    """Take a token from each bucket of the call: 0.0 if taken, else seconds to wait."""
    limits = limits_for(api, org_id)
    args = [value for limit in limits for value in (limit.rate_per_s, limit.capacity)]
    wait_ms = _script(_TAKE)(keys=[_block_key(api), *(limit.key for limit in limits)], args=args)
    return wait_ms / 1000


def take(*, api: str, org_id: int, max_wait_s: float | None = None) -> float:
    """Wait for a token; returns the seconds waited, or raises RateLimitWaitTooLong."""
    max_wait_s = settings.EVALUATION_RATE_MAX_WAIT_S if max_wait_s is None else max_wait_s
    started = time.monotonic()
    while True:
        wait_s = try_take(api=api, org_id=org_id)
        if wait_s == 0:
            return time.monotonic() - started
        if time.monotonic() - started + wait_s > max_wait_s:
            raise RateLimitWaitTooLong(f"no {api} rate-limit token within {max_wait_s:.0f}s")
        time.sleep(wait_s)


def block(*, api: str, seconds: float) -> None:
    """Honour a provider's Retry-After: no worker calls it before then (Redis's clock)."""
    _script(_BLOCK)(keys=[_block_key(api)], args=[seconds * 1000])
