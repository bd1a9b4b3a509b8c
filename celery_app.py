"""The Celery app: queues split by workload so each scales on its own, and the beat schedule."""

import os
from enum import StrEnum

from celery import Celery
from celery.schedules import crontab
from django.conf import settings
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")


class Queues(StrEnum):
    INGEST = "ingest"
    EVALUATION = "evaluation"
    COSTS = "costs"
    OPERATIONS = "operations"


app = Celery("llmops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(queue.value) for queue in Queues]
app.conf.task_default_queue = Queues.OPERATIONS.value
app.conf.task_routes = {
    "ingestion.*": {"queue": Queues.INGEST.value},
    "evaluation.*": {"queue": Queues.EVALUATION.value},
    "costs.*": {"queue": Queues.COSTS.value},
    "operations.*": {"queue": Queues.OPERATIONS.value},
}
app.conf.beat_schedule = {
    "schedule-drains": {
        "task": "ingestion.schedule_drains",
        "schedule": settings.DRAIN_SCHEDULE_INTERVAL_S,
        "options": {"expires": settings.DRAIN_SCHEDULE_INTERVAL_S * 2},
    },
    "evaluate-degradation": {
        "task": "operations.evaluate_degradation",
        "schedule": settings.DEGRADATION_CHECK_INTERVAL_S,
        "options": {"expires": settings.DEGRADATION_CHECK_INTERVAL_S * 2},
    },
    "replay-evaluation-retry-log": {
        "task": "evaluation.replay_retry_log",
        "schedule": settings.EVALUATION_REPLAY_INTERVAL_S,
        "options": {"expires": settings.EVALUATION_REPLAY_INTERVAL_S * 2},
    },
    "backup-clickhouse": {
        "task": "operations.backup_clickhouse",
        "schedule": crontab(hour=settings.BACKUP_HOUR_UTC, minute=settings.BACKUP_MINUTE_UTC),
    },
}
app.autodiscover_tasks()
