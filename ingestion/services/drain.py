"""Draining one partition of the spans topic into ClickHouse, at least once, never doubled.

Per batch: record the offset range in flight (Redis), insert with a deduplication token
made of (topic, partition, first offset, last offset), THEN commit the offsets, then clear
the record. A drainer that dies anywhere in between leaves the record; the next one re-reads
exactly that range, and ClickHouse drops the repeated insert by its token.
"""

import logging
import time
from dataclasses import dataclass, field

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from django.conf import settings

from costs.services.reports import costs_recorded
from evaluation.services.dispatch import enqueue_for_spans
from ingestion.schema import MESSAGE_VERSION, StoredSpanMessage
from ingestion.services.lease import Lease
from ingestion.services.rows import CONTENT_COLUMNS, SPAN_COLUMNS, RowBuilder
from llmops import metrics
from llmops.clickhouse import get_client
from llmops.clickhouse_errors import is_retryable
from llmops.kafka import end_offsets, get_producer, new_consumer, retrying, watermarks
from llmops.redis import get_redis
from llmops.retry import RetryPolicy

logger = logging.getLogger(__name__)
_decode = msgspec.json.Decoder(StoredSpanMessage).decode
# How long one wait for a first message lasts; idleness is judged over several of them.
IDLE_POLL_S = 0.1


class DrainInterrupted(Exception):
    """The batch could not be stored now; it stays in flight for the next drainer."""


def lease_key(topic: str, partition: int) -> str:
    return f"drain:lease:{topic}:{partition}"


def inflight_key(topic: str, partition: int) -> str:
    return f"drain:inflight:{topic}:{partition}"


@dataclass
class DrainStats:
    partition: int
    batches: int = 0
    messages: int = 0
    spans: int = 0
    dead_lettered: int = 0
    stopped: str = ""
    insert_seconds: list[float] = field(default_factory=list)


@dataclass
class Batch:
    topic: str
    partition: int
    first: int
    last: int
    messages: list

    @property
    def token(self) -> str:
        return f"{self.topic}:{self.partition}:{self.first}:{self.last}"


def dead_letter(message, reason: str) -> None:
    """Park a message that can never be stored, with why and where it came from."""
    get_producer().produce(
        settings.KAFKA_DEAD_LETTER_TOPIC,
        key=message.key(),
        value=message.value(),
        headers={
            "reason": reason[:1000],
            "source_topic": message.topic(),
            "source_partition": str(message.partition()),
            "source_offset": str(message.offset()),
        },
    )


class PartitionDrainer:
    """Owns one partition while its lease is held; drive it with `run` or `drain_once`."""

    def __init__(self, partition: int, *, topic: str | None = None):
        self.topic = topic or settings.KAFKA_SPANS_TOPIC
        self.partition = partition
        self.lease = Lease(lease_key(self.topic, partition), settings.DRAIN_LEASE_TTL_S)
        self.consumer: Consumer | None = None
        self.next_offset = -1  # the first offset not yet stored and committed
        self.stats = DrainStats(partition)
        self.write_policy = RetryPolicy.from_settings(settings.CLICKHOUSE_WRITE_RETRY)

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> bool:
        """Take the lease and position the consumer; False if another drainer holds it."""
        if not self.lease.acquire():
            return False
        self.consumer = new_consumer()
        tp = TopicPartition(self.topic, self.partition)
        committed = retrying(lambda: self.consumer.committed([tp], timeout=10))[0].offset
        low, _ = watermarks(self.consumer, self.topic, self.partition)
        self.next_offset = committed if committed >= 0 else low
        self.consumer.assign([TopicPartition(self.topic, self.partition,
                                             committed if committed >= 0 else OFFSET_BEGINNING)])
        return True

    def caught_up(self) -> bool:
        """Nothing left to read, as far as the last fetch told (no round trip)."""
        tp = TopicPartition(self.topic, self.partition)
        _, high = self.consumer.get_watermark_offsets(tp, cached=True)
        return high >= 0 and self.next_offset >= high

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if self.lease.held:
            self.lease.release()

    def run(self, budget_s: float | None = None) -> DrainStats:
        """Drain until the budget is spent, the partition stays idle, or the lease is lost."""
        budget_s = settings.DRAIN_TASK_BUDGET_S if budget_s is None else budget_s
        if not self.open():
            self.stats.stopped = "lease held elsewhere"
            return self.stats
        try:
            deadline = time.monotonic() + budget_s
            idle_since = time.monotonic()
            while True:
                if time.monotonic() > deadline:
                    self.stats.stopped = "budget spent"
                    break
                if not self.lease.renew():
                    self.stats.stopped = "lease lost"
                    break
                # Idle only counts once caught up: a fresh consumer's first fetch can be slow.
                if self.drain_once() or not self.caught_up():
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > settings.DRAIN_IDLE_EXIT_S:
                    self.stats.stopped = "idle"
                    break
        except DrainInterrupted as exc:
            self.stats.stopped = f"interrupted: {exc}"
            logger.warning("drain of partition %d interrupted: %s", self.partition, exc)
        finally:
            self.close()
        return self.stats

    # -- one batch -------------------------------------------------------------------

    def drain_once(self) -> int:
        """Read, store and commit one batch; returns how many messages it covered."""
        batch = self._replay_batch() or self._next_batch()
        if batch is None:
            return 0
        self._store(batch)
        self._commit(batch)
        return len(batch.messages)

    def _next_batch(self) -> Batch | None:
        messages = self._collect()
        if not messages:
            return None
        batch = Batch(self.topic, self.partition, messages[0].offset(), messages[-1].offset(),
                      messages)
        # Recorded before the insert, so a crash after it replays exactly this range.
        get_redis().set(inflight_key(self.topic, self.partition), f"{batch.first}:{batch.last}")
        return batch

    def _replay_batch(self) -> Batch | None:
        """The range a previous drainer left in flight, read again message for message."""
        record = get_redis().get(inflight_key(self.topic, self.partition))
        if record is None:
            return None
        first, last = (int(part) for part in record.decode().split(":"))
        self.consumer.seek(TopicPartition(self.topic, self.partition, first))
        messages: list = []
        deadline = time.monotonic() + 30
        while (not messages or messages[-1].offset() < last) and time.monotonic() < deadline:
            messages.extend(m for m in self._consume(last - first + 1, 1.0) if m.offset() <= last)
        if not messages or messages[-1].offset() < last:
            raise DrainInterrupted(f"could not re-read offsets {first}-{last} in time")
        logger.info("partition %d: replaying in-flight offsets %d-%d", self.partition, first, last)
        return Batch(self.topic, self.partition, first, last, messages)

    def _collect(self) -> list:
        """A batch: at most DRAIN_BATCH_SIZE messages, waiting at most DRAIN_BATCH_WAIT_MS
        after the first one, so a trickle still makes few, larger inserts."""
        first = self._consume(1, IDLE_POLL_S)
        if not first:
            return []
        messages = first
        deadline = time.monotonic() + settings.DRAIN_BATCH_WAIT_MS / 1000
        while len(messages) < settings.DRAIN_BATCH_SIZE:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = self._consume(settings.DRAIN_BATCH_SIZE - len(messages), remaining)
            if not more:
                break
            messages.extend(more)
        return messages

    def _consume(self, count: int, wait_s: float) -> list:
        messages = []
        for message in self.consumer.consume(num_messages=count, timeout=wait_s):
            if message.error() is not None:
                if message.error().fatal():
                    raise KafkaException(message.error())
                logger.warning("partition %d: %s", self.partition, message.error())
                continue
            messages.append(message)
        return messages

    def _store(self, batch: Batch) -> None:
        rows = RowBuilder()
        for message in batch.messages:
            try:
                decoded = _decode(message.value())
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._dead_letter(message, f"undecodable span message: {exc}")
                continue
            if decoded.v != MESSAGE_VERSION:
                self._dead_letter(message, f"unsupported message version {decoded.v}")
                continue
            rows.add(decoded, message)
        if self.stats.dead_lettered:
            get_producer().flush(settings.KAFKA_PUBLISH_TIMEOUT_S)
        started = time.monotonic()
        # Content first: a span never points at a body that is not stored.
        self._insert("span_content", CONTENT_COLUMNS, rows.content_rows, batch.token + ":content")
        self._insert_spans(rows.spans, rows.messages, batch.token)
        costs_recorded(org_ids=rows.org_ids)
        self.stats.insert_seconds.append(time.monotonic() - started)
        metrics.DRAIN_INSERT_SECONDS.observe(self.stats.insert_seconds[-1])
        metrics.DRAIN_BATCH_SPANS.observe(len(rows.spans))
        self.stats.batches += 1
        self.stats.messages += len(batch.messages)
        self.stats.spans += len(rows.spans)
        # Never raises: evaluation trouble does not hold up the drain (see its docstring).
        enqueue_for_spans(rows.spans, batch_token=batch.token)

    def _dead_letter(self, message, reason: str) -> None:
        logger.warning("partition %d offset %d dead-lettered: %s",
                       self.partition, message.offset(), reason)
        dead_letter(message, reason)
        self.stats.dead_lettered += 1
        metrics.DEAD_LETTERS.inc()

    def _insert(self, table: str, columns: list[str], rows: list[list], token: str) -> None:
        if not rows:
            return
        client = get_client()

        def insert() -> None:
            client.insert(table, rows, column_names=columns,
                          settings={"insert_deduplication_token": token})

        try:
            self.write_policy.call(insert, retryable=is_retryable, name=f"insert into {table}")
        except Exception as exc:
            if is_retryable(exc):
                raise DrainInterrupted(f"ClickHouse unavailable: {exc}") from exc
            raise

    def _insert_spans(self, rows: list[list], messages: list, token: str) -> None:
        """Insert; if ClickHouse refuses the rows for good, halve until the culprit is alone
        and dead-letter it, so one bad row never blocks its partition. The halves' tokens
        are derived from the batch's, so a replay splits and deduplicates the same way."""
        try:
            self._insert("spans", SPAN_COLUMNS, rows, token)
        except DrainInterrupted:
            raise
        except Exception as exc:
            if len(rows) == 1:
                self._dead_letter(messages[0], f"ClickHouse refused the row: {exc}")
                get_producer().flush(settings.KAFKA_PUBLISH_TIMEOUT_S)
                self.stats.spans -= 1
                return
            middle = len(rows) // 2
            self._insert_spans(rows[:middle], messages[:middle], token + ":a")
            self._insert_spans(rows[middle:], messages[middle:], token + ":b")

    def _commit(self, batch: Batch) -> None:
        if not self.lease.renew():
            # Another drainer may own the partition now; it will replay and commit.
            raise DrainInterrupted("lease lost before commit")
        try:
            self.consumer.commit(
                offsets=[TopicPartition(self.topic, self.partition, batch.last + 1)],
                asynchronous=False,
            )
        except KafkaException as exc:
            raise DrainInterrupted(f"offset commit failed: {exc}") from exc
        get_redis().delete(inflight_key(self.topic, self.partition))
        self.next_offset = batch.last + 1


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
