"""Keeping every partition drained: a drain is queued for each partition that has work and
no drainer, so none starves and a dead drainer's partition is picked up again."""

from collections.abc import Callable

from django.conf import settings

from ingestion.services.lease import Lease
from ingestion.services.partitions import lease_key, partition_lags
from llmops.redis import get_redis


def queued_key(partition: int) -> str:
    return f"drain:queued:{settings.KAFKA_SPANS_TOPIC}:{partition}"


def forget_queued(partition: int) -> None:
    get_redis().delete(queued_key(partition))


def requeue(partition: int, *, enqueue: Callable[[int], object]) -> bool:
    """Queue the next drain of a partition whose drain spent its budget with lag left: at
    once, behind whatever else is queued (fair), not at the next beat tick (each tick's
    wait is seconds of latency on every span of the partition)."""
    if get_redis().set(queued_key(partition), 1, nx=True,
                       ex=int(settings.DRAIN_LEASE_TTL_S * 2)):
        enqueue(partition)
        return True
    return False


def schedule_drains(*, enqueue: Callable[[int], object]) -> list[int]:
    """Queue a drain per partition with lag or a batch in flight; returns those queued."""
    queued = []
    for lag in partition_lags():
        if not (lag.lag or lag.in_flight):
            continue
        if not Lease.is_free(lease_key(settings.KAFKA_SPANS_TOPIC, lag.partition)):
            continue
        # One queued drain per partition at a time; the marker expires in case it is lost.
        if get_redis().set(queued_key(lag.partition), 1, nx=True,
                           ex=int(settings.DRAIN_LEASE_TTL_S * 2)):
            enqueue(lag.partition)
            queued.append(lag.partition)
    return queued
