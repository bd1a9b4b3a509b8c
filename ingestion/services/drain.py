"""Draining one partition of the spans topic into ClickHouse, at least once, never doubled.

Per batch: record the offset range in flight (Redis), insert with a deduplication token
made of (topic, topic id, partition, first offset, last offset), tell the listeners the
batch is stored, park what can never be stored (acknowledged by Kafka), THEN commit the
offsets, then clear the record. A drainer that dies anywhere in between leaves the record;
the next one re-reads exactly that range, and ClickHouse drops the repeated insert by its
token. Every change to the record, and the commit, happen only while the lease is held.

Failures, by kind (llmops.clickhouse_errors): a transient one (server down or hung, disk
full, a table missing during a restore) holds the partition, retried by the next drain, and
the lag shows it; a "retryable" one that comes back on the same range is counted in the
in-flight record, and after DRAIN_MAX_BATCH_ATTEMPTS drains the batch is halved until the
rows ClickHouse still refuses are alone, and those are dead-lettered; a row refused for
good, or one that cannot be built, is dead-lettered at once. The rest of the batch flows.
"""

import gc
import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field

import msgspec
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaException,
    TopicPartition,
)
from django.conf import settings

from ingestion.schema import (
    MESSAGE_VERSION,
    SINGLE_SPAN_VERSION,
    StoredSpan,
    StoredSpanMessage,
    StoredSpansMessage,
)
from ingestion.services.batches import BatchStored, announce_batch_stored
from ingestion.services.dead_letters import DeadLetterFailed, dead_letter_all
from ingestion.services.lease import Lease
from ingestion.services.partitions import InFlightRecord, lease_key, topic_id
from ingestion.services.rows import (
    CONTENT_COLUMNS,
    KEY_COLUMNS,
    SPAN_INSERT_COLUMNS,
    RowBuilder,
    SpanEntry,
    UnbuildableSpan,
    content_rows,
)
from llmops import metrics
from llmops.clickhouse import get_client, new_client
from llmops.clickhouse_errors import is_retryable, is_transient
from llmops.kafka import new_consumer, retrying, watermarks
from llmops.retry import RetryPolicy

logger = logging.getLogger(__name__)
_decode_one = msgspec.json.Decoder(StoredSpanMessage).decode
_decode_many = msgspec.json.Decoder(StoredSpansMessage).decode
_decode_span = msgspec.json.Decoder(StoredSpan).decode
_decode_raw = msgspec.json.Decoder(tuple[int, int, int, int, list[msgspec.Raw]]).decode
_encode = msgspec.json.Encoder().encode
_encode_lines = msgspec.json.Encoder().encode_lines
# A message's version, and its span count if it has one (version 2), read off its start.
_HEAD = re.compile(rb"\[\s*(\d+)\s*,\s*\d+\s*,\s*\d+\s*,\s*(\d+)?")
# Rows go to ClickHouse as JSON arrays, one a line, that the server parses (C++): msgspec
# writes them ~20x faster than clickhouse-connect's Python serialisation of the same rows.
# Times are RFC 3339 ("...T...Z"), costs decimal strings: best_effort reads both exactly.
INSERT_FORMAT = "JSONCompactEachRow"
INSERT_SETTINGS = {"date_time_input_format": "best_effort"}
# How long one wait for a first message lasts; idleness is judged over several of them.
IDLE_POLL_S = 0.1
# How long one read of an in-flight range waits before asking again for what is missing.
REPLAY_POLL_S = 1.0
_local = threading.local()


_gc_tuned = threading.Lock()


def tune_gc() -> None:
    """Once per process: freeze what is loaded, and collect the young generation less often
    (DRAIN_GC_GEN0_THRESHOLD), so batches are not walked over and over by the collector."""
    threshold = settings.DRAIN_GC_GEN0_THRESHOLD
    if threshold and _gc_tuned.acquire(blocking=False):
        gc.freeze()
        gc.set_threshold(threshold, 20, 100)


class LeaseHeartbeat:
    """Renews a drainer's lease every third of its TTL from a thread of its own, so a batch
    that takes longer than the TTL (a large batch, a slow server) keeps its partition; the
    drainer renews between batches too, and checks the lease before each write. It stops at
    `until`, so a drainer stuck for good still loses its partition."""

    def __init__(self, lease: Lease, until: float) -> None:
        self.lease, self.until = lease, until
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True,
                                        name=f"lease-heartbeat {lease.key}")
        self._thread.start()

    def _renew(self) -> None:
        interval = self.lease.ttl_ms / 3000
        while not self._stopped.wait(interval) and time.monotonic() < self.until:
            try:
                if not self.lease.renew():
                    return  # lost: the drainer finds out at its next write
            except Exception:  # Redis unreachable: the drainer's own renew will say so
                logger.warning("lease heartbeat of %s failed", self.lease.key, exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


class DrainInterrupted(Exception):
    """The batch could not be stored now; it stays in flight for the next drainer."""


def insert_client():
    """The calling thread's client for drain inserts: a short send/receive timeout, so a
    hung insert ends (the ingest worker's thread pool ignores Celery's time limits)."""
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = new_client(
            send_receive_timeout=settings.DRAIN_INSERT_TIMEOUT_S)
    return client


@dataclass
class DrainStats:
    partition: int
    batches: int = 0
    messages: int = 0
    spans: int = 0
    dead_lettered: int = 0
    stopped: str = ""
    insert_seconds: list[float] = field(default_factory=list)


def spans_in(message) -> int:
    """How many spans a message holds (for sizing batches): 1 unless a version 2 says more."""
    head = _HEAD.match(message.value() or b"")
    return int(head.group(2)) if head and head.group(2) and head.group(1) != b"1" else 1


class OneSpan:
    """One span of a multi-span message, standing in for the message where one span is
    parked alone: a dead letter carries just this span (as a message of its own, which
    `replay_dead_letters` re-publishes as it is) and says where it came from."""

    __slots__ = ("message", "index", "_value")

    def __init__(self, message, index: int, value: bytes | StoredSpanMessage) -> None:
        # `value`: the span's message, or the span to make it from when parked (rare).
        self.message, self.index, self._value = message, index, value

    def key(self) -> bytes:
        return self.message.key()

    def value(self) -> bytes:
        one = self._value
        if isinstance(one, StoredSpanMessage):
            self._value = _encode(StoredSpansMessage(MESSAGE_VERSION, one.org_id,
                                                     one.received_at_us, 1, [one.span]))
        return self._value

    def topic(self) -> str:
        return self.message.topic()

    def partition(self) -> int:
        return self.message.partition()

    def offset(self) -> int:
        return self.message.offset()


def _one_span_value(org_id: int, received_at_us: int, span: bytes) -> bytes:
    return b"[%d,%d,%d,1,[%s]]" % (MESSAGE_VERSION, org_id, received_at_us, span)


def spans_of(message, parked: list[tuple[object, str]]) -> list[tuple[StoredSpanMessage, object]]:
    """The spans of a Kafka message, each as (one-span message, what parks it): the message
    itself when it holds one span (either version). What cannot be decoded is parked: a
    whole message when its frame is bad, else each bad span alone."""
    value = message.value() or b""
    head = _HEAD.match(value)
    version = int(head.group(1)) if head else None
    try:
        if version == SINGLE_SPAN_VERSION:
            return [(_decode_one(value), message)]
        if version != MESSAGE_VERSION:
            parked.append((message, f"unsupported message version {version}" if head
                           else "undecodable span message: not a span message"))
            return []
        decoded = _decode_many(value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        if version == SINGLE_SPAN_VERSION:
            parked.append((message, f"undecodable span message: {exc}"))
            return []
        return _spans_one_by_one(message, value, parked, exc)
    org_id, received_at_us = decoded.org_id, decoded.received_at_us
    if len(decoded.spans) == 1:
        return [(StoredSpanMessage(SINGLE_SPAN_VERSION, org_id, received_at_us,
                                   decoded.spans[0]), message)]
    spans = []
    for index, span in enumerate(decoded.spans):
        one = StoredSpanMessage(SINGLE_SPAN_VERSION, org_id, received_at_us, span)
        spans.append((one, OneSpan(message, index, one)))
    return spans


def _spans_one_by_one(message, value: bytes, parked: list, error: Exception) -> list:
    """A version 2 message some span of which does not decode: each span on its own."""
    try:
        _, org_id, received_at_us, _, raws = _decode_raw(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        parked.append((message, f"undecodable span message: {error}"))
        return []
    spans = []
    for index, raw in enumerate(raws):
        one = (OneSpan(message, index, _one_span_value(org_id, received_at_us, bytes(raw)))
               if len(raws) > 1 else message)
        try:
            span = _decode_span(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            parked.append((one, f"undecodable span message: {exc}"))
            continue
        spans.append((StoredSpanMessage(SINGLE_SPAN_VERSION, org_id, received_at_us, span),
                      one))
    return spans


@dataclass
class Batch:
    topic: str
    topic_id: str
    partition: int
    first: int
    last: int
    messages: list
    attempts: int = 0  # earlier drains of this range that failed on a repeating error

    @property
    def token(self) -> str:
        # The topic id: offsets start again at 0 when a topic is recreated, and the old
        # topic's tokens may still be in the table's deduplication window.
        return f"{self.topic}:{self.topic_id}:{self.partition}:{self.first}:{self.last}"


class PartitionDrainer:
    """Owns one partition while its lease is held; drive it with `run` or `drain_once`."""

    def __init__(self, partition: int, *, topic: str | None = None):
        self.topic = topic or settings.KAFKA_SPANS_TOPIC
        self.partition = partition
        self.lease = Lease(lease_key(self.topic, partition), settings.DRAIN_LEASE_TTL_S)
        self.inflight = InFlightRecord(self.topic, partition, self.lease)
        self.topic_id = ""
        self.consumer: Consumer | None = None
        self.next_offset = -1  # the first offset not yet stored and committed
        self.deadline = math.inf  # set by `run`: no step starts past it
        self.stats = DrainStats(partition)
        self.write_policy = RetryPolicy.from_settings(settings.CLICKHOUSE_WRITE_RETRY)

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> bool:
        """Take the lease and position the consumer; False if another drainer holds it."""
        if not self.lease.acquire():
            return False
        # Asked at each start, not cached longer: a recreated topic gets a new id.
        self.topic_id = topic_id(self.topic)
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
        """Drain until the budget is spent, the partition stays idle, or the lease is lost.
        A batch once started is finished (a batch cut short by the budget would be read and
        inserted again by every drain after it), and none starts that the budget cannot
        finish, judged by the last one's time; inserts that fail are not retried past the
        budget. Returns within the budget plus about one batch."""
        budget_s = settings.DRAIN_TASK_BUDGET_S if budget_s is None else budget_s
        tune_gc()
        self.deadline = time.monotonic() + budget_s
        heartbeat = None
        try:
            if not self.open():
                self.stats.stopped = "lease held elsewhere"
                return self.stats
            heartbeat = LeaseHeartbeat(self.lease, self.deadline + settings.DRAIN_BATCH_MAX_S)
            idle_since = time.monotonic()
            last_batch_s = 0.0
            drained = False
            while True:
                # The first batch always runs: a drain that opened makes progress.
                if drained and time.monotonic() + last_batch_s > self.deadline:
                    self.stats.stopped = "budget spent"
                    break
                if not self.lease.renew():
                    self.stats.stopped = "lease lost"
                    break
                started = time.monotonic()
                covered = self.drain_once()
                last_batch_s, drained = time.monotonic() - started, True
                # Idle only counts once caught up: a fresh consumer's first fetch can be slow.
                if covered or not self.caught_up():
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > settings.DRAIN_IDLE_EXIT_S:
                    self.stats.stopped = "idle"
                    break
        except DrainInterrupted as exc:
            self.stats.stopped = f"interrupted: {exc}"
            logger.warning("drain of partition %d interrupted: %s", self.partition, exc)
        finally:
            if heartbeat is not None:
                heartbeat.stop()
            self.close()
        return self.stats

    def _sleep_within_budget(self, seconds: float) -> None:
        if time.monotonic() + seconds > self.deadline:
            raise DrainInterrupted("budget spent retrying an insert")
        time.sleep(seconds)

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
        batch = Batch(self.topic, self.topic_id, self.partition, messages[0].offset(),
                      messages[-1].offset(), messages)
        # Recorded before the insert, so a crash after it replays exactly this range.
        if not self.inflight.write(batch.first, batch.last, self.topic_id):
            raise DrainInterrupted("lease lost before recording the batch")
        return batch

    def _replay_batch(self) -> Batch | None:
        """The range a previous drainer left in flight, read again message for message:
        exactly [first, last], nothing past it (the next batch starts at last + 1)."""
        record = self.inflight.read()
        if record is None:
            return None
        if record.topic_id and record.topic_id != self.topic_id:
            # The topic was deleted and created again: those offsets are gone with it.
            logger.warning("partition %d: dropping in-flight offsets %d-%d of a deleted topic",
                           self.partition, record.first, record.last)
            if not self.inflight.clear():
                raise DrainInterrupted("lease lost")
            return None
        first, last = record.first, record.last
        low, _ = watermarks(self.consumer, self.topic, self.partition)
        if first < low:
            # Kafka's retention deleted part of the range before any drain could store it:
            # replay what is left rather than wait for offsets that will never come back.
            logger.error("partition %d: in-flight offsets %d-%d past retention (low %d)",
                         self.partition, first, last, low)
            if last < low:
                if not self.inflight.clear():
                    raise DrainInterrupted("lease lost")
                return None
            first = low
        self.consumer.seek(TopicPartition(self.topic, self.partition, first))
        messages: list = []
        overshot = False
        # Not cut by the budget: a budget shorter than the read would replay it forever.
        deadline = time.monotonic() + settings.DRAIN_REPLAY_READ_S
        while (not messages or messages[-1].offset() < last) and time.monotonic() < deadline:
            missing = last - (messages[-1].offset() if messages else first - 1)
            for message in self._consume(missing, REPLAY_POLL_S):
                if message.offset() <= last:
                    messages.append(message)
                else:
                    overshot = True
        if overshot:
            # Read past the range (offsets with gaps): the next batch must start at last + 1.
            self.consumer.seek(TopicPartition(self.topic, self.partition, last + 1))
        if not messages or messages[-1].offset() < last:
            raise DrainInterrupted(f"could not re-read offsets {first}-{last} in time")
        logger.info("partition %d: replaying in-flight offsets %d-%d", self.partition, first, last)
        return Batch(self.topic, self.topic_id, self.partition, first, last, messages,
                     record.attempts)

    def _collect(self) -> list:
        """A batch: about DRAIN_BATCH_SIZE spans, or what came until its first message is
        DRAIN_BATCH_WAIT_MS old, so a trickle still makes few, larger inserts. Old counts
        from Kafka's timestamp, not from this read: messages that arrived while the last
        batch was inserted have waited already, and go at once with what is fetched."""
        first = self._consume(1, IDLE_POLL_S)
        if not first:
            return []
        messages = first
        spans = per_message = spans_in(first[0])
        deadline = time.monotonic() + self._wait_left(first[0])
        while spans < settings.DRAIN_BATCH_SIZE:
            # Past the deadline still take what the consumer has fetched (no waiting).
            remaining = max(0.0, deadline - time.monotonic())
            # Asked by message, sized by span: as many as the largest so far leaves room for.
            wanted = max(1, (settings.DRAIN_BATCH_SIZE - spans) // per_message)
            more = self._consume(wanted, remaining)
            if not more:
                break
            messages.extend(more)
            counts = [spans_in(message) for message in more]
            spans += sum(counts)
            per_message = max(per_message, *counts)
        return messages

    @staticmethod
    def _wait_left(message) -> float:
        """How long a batch starting with `message` may still wait: DRAIN_BATCH_WAIT_MS less
        the time since Kafka stamped it (never more than the whole wait, whatever the
        producer's clock says)."""
        wait_s = settings.DRAIN_BATCH_WAIT_MS / 1000
        kind, stamp_ms = message.timestamp()
        if kind == TIMESTAMP_NOT_AVAILABLE:
            return wait_s
        return min(wait_s, max(0.0, stamp_ms / 1000 + wait_s - time.time()))

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
        """Insert what can be stored, hand it to the listeners, park the rest (acknowledged
        by Kafka); raises DrainInterrupted when the batch must stay in flight."""
        if not self.lease.renew():
            raise DrainInterrupted("lease lost before the insert")
        rows = RowBuilder()
        parked: list[tuple[object, str]] = []
        for message in batch.messages:
            for decoded, source in spans_of(message, parked):
                try:
                    rows.add(decoded, source)
                except UnbuildableSpan as exc:
                    parked.append((source, f"span could not be built: {exc}"))
        started = time.monotonic()
        isolate = batch.attempts >= settings.DRAIN_MAX_BATCH_ATTEMPTS
        entries = self._versions_to_store(rows.entries)
        stored = self._insert_entries(entries, batch.token, parked, isolate=isolate)
        if stored:
            # After the spans: a replay finds the same previous versions, builds the same
            # tombstones, and the spans insert is dropped by its token.
            self._insert("span_keys", KEY_COLUMNS, [entry.key_row() for entry in stored],
                         batch.token + ":keys")
        self.stats.insert_seconds.append(time.monotonic() - started)
        metrics.DRAIN_INSERT_SECONDS.observe(self.stats.insert_seconds[-1])
        metrics.DRAIN_BATCH_SPANS.observe(len(stored))
        self._park(parked)
        spans = [entry.span for entry in stored]
        announce_batch_stored(BatchStored(batch.token, frozenset(s.org_id for s in spans),
                                          spans))
        self.stats.batches += 1
        self.stats.messages += len(batch.messages)
        self.stats.spans += len(spans)

    def _versions_to_store(self, entries: list[SpanEntry]) -> list[SpanEntry]:
        """The entries to store, each marked with the start of the span's previous version
        when that is on another day (a tombstone with its version goes there); a version
        older than one already on another day is left out (it is superseded).

        All versions of a span come through one partition (keyed by org and trace) and a
        partition's batches are stored one after another, so span_keys, plus the batch's
        own versions taken in version order, says where the previous version is."""
        if not entries:
            return []
        keys = {(e.span.org_id, e.span.trace_id, e.span.span_id) for e in entries}
        try:
            # The thread's reader client: the insert client's tight timeouts are for inserts.
            # The trace ids as one JSON string the server splits: the client formats one
            # string, not thousands of array elements (several µs per span otherwise).
            found = get_client().query(
                "SELECT org_id, trace_id, span_id, start_time, version FROM span_keys FINAL"
                " WHERE org_id IN {orgs:Array(UInt64)} AND trace_id IN"
                " (SELECT arrayJoin(JSONExtract({traces:String}, 'Array(String)')))",
                parameters={"orgs": sorted({k[0] for k in keys}),
                            "traces": _encode(sorted({k[1] for k in keys})).decode()},
            ).result_rows
        except Exception as exc:
            if is_transient(exc) or is_retryable(exc):
                raise DrainInterrupted(f"ClickHouse unavailable: {exc}") from exc
            raise
        previous = {(r[0], r[1], r[2]): (r[3], r[4]) for r in found}
        keep = set()
        for index, entry in sorted(enumerate(entries), key=lambda e: e[1].span.version):
            span = entry.span
            key = (span.org_id, span.trace_id, span.span_id)
            entry.moved_from = None
            if key in previous:
                start, version = previous[key]
                if start.date() != span.start_time.date():
                    if version > span.version:
                        continue  # a newer version is stored on another day
                    if version < span.version:
                        entry.moved_from = start
            if key not in previous or previous[key][1] <= span.version:
                previous[key] = (span.start_time, span.version)
            keep.add(index)
        return [entry for index, entry in enumerate(entries) if index in keep]

    def _park(self, parked: list[tuple[object, str]]) -> None:
        if not parked:
            return
        for message, reason in parked:
            logger.warning("partition %d offset %d dead-lettered: %s",
                           self.partition, message.offset(), reason)
        try:
            dead_letter_all(parked)
        except DeadLetterFailed as exc:
            # Not committed: the next drain re-reads the range and parks them again.
            raise DrainInterrupted(str(exc)) from exc
        self.stats.dead_lettered += len(parked)
        metrics.DEAD_LETTERS.inc(len(parked))

    def _insert_entries(self, entries: list[SpanEntry], token: str,
                        parked: list[tuple[object, str]], *, isolate: bool) -> list[SpanEntry]:
        """Insert the entries' content, then their spans; returns the entries stored.

        A refusal for good, or a "retryable" one seen on too many drains of this range
        (`isolate`), halves the entries until the culprit is alone, and parks it. The halves'
        tokens derive from the batch's, so a replay splits and deduplicates the same way."""
        if not entries:
            return []
        try:
            # Content first: a span never points at a body that is not stored.
            self._insert("span_content", CONTENT_COLUMNS, content_rows(entries),
                         token + ":content", retry=not isolate)
            self._insert("spans", SPAN_INSERT_COLUMNS,
                         [row for entry in entries for row in entry.span_rows()],
                         token, retry=not isolate)
            return entries
        except DrainInterrupted:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise DrainInterrupted(f"ClickHouse unavailable: {exc}") from exc
            if is_retryable(exc) and not isolate:
                attempts = self.inflight.bump_attempts()
                if attempts < 0:
                    raise DrainInterrupted("lease lost") from exc
                if attempts < settings.DRAIN_MAX_BATCH_ATTEMPTS:
                    raise DrainInterrupted(
                        f"ClickHouse refused the batch (drain {attempts} of "
                        f"{settings.DRAIN_MAX_BATCH_ATTEMPTS} on this range): {exc}") from exc
                logger.warning("partition %d: batch %s failed on %d drains, isolating its "
                               "rows: %s", self.partition, token, attempts, exc)
            if len(entries) == 1:
                parked.append((entries[0].message, f"ClickHouse refused the row: {exc}"))
                return []
            middle = len(entries) // 2
            return (self._insert_entries(entries[:middle], token + ":a", parked, isolate=True)
                    + self._insert_entries(entries[middle:], token + ":b", parked,
                                           isolate=True))

    def _insert(self, table: str, columns: list[str], rows: list, token: str, *,
                retry: bool = True) -> None:
        """One insert; retried (seed `clickhouse_write`) unless the batch is being isolated,
        where one failing try is enough to halve."""
        if not rows:
            return

        def insert() -> None:
            insert_client().raw_insert(table, columns, _encode_lines(rows), fmt=INSERT_FORMAT,
                                       settings={**INSERT_SETTINGS,
                                                 "insert_deduplication_token": token})

        if not retry:
            insert()
            return
        self.write_policy.call(insert, retryable=is_retryable, name=f"insert into {table}",
                               sleep=self._sleep_within_budget)

    def _commit(self, batch: Batch) -> None:
        """Commit past the batch and clear its record, only while the lease is ours, and
        never moving the committed offset backwards. Kafka's commit cannot join the Redis
        script, so the lease is checked (and extended by a full TTL) just before it: a
        holder that stalls longer than the TTL between the two is the one case left, and
        then the committed offset check keeps the partition from going backwards."""
        if not self.lease.renew():
            # Another drainer may own the partition now; it will replay and commit.
            raise DrainInterrupted("lease lost before commit")
        tp = TopicPartition(self.topic, self.partition)
        try:
            committed = retrying(lambda: self.consumer.committed([tp], timeout=10))[0].offset
            if committed <= batch.last:
                self.consumer.commit(
                    offsets=[TopicPartition(self.topic, self.partition, batch.last + 1)],
                    asynchronous=False,
                )
        except KafkaException as exc:
            raise DrainInterrupted(f"offset commit failed: {exc}") from exc
        if not self.inflight.clear():
            raise DrainInterrupted("lease lost before clearing the in-flight record")
        self.next_offset = batch.last + 1
        if committed > self.next_offset:
            # Someone moved the partition further (an operator's skip): follow, not undo.
            logger.warning("partition %d: committed offset %d is past batch end %d",
                           self.partition, committed, batch.last)
            self.consumer.seek(TopicPartition(self.topic, self.partition, committed))
            self.next_offset = committed
