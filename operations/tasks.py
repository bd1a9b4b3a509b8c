"""Celery tasks of the operations app (queue `operations`): thin wrappers over services."""

from celery import shared_task

from operations.services import backups
from operations.services.degradation import apply_triggers
from operations.services.measure import measure


@shared_task(name="operations.evaluate_degradation", acks_late=False, ignore_result=True)
def evaluate_degradation() -> int:
    return apply_triggers(measure()).effective_level


@shared_task(name="operations.backup_clickhouse", ignore_result=True)
def backup_clickhouse() -> int:
    run = backups.backup()
    backups.prune()
    return run.pk
