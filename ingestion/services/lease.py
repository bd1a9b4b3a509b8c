"""A lease in Redis: one holder at a time, lost by a holder that stops renewing it."""

import secrets

from llmops.redis import get_redis

# Compare-and-act scripts, so a holder whose lease expired cannot touch the next holder's.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then " \
         "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then " \
           "return redis.call('del', KEYS[1]) else return 0 end"


class Lease:
    def __init__(self, key: str, ttl_s: float):
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.token = secrets.token_hex(8)
        self.held = False

    def acquire(self) -> bool:
        self.held = bool(get_redis().set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    def renew(self) -> bool:
        """Extend the lease; False when it expired and may belong to someone else now."""
        self.held = bool(get_redis().eval(_RENEW, 1, self.key, self.token, self.ttl_ms))
        return self.held

    def release(self) -> None:
        get_redis().eval(_RELEASE, 1, self.key, self.token)
        self.held = False

    @staticmethod
    def is_free(key: str) -> bool:
        return not get_redis().exists(key)
