"""The foundation against the real services: Kafka, Redis, PostgreSQL, ClickHouse DDL."""

import re
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from django.conf import settings
from django.db import connection

from llmops import clickhouse_migrations
from llmops.clickhouse import get_client
from llmops.kafka import get_producer, new_consumer, spans_topic
from llmops.redis import get_redis


def test_kafka_round_trip_on_the_spans_topic():
    topic = spans_topic()
    metadata = get_producer().list_topics(topic.name, timeout=10)
    assert len(metadata.topics[topic.name].partitions) == settings.KAFKA_SPANS_PARTITIONS

    marker = uuid.uuid4().hex.encode()
    producer = get_producer()
    delivered = []
    producer.produce(topic.name, value=marker, key=b"k", partition=0,
                     on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    producer.flush(10)
    assert delivered and delivered[0][0] is None
    offset = delivered[0][1]

    consumer = new_consumer(**{"group.id": f"test-{uuid.uuid4().hex}"})
    try:
        consumer.assign([TopicPartition(topic.name, 0, offset)])
        message = consumer.poll(10)
        assert message is not None and message.error() is None
        assert message.value() == marker
    finally:
        consumer.close()


def test_redis_answers_and_expires():
    redis = get_redis()
    key = f"test:{uuid.uuid4().hex}"
    redis.set(key, "v", px=200)
    assert redis.get(key) == b"v"
    time.sleep(0.3)
    assert redis.get(key) is None


@pytest.mark.django_db
def test_django_runs_on_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        assert cursor.fetchone()[0].startswith("test_")


def test_clickhouse_migrations_are_applied_and_recorded():
    assert clickhouse_migrations.pending() == []
    recorded = {row[0] for row in get_client().query(
        "SELECT name FROM clickhouse_migrations FINAL").result_rows}
    assert {migration.label for migration in clickhouse_migrations.discover()} <= recorded


def test_migration_numbers_are_unique_and_well_named():
    root = Path(settings.BASE_DIR)
    files = sorted(root.glob("*/clickhouse_migrations/[0-9]*.py"))
    assert files, "no ClickHouse migration found"
    numbers = [int(path.name[:4]) for path in files]
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.py", path.name) for path in files)
    duplicates = {n for n in numbers if numbers.count(n) > 1}
    assert not duplicates, f"migration numbers used twice: {sorted(duplicates)}"
    assert len(clickhouse_migrations.discover()) == len(files)


def _all_statements() -> list[str]:
    return [s for m in clickhouse_migrations.discover() for s in m.statements()]


def test_single_node_ddl_has_no_cluster_and_keeps_dedup_tokens():
    statements = _all_statements()
    assert not any("ON CLUSTER" in s or "Replicated" in s for s in statements)
    for statement in statements:
        if statement.startswith("CREATE TABLE") and "MergeTree" in statement:
            assert "non_replicated_deduplication_window" in statement, statement


def test_every_celery_setting_is_a_real_celery_option():
    """A misspelt CELERY_* setting is silently ignored by Celery: catch it here."""
    from celery.app.defaults import DEFAULTS

    names = [name for name in dir(settings) if name.startswith("CELERY_")]
    assert names
    unknown = [name for name in names if name.removeprefix("CELERY_").lower() not in DEFAULTS]
    assert not unknown, f"not Celery options: {unknown}"


def test_settings_default_to_the_design_document():
    assert settings.KAFKA_SPANS_PARTITIONS == 12
    assert settings.KAFKA_RETENTION_MS == 7 * 24 * 3600 * 1000
    assert settings.CLICKHOUSE_SPANS_TTL_DAYS == 90
    assert settings.CLICKHOUSE_WRITE_RETRY == {
        "max_attempts": 5, "initial_backoff_ms": 100, "max_backoff_ms": 10000,
        "backoff_multiplier": 2.0, "jitter_factor": 0.0}
    assert (settings.KAFKA_PUBLISH_MAX_ATTEMPTS, settings.KAFKA_PUBLISH_INITIAL_BACKOFF_MS,
            settings.KAFKA_PUBLISH_ACKS, settings.KAFKA_PUBLISH_RETRIES,
            settings.KAFKA_PUBLISH_RETRY_BACKOFF_MS) == (3, 50, "all", 3, 100)
    assert settings.INGEST_DEGRADED_SAMPLE_RATE == 0.01
    assert (settings.PRICING_CACHE_TTL_S, settings.CONFIG_CACHE_TTL_S,
            settings.COST_CACHE_TTL_S, settings.RATE_LIMIT_WINDOW_S) == (3600, 300, 300, 60)


def test_a_bad_environment_value_fails_at_start_up_naming_the_variable(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from llmops.settings.env import env

    monkeypatch.setenv("DRAIN_BATCH_SIZE", "lots")
    with pytest.raises(ImproperlyConfigured, match="DRAIN_BATCH_SIZE='lots'"):
        env("DRAIN_BATCH_SIZE", 5000)
    monkeypatch.setenv("DJANGO_DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DJANGO_DEBUG"):
        env("DJANGO_DEBUG", False)
