"""Kafka: topic names, the process's producer, consumers and topic creation."""

import atexit
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)
from django.conf import settings

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int


def spans_topic() -> Topic:
    return Topic(settings.KAFKA_SPANS_TOPIC, settings.KAFKA_SPANS_PARTITIONS)


def dead_letter_topic() -> Topic:
    # Dead letters are rare; a few partitions keep them ordered enough to replay.
    return Topic(settings.KAFKA_DEAD_LETTER_TOPIC, 3)


def all_topics() -> list[Topic]:
    return [spans_topic(), dead_letter_topic()]


def admin_client() -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS})


# A record batch wraps its messages in framing, and lz4 may grow an incompressible one a
# little: the topic takes a batch this much over the largest message the producer sends.
BATCH_FRAMING_BYTES = 64 * 1024


def topic_config() -> dict[str, str]:
    return {"retention.ms": str(settings.KAFKA_RETENTION_MS),
            "max.message.bytes": str(settings.KAFKA_MESSAGE_MAX_BYTES + BATCH_FRAMING_BYTES),
            "min.insync.replicas": str(settings.KAFKA_MIN_INSYNC_REPLICAS)}


def ensure_topics(timeout: float = 30.0) -> list[str]:
    """Create the project's topics that do not exist yet, and give the existing ones the
    message size limit in force; returns the names created."""
    admin = admin_client()
    existing = admin.list_topics(timeout=timeout).topics
    missing = [
        NewTopic(
            topic.name,
            num_partitions=topic.partitions,
            replication_factor=settings.KAFKA_REPLICATION_FACTOR,
            config=topic_config(),
        )
        for topic in all_topics()
        if topic.name not in existing
    ]
    _set_message_size_limit(admin, [t.name for t in all_topics() if t.name in existing],
                            timeout)
    if not missing:
        return []
    for future in admin.create_topics(missing, request_timeout=timeout).values():
        try:
            future.result()
        except KafkaException as exc:
            # Another process created it between our list and our create: fine.
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    names = [topic.topic for topic in missing]
    _wait_for_leaders(admin, names, timeout)
    return names


def _set_message_size_limit(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Topics created before KAFKA_MESSAGE_MAX_BYTES was raised keep the broker's ~1 MB
    default, and would refuse what the producer now sends."""
    if not names:
        return
    limit = topic_config()["max.message.bytes"]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[
        ConfigEntry("max.message.bytes", limit,
                    incremental_operation=AlterConfigOpType.SET)]) for name in names]
    for future in admin.incremental_alter_configs(resources, request_timeout=timeout).values():
        future.result()


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """A new topic answers NOT_LEADER until each partition has a leader: wait for that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=timeout).topics
        if all(
            name in topics and topics[name].partitions
            and all(p.leader >= 0 and p.error is None for p in topics[name].partitions.values())
            for name in names
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"Kafka topics {names} have no leader after {timeout}s")


PASSING_ERRORS = {
    KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.NOT_COORDINATOR, KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
}


def retrying(operation: Callable[[], T], timeout: float = 30.0) -> T:
    """Run a Kafka call, again while it fails with a retriable error: right after a topic is
    created, or a broker or the group coordinator starts, a partition answers NOT_LEADER or
    COORDINATOR_NOT_AVAILABLE for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return operation()
        except KafkaException as exc:
            error = exc.args[0]
            # librdkafka flags few of these as retriable() on metadata calls: name them.
            passing = error.retriable() or error.code() in PASSING_ERRORS
            if not passing or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def watermarks(consumer: Consumer, topic: str, partition: int,
               timeout: float = 10.0) -> tuple[int, int]:
    """(low, high) offsets of a partition."""
    return retrying(lambda: consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                           timeout=timeout), timeout)


def end_offsets(consumer: Consumer, topic: str) -> list[TopicPartition]:
    """Every partition of `topic` at its end (high watermark) offset."""
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    return [TopicPartition(topic, p, watermarks(consumer, topic, p)[1])
            for p in sorted(partitions)]


def producer_config() -> dict:
    return {
        "bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS,
        # Idempotence makes librdkafka's own retries safe: no duplicates, order kept.
        "enable.idempotence": True,
        "acks": settings.KAFKA_PUBLISH_ACKS,
        "retries": settings.KAFKA_PUBLISH_RETRIES,
        "retry.backoff.ms": settings.KAFKA_PUBLISH_RETRY_BACKOFF_MS,
        "linger.ms": settings.KAFKA_LINGER_MS,
        "compression.type": settings.KAFKA_COMPRESSION,
        "message.timeout.ms": int(settings.KAFKA_PUBLISH_TIMEOUT_S * 1000),
        "message.max.bytes": settings.KAFKA_MESSAGE_MAX_BYTES,
    }


@cache
def get_producer() -> Producer:
    """The process's producer, flushed at exit so nothing queued is dropped."""
    producer = Producer(producer_config())
    atexit.register(producer.flush, 10)
    return producer


def new_consumer(**overrides) -> Consumer:
    config = {
        "bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS,
        "group.id": settings.KAFKA_CONSUMER_GROUP,
        # Offsets are committed by hand, only after ClickHouse has the rows.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # One drain reads one partition: let one fetch bring a whole batch (the default 1 MB
        # per partition is ~600 spans, and the drain then waits on round trips).
        "max.partition.fetch.bytes": settings.KAFKA_FETCH_PARTITION_BYTES,
        "fetch.max.bytes": max(settings.KAFKA_FETCH_PARTITION_BYTES, 52_428_800),
        "fetch.wait.max.ms": 100,
    }
    config.update(overrides)
    return Consumer(config)
