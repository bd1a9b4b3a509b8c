"""Helpers for evaluation tests: a clean evaluation state, configs, and
running the queued evaluation tasks in this process (a step at a time, as a worker would)."""

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from django.db import connections

from evaluation.models import EvaluatorConfig
from evaluation.services import queue, retrylog, scores
from evaluation.services.breakers import EMBEDDING_API, LLM_EVALUATION, get_breaker
from evaluation.services.matching import forget_cached_configs
from ingestion.services.drain import PartitionDrainer
from ingestion.services.partitions import partition_lags
from llmops.redis import get_redis
from tests.ingest_helpers import client_for, post_spans


def reset_evaluation_state() -> None:
    """Breakers closed, buckets full, logs, queue and embedding cache empty."""
    redis = get_redis()
    for pattern in ("ratelimit:eval:*", "evaluation:*", "embedding:*"):
        keys = list(redis.scan_iter(match=pattern))
        if keys:
            redis.delete(*keys)
    queue._broker().delete(queue.QUEUE, queue.BATCHES)
    for name in (LLM_EVALUATION, EMBEDDING_API):
        get_breaker(name).reset()
    forget_cached_configs()


def new_config(org, evaluator_type: str, **fields) -> EvaluatorConfig:
    fields.setdefault("name", f"{evaluator_type.replace('_', '-')}-{uuid.uuid4().hex[:6]}")
    config = EvaluatorConfig(org=org, evaluator_type=evaluator_type, **fields)
    config.full_clean()
    config.save()
    return config


def in_thread(function):
    """`function` for a pool thread: the thread's DB connection is closed when it is done
    (the hook reads configs and the degradation level), as Celery does after a task."""

    def run(*args):
        try:
            return function(*args)
        finally:
            connections.close_all()

    return run


def ingest(raw_key: str, spans: list[dict]) -> None:
    """Through the API and the real drain (whose hook queues the evaluations)."""
    for start in range(0, len(spans), 500):
        response = post_spans(client_for(raw_key), spans[start:start + 500])
        assert response.status_code == 202, response.content
    deadline = time.monotonic() + 60
    while pending := [lag.partition for lag in partition_lags() if lag.lag or lag.in_flight]:
        assert time.monotonic() < deadline, f"partitions still lagging: {pending}"
        with ThreadPoolExecutor(len(pending)) as pool:
            list(pool.map(in_thread(lambda p: PartitionDrainer(p).run(budget_s=10)), pending))


def _decode(raw: bytes) -> tuple[str, list, dict]:
    message = json.loads(raw)
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    return message["headers"]["task"], args, kwargs


def queued_items() -> list[dict]:
    """The items of the evaluation tasks waiting in the broker, oldest first (not taken)."""
    raw = queue._broker().lrange(queue.QUEUE, 0, -1)
    return [item for message in reversed(raw) for item in _decode(message)[1][0]]


def run_queued_evaluations(threads: int = 1, limit: int | None = None) -> int:
    """Take tasks off the real `evaluation` queue and run them here, as a worker would
    (through Celery's task machinery, errors raised); returns how many ran."""
    import evaluation.tasks  # noqa: F401  (registers the tasks on the app)
    from celery_app import app

    broker = queue._broker()
    messages = []
    while limit is None or len(messages) < limit:
        raw = broker.rpop(queue.QUEUE)  # kombu pushes left, workers pop right
        if raw is None:
            break
        messages.append(_decode(raw))

    def run(message) -> None:
        name, args, kwargs = message
        app.tasks[name].apply(args=args, kwargs=kwargs, throw=True)

    if threads == 1:
        for message in messages:
            run(message)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(in_thread(run), messages))
    return len(messages)


def drain_queue(threads: int = 1) -> int:
    """Run queued tasks until none is left (replays may queue more)."""
    total = 0
    while ran := run_queued_evaluations(threads):
        total += ran
    return total


def scores_of(org_id: int, **filters) -> list[dict]:
    return scores.read(org_id=org_id, limit=1000, **filters)


def retry_log_length(log: str = LLM_EVALUATION) -> int:
    return retrylog.length(log)
