"""Celery tasks of the ingestion app (queue `ingest`): thin wrappers over services."""

from celery import shared_task

from ingestion.services.drain import PartitionDrainer
from ingestion.services.schedule import forget_queued, requeue, schedule_drains


@shared_task(name="ingestion.drain_partition", acks_late=False)
def drain_partition(partition: int) -> dict:
    forget_queued(partition)
    stats = PartitionDrainer(partition).run()
    if stats.stopped == "budget spent":  # stopped with lag left: the next drain comes now
        requeue(partition, enqueue=drain_partition.delay)
    return {"partition": partition, "spans": stats.spans, "batches": stats.batches,
            "dead_lettered": stats.dead_lettered, "stopped": stats.stopped}


@shared_task(name="ingestion.schedule_drains", acks_late=False, ignore_result=True)
def schedule_drains_task() -> list[int]:
    return schedule_drains(enqueue=drain_partition.delay)
