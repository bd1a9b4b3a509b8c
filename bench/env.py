"""The benchmarks' own stores, set in the environment before Django reads its settings, so
servers started as subprocesses (gunicorn, Celery) see the same ones.

They sit on the same services as the rest of the environment (CLICKHOUSE_URL, REDIS_URL,
KAFKA_BOOTSTRAP_SERVERS, or the platform's defaults), under their own names."""

import os
from pathlib import Path
from urllib.parse import urlparse

import django

ROOT = Path(__file__).resolve().parent.parent


def _with_path(url: str, path: str) -> str:
    """`url` with its path (a database name, a Redis DB number) replaced."""
    return urlparse(url)._replace(path=f"/{path}").geturl()


def isolated_stores(name: str, *, redis_dbs: tuple[int, int]) -> dict[str, str]:
    """Environment for a run named `name` (bench, chaos): its own ClickHouse database, Kafka
    topics and consumer group, Redis DBs, on the services the environment points at."""
    clickhouse = os.environ.get("CLICKHOUSE_URL", "http://default:@127.0.0.1:8123/llmops")
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return {
        "CLICKHOUSE_URL": _with_path(clickhouse, f"llmops_{name}"),
        "KAFKA_SPANS_TOPIC": f"llmops.{name}.spans.v1",
        "KAFKA_DEAD_LETTER_TOPIC": f"llmops.{name}.spans.dead-letter",
        "REDIS_URL": _with_path(redis, str(redis_dbs[0])),
        "CACHE_REDIS_URL": _with_path(redis, str(redis_dbs[1])),
        "LOG_LEVEL": "WARNING",
    }


BENCH_ENV = {
    **isolated_stores("bench", redis_dbs=(8, 9)),
    "DJANGO_SETTINGS_MODULE": "bench.settings",
    "DATABASE_URL": f"sqlite:///{ROOT / 'var' / 'bench.sqlite3'}",
}


def setup() -> None:
    os.environ.update(BENCH_ENV)
    # A fresh consumer group per run: the drain benchmark starts at the end of the topic.
    os.environ.setdefault("KAFKA_CONSUMER_GROUP", f"llmops-bench-{os.getpid()}")
    django.setup()
    prepare_stores()


def prepare_stores() -> None:
    """Both databases migrated and the topics created, as `make run` does."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("migrate_clickhouse", verbosity=0)
    call_command("ensure_kafka_topics", verbosity=0)
