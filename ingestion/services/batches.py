"""The drain's one hand-off to the other apps: "this batch is stored".

Listeners register from their app's `AppConfig.ready()` (costs drops cached reports,
evaluation queues evaluations) and are told after the insert and before the offsets are
committed, so a crash in between tells them again on the replay (the token is the same).
A listener's failure is logged and never fails the batch: the spans are stored, and holding
the partition for a side effect would stop every org on it. Each listener owns its own
recovery (evaluation: its retry log; costs: cached reports live out COST_CACHE_TTL_S).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ingestion.services.rows import StoredSpan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchStored:
    token: str  # the batch's insert deduplication token: the same on every replay
    org_ids: frozenset[int]
    spans: list[StoredSpan]


BatchListener = Callable[[BatchStored], object]
_listeners: list[BatchListener] = []


def on_batch_stored(listener: BatchListener) -> None:
    """Call `listener` with every stored batch (registering twice is harmless)."""
    if listener not in _listeners:
        _listeners.append(listener)


def announce_batch_stored(batch: BatchStored) -> None:
    for listener in list(_listeners):
        try:
            listener(batch)
        except Exception:
            logger.exception("batch %s: listener %s failed; the spans are stored",
                             batch.token, getattr(listener, "__qualname__", listener))
