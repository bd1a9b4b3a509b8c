"""Retry policies from the design document: exponential backoff, a cap, optional jitter."""

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    initial_backoff_ms: float
    max_backoff_ms: float
    backoff_multiplier: float = 2.0
    jitter_factor: float = 0.0

    @classmethod
    def from_settings(cls, values: dict) -> "RetryPolicy":
        return cls(**values)

    def delays(self) -> Iterator[float]:
        """Seconds to wait before attempts 2..max_attempts."""
        backoff = self.initial_backoff_ms
        for _ in range(self.max_attempts - 1):
            capped = min(backoff, self.max_backoff_ms)
            jitter = capped * self.jitter_factor * (2 * random.random() - 1)
            yield max(0.0, capped + jitter) / 1000
            backoff *= self.backoff_multiplier

    def call(
        self,
        operation: Callable[[], T],
        *,
        retryable: Callable[[BaseException], bool],
        sleep: Callable[[float], None] = time.sleep,
        name: str = "operation",
    ) -> T:
        """Run `operation`; retry what `retryable` says may pass, re-raise the rest at once."""
        delays = self.delays()
        attempt = 1
        while True:
            try:
                return operation()
            except Exception as exc:
                delay = next(delays, None) if retryable(exc) else None
                if delay is None:
                    raise
                logger.warning("%s failed (attempt %d/%d), retrying in %.2fs: %s",
                               name, attempt, self.max_attempts, delay, exc)
                sleep(delay)
                attempt += 1
