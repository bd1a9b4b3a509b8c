"""Celery tasks of the evaluation app (queue `evaluation`): thin wrappers over services."""

from celery import shared_task

from evaluation.services.evaluate import run_evaluations
from evaluation.services.replay import replay
from evaluation.services.scores import ScoresNotStored


# Retried only when ClickHouse could not take the scores (an external call is then made
# again); every other trouble is already in the scores' status.
@shared_task(name="evaluation.evaluate", autoretry_for=(ScoresNotStored,), max_retries=3,
             retry_backoff=True)
def evaluate(items: list[dict], batch_id: str = "") -> int:
    return run_evaluations(items=items, batch_id=batch_id)


@shared_task(name="evaluation.replay_retry_log", acks_late=False)
def replay_retry_log() -> dict[str, int]:
    return replay()
