"""Replaying the retry log once calls may pass again: all of it (in batches) while a breaker
is closed, just enough to be the half-open trials once its open period is over."""

import logging
import time

import pybreaker
from django.conf import settings

from evaluation.services import queue, retrylog
from evaluation.services.breakers import get_breaker
from llmops.redis import get_redis

logger = logging.getLogger(__name__)
REPLAY_TASK = "evaluation.replay_retry_log"


def budget(log: str) -> int:
    """How many entries of `log` to queue now."""
    # Top the queue up, never flood it: replayed work waits behind what is queued anyway.
    room = settings.EVALUATION_REPLAY_BATCH - queue.queued_tasks()
    if log == retrylog.UNQUEUED:
        return room
    breaker = get_breaker(log)
    state = breaker.state
    if state == pybreaker.STATE_CLOSED:
        return room
    if state == pybreaker.STATE_OPEN and not breaker.open_period_over():
        return 0
    # Open period over, or half-open: the replayed calls are the trials that close it.
    return min(room, breaker.config["permitted_calls_in_half_open_state"])


def replay() -> dict[str, int]:
    """Move what may run now from each log to the evaluation queue; {log: entries queued}."""
    queued = {}
    for log in retrylog.LOGS:
        count = budget(log)
        if count <= 0 or not retrylog.length(log):
            continue
        lock = f"{retrylog.key(log)}:replaying"
        if not get_redis().set(lock, 1, nx=True, ex=60):
            continue  # another replay is on it
        try:
            entries = retrylog.oldest(log, count)
            horizon = time.time() - settings.EVALUATION_RETRY_LOG_MAX_AGE_S
            fresh = [entry for entry in entries if entry.pop("logged_at") >= horizon]
            if len(fresh) < len(entries):
                logger.warning("retry log %s: %d evaluation(s) too old to replay, dropped",
                               log, len(entries) - len(fresh))
            # Queued before they leave the log: a crash in between replays them twice, and
            # a repeated evaluation only replaces its own score.
            # Breaker logs hold external evaluations: a task each, so each is one trial.
            queue.publish(fresh, size=None if log == retrylog.UNQUEUED
                          else settings.EVALUATION_EXTERNAL_TASK_SIZE)
            retrylog.forget_oldest(log, len(entries))
            queued[log] = len(fresh)
        finally:
            get_redis().delete(lock)
    return queued


def request_replay(breaker: str) -> None:
    """A breaker just closed: replay now rather than at the next beat."""
    from celery_app import app

    try:
        app.send_task(REPLAY_TASK, expires=settings.EVALUATION_REPLAY_INTERVAL_S * 2)
    except Exception as exc:
        logger.warning("replay after %s closed not queued (the beat will run it): %s",
                       breaker, exc)
