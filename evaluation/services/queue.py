"""The evaluation queue: publishing evaluation tasks, and its depth for the degradation
trigger (operations calls `depth()`)."""

import uuid
from functools import cache

import redis
from django.conf import settings

from evaluation.services import retrylog

EVALUATE_TASK = "evaluation.evaluate"
QUEUE = "evaluation"  # celery_app.Queues.EVALUATION; kombu keeps it as a Redis list
# {batch id: evaluations} of queued tasks holding several, for depth(); beside the queue.
BATCHES = "evaluation:batches"


class PublishFailed(Exception):
    """The broker refused; `unsent` are the items not queued (perhaps one chunk was)."""

    def __init__(self, message: str, unsent: list[dict]):
        super().__init__(message)
        self.unsent = unsent


def publish(items: list[dict], *, size: int | None = None) -> None:
    """Queue `items` as tasks of `size` (default EVALUATION_TASK_SIZE), or raise
    PublishFailed with what is left."""
    from celery_app import app

    size = size or settings.EVALUATION_TASK_SIZE
    pending = [items[start:start + size] for start in range(0, len(items), size)]
    try:
        # One broker connection for the whole batch.
        with app.connection_for_write() as connection:
            while pending:
                chunk = pending[0]
                kwargs = {}
                if len(chunk) > 1:
                    # Counted before it is queued, so a quick worker cannot forget it first.
                    kwargs["batch_id"] = uuid.uuid4().hex
                    _broker().hset(BATCHES, kwargs["batch_id"], len(chunk))
                try:
                    # argsrepr: Celery would otherwise render every item for its headers.
                    app.send_task(EVALUATE_TASK, args=[chunk], kwargs=kwargs,
                                  connection=connection,
                                  argsrepr=f"[{len(chunk)} evaluations]")
                except Exception:
                    forget_batch(kwargs.get("batch_id", ""))
                    raise
                pending.pop(0)
    except Exception as exc:
        raise PublishFailed(f"evaluation tasks not queued: {exc}",
                            [item for chunk in pending for item in chunk]) from exc


def forget_batch(batch_id: str) -> None:
    """A worker has split the batch (its external evaluations queued a task each)."""
    if batch_id:
        _broker().hdel(BATCHES, batch_id)


@cache
def _broker() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5,
                                socket_connect_timeout=5)


def queued_tasks() -> int:
    """Tasks waiting in the Celery `evaluation` queue (not those a worker holds)."""
    return _broker().llen(QUEUE)


def depth() -> int:
    """Evaluations waiting: the queued tasks, counting a drain's batch task (not yet split by
    a worker) as its evaluations, plus the retry logs. Past the split, an external evaluation
    is a task of its own, so the slow kind is counted exactly."""
    pipe = _broker().pipeline(transaction=False)
    pipe.llen(QUEUE)
    pipe.hvals(BATCHES)
    tasks, batches = pipe.execute()
    sizes = [int(size) for size in batches]
    return tasks - len(sizes) + sum(sizes) + retrylog.length()
