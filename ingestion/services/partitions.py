"""Bookkeeping of the spans topic's partitions: leases, in-flight records, lag, skipping.

The in-flight record of a partition (a Redis hash: the offset range being stored, the topic
id it was read from, and how many drains failed on it) is written and cleared only by the
holder of the partition's lease: each change is one Lua script that checks the lease token
first, so a drainer that stalled and lost its lease cannot touch its successor's record.
"""

from dataclasses import dataclass
from functools import cache

from confluent_kafka import TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient
from django.conf import settings
from redis.exceptions import ResponseError

from ingestion.services.lease import Lease
from llmops.kafka import admin_client, end_offsets, new_consumer, retrying, watermarks
from llmops.redis import get_redis

# KEYS: lease, in-flight record. ARGV: lease token, then the fields.
_WRITE_IF_HELD = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[2])
redis.call('hset', KEYS[2], 'first', ARGV[2], 'last', ARGV[3], 'topic_id', ARGV[4],
           'attempts', 0)
return 1"""
_BUMP_IF_HELD = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return -1 end
return redis.call('hincrby', KEYS[2], 'attempts', 1)"""
_CLEAR_IF_HELD = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[2])
return 1"""


def lease_key(topic: str, partition: int) -> str:
    return f"drain:lease:{topic}:{partition}"


def inflight_key(topic: str, partition: int) -> str:
    return f"drain:inflight:{topic}:{partition}"


@dataclass(frozen=True)
class InFlight:
    first: int
    last: int
    topic_id: str
    attempts: int


class InFlightRecord:
    """One partition's in-flight record, changed only while `lease` is held."""

    def __init__(self, topic: str, partition: int, lease: Lease):
        self.key = inflight_key(topic, partition)
        self.lease = lease

    def read(self) -> InFlight | None:
        try:
            fields = get_redis().hgetall(self.key)
        except ResponseError:
            # A record an earlier version wrote ("first:last"): still a range to replay.
            first, last = get_redis().get(self.key).decode().split(":")
            return InFlight(int(first), int(last), "", 0)
        if not fields:
            return None
        return InFlight(int(fields[b"first"]), int(fields[b"last"]),
                        fields.get(b"topic_id", b"").decode(), int(fields.get(b"attempts", 0)))

    def write(self, first: int, last: int, topic_id: str) -> bool:
        """Record a range as in flight (attempts 0); False if the lease is no longer ours."""
        return bool(get_redis().eval(_WRITE_IF_HELD, 2, self.lease.key, self.key,
                                     self.lease.token, first, last, topic_id))

    def bump_attempts(self) -> int:
        """Count one more failed drain of the range; -1 if the lease is no longer ours."""
        return int(get_redis().eval(_BUMP_IF_HELD, 2, self.lease.key, self.key,
                                    self.lease.token))

    def clear(self) -> bool:
        return bool(get_redis().eval(_CLEAR_IF_HELD, 2, self.lease.key, self.key,
                                     self.lease.token))


@cache
def _admin() -> AdminClient:
    return admin_client()  # thread-safe; one per process, kept alive while calls are pending


def topic_id(topic: str) -> str:
    """The topic's Kafka id (a UUID, new each time a topic of that name is created)."""

    def describe() -> str:
        futures = _admin().describe_topics(TopicCollection([topic]), request_timeout=10)
        return str(futures[topic].result().topic_id)

    return retrying(describe)


@dataclass
class PartitionLag:
    partition: int
    committed: int
    end: int
    in_flight: bool

    @property
    def lag(self) -> int:
        return max(0, self.end - max(self.committed, 0))


def partition_lags(topic: str | None = None) -> list[PartitionLag]:
    """Committed offset, end offset and lag of each partition of the spans topic."""
    topic = topic or settings.KAFKA_SPANS_TOPIC
    consumer = new_consumer()
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        committed = retrying(lambda: consumer.committed(
            [TopicPartition(topic, p) for p in partitions], timeout=10))
        redis = get_redis()
        result = []
        for tp in committed:
            low, high = watermarks(consumer, topic, tp.partition)
            start = tp.offset if tp.offset >= 0 else low
            result.append(PartitionLag(tp.partition, start, high,
                                       bool(redis.exists(inflight_key(topic, tp.partition)))))
        return result
    finally:
        consumer.close()


def skip_to_end(topic: str | None = None) -> None:
    """Commit every partition at its end offset: the backlog is skipped, not stored.
    For operators discarding a backlog on purpose, and for benchmarks and tests that must
    not store what an earlier run left behind."""
    topic = topic or settings.KAFKA_SPANS_TOPIC
    consumer = new_consumer()
    try:
        ends = end_offsets(consumer, topic)
        retrying(lambda: consumer.commit(offsets=ends, asynchronous=False))
        get_redis().delete(*[inflight_key(topic, tp.partition) for tp in ends])
    finally:
        consumer.close()
