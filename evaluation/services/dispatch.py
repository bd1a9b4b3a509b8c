"""From stored spans to queued evaluations: evaluation's listener of stored batches."""

import logging

from django.conf import settings

from evaluation.services import matching, queue, retrylog
from ingestion.services.batches import BatchStored
from ingestion.services.rows import StoredSpan
from llmops.redis import get_redis
from operations.services.degradation import current_level

logger = logging.getLogger(__name__)


def batch_stored(batch: BatchStored) -> None:
    enqueue_for_spans(batch.spans, batch_token=batch.token)


def enqueue_for_spans(spans: list[StoredSpan], *, batch_token: str = "") -> int:
    """Queue the evaluations that stored spans call for; returns how many. Never raises:
    evaluation trouble must not fail the drain.

    If the broker refuses, the items go to the retry log (Redis) and are queued by the next
    replay. If Redis is down too, the drain cannot renew its lease or clear its in-flight
    record either, so the batch is not committed: its replay stores nothing twice (insert
    dedup) and comes back here. A replayed batch whose evaluations were queued already is
    recognised by its token and queues nothing twice (the token holds the Kafka topic's id, so
    a recreated topic's batches, at offsets seen before, are not taken for replays)."""
    try:
        items = matching.items_for(spans, level_of=current_level)
        if not items:
            return 0
        marker = f"evaluation:enqueued:{batch_token}"
        if batch_token and get_redis().exists(marker):
            return 0
        try:
            queue.publish(items)
        except queue.PublishFailed as exc:
            logger.error("%s; %d evaluation(s) to the retry log", exc, len(exc.unsent))
            if not retrylog.log_for_retry(exc.unsent, log=retrylog.UNQUEUED):
                logger.error("%d evaluation(s) of batch %s lost: retry log full",
                             len(exc.unsent), batch_token)
        if batch_token:
            get_redis().set(marker, 1, ex=settings.EVALUATION_ENQUEUE_MARKER_TTL_S)
        return len(items)
    except Exception:
        logger.exception("evaluations of drained batch %s not queued", batch_token or "?")
        return 0
