"""The benchmarks' own stores, set in the environment before Django reads its settings, so
servers started as subprocesses (gunicorn, Celery) see the same ones."""

import os
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": "bench.settings",
    "DATABASE_URL": f"sqlite:///{ROOT / 'var' / 'bench.sqlite3'}",
    "CLICKHOUSE_URL": "http://default:@127.0.0.1:8123/llmops_bench",
    "KAFKA_SPANS_TOPIC": "llmops.bench.spans.v1",
    "KAFKA_DEAD_LETTER_TOPIC": "llmops.bench.spans.dead-letter",
    "REDIS_URL": "redis://127.0.0.1:6379/8",
    "CACHE_REDIS_URL": "redis://127.0.0.1:6379/9",
    "LOG_LEVEL": "WARNING",
}


def setup() -> None:
    os.environ.update(BENCH_ENV)
    # A fresh consumer group per run: the drain benchmark starts at the end of the topic.
    os.environ.setdefault("KAFKA_CONSUMER_GROUP", f"llmops-bench-{os.getpid()}")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("migrate_clickhouse", verbosity=0)
    call_command("ensure_kafka_topics", verbosity=0)
