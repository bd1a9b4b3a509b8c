"""The drain's promises (issue 10): replays read exactly their range, no batch stalls a
partition, a row that cannot be built is parked, dead letters are acknowledged before the
commit, tokens survive a recreated topic, only the lease holder writes, a hung insert ends.

Messages are produced straight to Kafka (as an older API, or a bug, could have sent them),
and everything is checked where a user would look: rows in ClickHouse, offsets in Kafka,
the dead-letter topic."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from ingestion.schema import SINGLE_SPAN_VERSION, SpanMessage, validate_span
from ingestion.services import drain
from ingestion.services.dead_letters import dead_letter, dead_letter_count
from ingestion.services.drain import PartitionDrainer
from ingestion.services.lease import Lease
from ingestion.services.partitions import (
    InFlightRecord,
    inflight_key,
    lease_key,
    partition_lags,
    skip_to_end,
    topic_id,
)
from llmops.kafka import admin_client, get_producer, new_consumer, retrying
from llmops.redis import get_redis
from tests.ingest_helpers import (
    count_rows,
    dead_letter_ends,
    dead_letters_since,
    drain_everything,
    make_span,
    new_org,
    stored_spans,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
_encode = msgspec.json.Encoder().encode


def span_message(org_id: int, trace_id: str, index: int, *, start: datetime | None = None,
                 **changes) -> bytes:
    """A span message as the API wrote it before MESSAGE_VERSION 2 (one span each: what an
    upgrade finds in Kafka, still drained), for a span started `start` (default: now)."""
    start = start or datetime.now(UTC) - timedelta(minutes=5)
    fields = make_span(trace_id, index)
    fields["start_time"] = (start + timedelta(seconds=index)).isoformat()
    fields["end_time"] = (start + timedelta(seconds=index, milliseconds=300)).isoformat()
    span, errors, _ = validate_span(fields)
    assert not errors, errors
    for name, value in changes.items():  # past the API's checks, as a bug could send them
        setattr(span, name, value)
    return _encode(SpanMessage(SINGLE_SPAN_VERSION, org_id, int(time.time() * 1e6), span))


def produce(values: list[bytes], *, partition: int, topic: str | None = None,
            producer: Producer | None = None) -> None:
    producer = producer or get_producer()
    for value in values:
        producer.produce(topic or settings.KAFKA_SPANS_TOPIC, value=value, partition=partition)
    assert producer.flush(30) == 0


def committed(partition: int, topic: str | None = None) -> int:
    topic = topic or settings.KAFKA_SPANS_TOPIC
    consumer = new_consumer()
    try:
        return retrying(lambda: consumer.committed([TopicPartition(topic, partition)],
                                                   timeout=10))[0].offset
    finally:
        consumer.close()


def in_thread(function, *args):
    """Run in a fresh thread, as the ingest worker does: fresh thread-local clients."""
    def call():
        try:
            return function(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


# -- 1. a replay reads exactly its range ------------------------------------------------


def test_a_replay_after_a_partial_read_stops_at_last_and_the_next_batch_starts_after(
        monkeypatch):
    drain_everything()
    org, _ = new_org()
    partition = 3
    start = committed(partition)
    # One message per record batch, one record batch per fetch, and each fetch waiting for
    # bytes that never come: about 10 messages a second, so the range takes several reads.
    producer = Producer({"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS,
                         "linger.ms": 0, "batch.num.messages": 1})
    total = 60
    produce([span_message(org.id, f"replay-{i // 10}", i % 10) for i in range(total)],
            partition=partition, producer=producer)
    monkeypatch.setattr(drain, "new_consumer", lambda **overrides: new_consumer(**{
        "max.partition.fetch.bytes": 1024, "fetch.min.bytes": 10_000_000, **overrides}))
    first, last = start, start + total // 2 - 1
    # A previous drainer recorded this range in flight and died before its insert.
    previous = Lease(lease_key(settings.KAFKA_SPANS_TOPIC, partition), 30)
    assert previous.acquire()
    InFlightRecord(settings.KAFKA_SPANS_TOPIC, partition, previous).write(
        first, last, topic_id(settings.KAFKA_SPANS_TOPIC))
    previous.release()

    drainer = PartitionDrainer(partition)
    assert drainer.open()
    try:
        assert drainer.drain_once() == last - first + 1
        assert committed(partition) == last + 1
        assert not get_redis().exists(inflight_key(settings.KAFKA_SPANS_TOPIC, partition))
        # The same drainer goes on from last + 1: nothing past the range was dropped.
        deadline = time.monotonic() + 30
        while committed(partition) < start + total and time.monotonic() < deadline:
            drainer.drain_once()
    finally:
        drainer.close()
    assert committed(partition) == start + total
    assert count_rows(org.id) == total


# -- 2. no batch stalls a partition ----------------------------------------------------


def drain_with_a_repeating_insert_error(partition: int):
    # A real ClickHouse refusal, "retryable" by its code (TIMEOUT_EXCEEDED), that comes back
    # on every try: this thread's inserts may run for a microsecond only.
    drain.insert_client().set_client_setting("max_execution_time", "0.000001")
    return PartitionDrainer(partition).run(budget_s=15)


def test_a_batch_error_that_repeats_is_retried_a_bounded_number_of_times_then_isolated(
        settings):
    drain_everything()
    settings.DRAIN_MAX_BATCH_ATTEMPTS = 2
    settings.CLICKHOUSE_WRITE_RETRY = {**settings.CLICKHOUSE_WRITE_RETRY, "max_attempts": 2}
    stuck, other = new_org(), new_org()
    partition = 5
    test_started = datetime.now(UTC).isoformat()
    before = committed(partition)
    marker = uuid.uuid4().hex[:8]
    produce([span_message(stuck[0].id, f"stuck-{marker}", i) for i in range(6)],
            partition=partition)
    starts = dead_letter_ends()

    first = in_thread(drain_with_a_repeating_insert_error, partition)
    assert first.stopped.startswith("interrupted: ClickHouse refused the batch (drain 1 of 2"), \
        first.stopped
    assert get_redis().hget(inflight_key(settings.KAFKA_SPANS_TOPIC, partition),
                            "attempts") == b"1"
    assert committed(partition) == before

    # The last allowed drain: the batch is halved down to single rows; ClickHouse refuses
    # each of them too, so each is parked with the reason, and the partition moves on.
    second = in_thread(drain_with_a_repeating_insert_error, partition)
    assert second.stopped == "idle", second.stopped
    assert second.dead_lettered == 6
    assert committed(partition) == before + 6
    assert not get_redis().exists(inflight_key(settings.KAFKA_SPANS_TOPIC, partition))
    parked = [m for m in dead_letters_since(starts) if marker.encode() in m.value()]
    assert len(parked) == 6
    reason = dict(parked[0].headers())["reason"].decode()
    assert reason.startswith("ClickHouse refused the row") and "159" in reason, reason

    # Other orgs on the partition flow; once the cause is gone, the parked rows come back.
    produce([span_message(other[0].id, "other", i) for i in range(20)], partition=partition)
    drain_everything()
    assert count_rows(other[0].id) == 20
    call_command("replay_dead_letters", "--reason", "Code: 159", "--since", test_started)
    drain_everything()
    assert count_rows(stuck[0].id) == 6


def services(action: str, name: str) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "scripts/services.py", action, name],
                   cwd=settings.BASE_DIR, check=True, timeout=120)


def test_clickhouse_down_holds_the_partition_and_never_dead_letters(settings):
    drain_everything()
    settings.DRAIN_MAX_BATCH_ATTEMPTS = 1
    settings.CLICKHOUSE_WRITE_RETRY = {**settings.CLICKHOUSE_WRITE_RETRY, "max_attempts": 2}
    org, _ = new_org()
    partition = 7
    produce([span_message(org.id, "down", i) for i in range(30)], partition=partition)
    starts = dead_letter_ends()
    services("down", "clickhouse")
    try:
        for _ in range(3):  # more drains than DRAIN_MAX_BATCH_ATTEMPTS
            stats = in_thread(lambda: PartitionDrainer(partition).run(budget_s=5))
            assert stats.stopped.startswith("interrupted: ClickHouse unavailable"), stats.stopped
            (lag,) = [lag for lag in partition_lags() if lag.partition == partition]
            assert lag.in_flight and lag.lag == 30  # the lag shows the held partition
    finally:
        services("up", "clickhouse")
    assert not dead_letters_since(starts)
    drain_everything()
    assert count_rows(org.id) == 30


def test_a_table_missing_during_a_restore_holds_the_partition_and_never_dead_letters(
        settings):
    """UNKNOWN_TABLE is the server's state, not the rows': retried, never parked."""
    from llmops.clickhouse import get_client

    drain_everything()
    settings.DRAIN_MAX_BATCH_ATTEMPTS = 1
    settings.CLICKHOUSE_WRITE_RETRY = {**settings.CLICKHOUSE_WRITE_RETRY, "max_attempts": 1}
    org, _ = new_org()
    partition = 11
    produce([span_message(org.id, "restoring", i) for i in range(10)], partition=partition)
    starts = dead_letter_ends()
    client = get_client()
    client.command("RENAME TABLE span_content TO span_content_restoring")
    try:
        for _ in range(2):
            stats = in_thread(lambda: PartitionDrainer(partition).run(budget_s=5))
            assert stats.stopped.startswith("interrupted: ClickHouse unavailable"), stats.stopped
            assert stats.dead_lettered == 0
    finally:
        client.command("RENAME TABLE span_content_restoring TO span_content")
    assert not dead_letters_since(starts)
    drain_everything()
    assert count_rows(org.id) == 10


# -- 4. a row the drain cannot build is parked, the rest flows ---------------------------


def test_a_span_the_drain_cannot_build_is_dead_lettered_and_the_batch_flows():
    drain_everything()
    org, _ = new_org()
    starts = dead_letter_ends()
    marker = uuid.uuid4().hex[:8]
    values = [span_message(org.id, f"cost-{marker}", i) for i in range(20)]
    # A cost Decimal cannot quantize (provided_cost raises InvalidOperation), and one past
    # the Decimal64(12) range of the cost column (about $9.2M).
    values[4] = span_message(org.id, f"cost-{marker}", 4, cost=1e300)
    values[11] = span_message(org.id, f"cost-{marker}", 11, cost=2e7)
    produce(values, partition=2)

    drain_everything()
    stored = {row["span_id"] for row in stored_spans(org.id)}
    assert len(stored) == 18 and not {f"cost-{marker}-s4", f"cost-{marker}-s11"} & stored
    parked = [m for m in dead_letters_since(starts) if marker.encode() in m.value()]
    assert len(parked) == 2
    reasons = sorted(dict(m.headers())["reason"].decode() for m in parked)
    assert all(reason.startswith("span could not be built") for reason in reasons), reasons
    assert any("InvalidOperation" in reason for reason in reasons)
    assert any("outside the stored range" in reason for reason in reasons)


# -- 6. dead letters acknowledged before the commit; replayed once ------------------------


def test_a_dead_letter_kafka_does_not_acknowledge_keeps_the_batch_in_flight(settings):
    drain_everything()
    org, _ = new_org()
    partition = 4
    before = committed(partition)
    produce([b"garbage " + uuid.uuid4().hex.encode()]
            + [span_message(org.id, "dl", i) for i in range(5)], partition=partition)
    real_topic = settings.KAFKA_DEAD_LETTER_TOPIC
    settings.KAFKA_DEAD_LETTER_TOPIC = f"llmops.test.missing-{uuid.uuid4().hex[:8]}"

    stats = in_thread(lambda: PartitionDrainer(partition).run(budget_s=30))
    assert stats.stopped.startswith("interrupted: dead letters"), stats.stopped
    assert committed(partition) == before  # not committed past an unparked message
    assert get_redis().exists(inflight_key(settings.KAFKA_SPANS_TOPIC, partition))

    settings.KAFKA_DEAD_LETTER_TOPIC = real_topic
    drain_everything()
    assert committed(partition) == before + 6
    assert count_rows(org.id) == 5


def test_replay_dead_letters_republishes_parked_spans_once(capsys):
    drain_everything()
    org, _ = new_org()
    marker = uuid.uuid4().hex[:8]
    produce([span_message(org.id, f"parked-{marker}", i) for i in range(3)], partition=6)
    # The drain parked them (say, for a cause since fixed): read back, park, skip.
    consumer = new_consumer(**{"group.id": f"reader-{uuid.uuid4().hex}"})
    end = consumer.get_watermark_offsets(TopicPartition(settings.KAFKA_SPANS_TOPIC, 6),
                                         timeout=10)[1]
    consumer.assign([TopicPartition(settings.KAFKA_SPANS_TOPIC, 6, end - 3)])
    messages = [m for m in consumer.consume(3, timeout=10) if not m.error()]
    consumer.close()
    assert len(messages) == 3
    for message in messages:
        dead_letter(message, f"test cause {marker}")
    skip_to_end()
    assert dead_letter_count().not_replayed >= 3
    call_command("ingestion_lag")
    assert "dead letters:" in capsys.readouterr().out

    call_command("replay_dead_letters", "--reason", marker, "--dry-run")
    assert "would re-publish 3" in capsys.readouterr().out
    drain_everything()
    assert count_rows(org.id) == 0

    call_command("replay_dead_letters", "--reason", marker, "--since", "1h")
    assert "re-published 3" in capsys.readouterr().out
    drain_everything()
    assert count_rows(org.id) == 3

    call_command("replay_dead_letters", "--reason", marker)
    assert "re-published 0" in capsys.readouterr().out
    drain_everything()
    assert count_rows(org.id) == 3


# -- 7. tokens unique across topic lifetimes ---------------------------------------------


def create_topic(name: str) -> None:
    admin = admin_client()
    for future in admin.create_topics([NewTopic(name, num_partitions=1,
                                                replication_factor=1)]).values():
        future.result()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=10).topics
        if name in topics and all(p.leader >= 0 for p in topics[name].partitions.values()):
            return
        time.sleep(0.2)


def delete_topic(name: str) -> None:
    admin = admin_client()
    for future in admin.delete_topics([name]).values():
        future.result()
    deadline = time.monotonic() + 30
    while name in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.2)


def test_a_recreated_topic_does_not_collide_with_the_old_topics_tokens():
    name = f"llmops.test.recreated-{uuid.uuid4().hex[:8]}"
    first_org, _ = new_org()
    second_org, _ = new_org()
    create_topic(name)
    try:
        produce([span_message(first_org.id, "old", i) for i in range(5)], partition=0,
                topic=name)
        in_thread(lambda: PartitionDrainer(0, topic=name).run(budget_s=10))
        assert count_rows(first_org.id) == 5
        old_id = topic_id(name)

        delete_topic(name)
        create_topic(name)
        assert topic_id(name) != old_id
        # The same offsets again, other spans: a token without the topic id would match
        # the old batch's and ClickHouse would drop this insert as a repeat.
        produce([span_message(second_org.id, "new", i) for i in range(5)], partition=0,
                topic=name)
        in_thread(lambda: PartitionDrainer(0, topic=name).run(budget_s=10))
        assert count_rows(second_org.id) == 5
    finally:
        delete_topic(name)


# -- 8. only the lease holder writes -----------------------------------------------------


def test_a_drainer_that_lost_its_lease_writes_and_commits_nothing():
    drain_everything()
    org, _ = new_org()
    partition = 8
    before = committed(partition)
    produce([span_message(org.id, "lease", i) for i in range(10)], partition=partition)
    stalled = PartitionDrainer(partition)
    assert stalled.open()
    key = inflight_key(settings.KAFKA_SPANS_TOPIC, partition)
    try:
        # The stalled drainer's lease expires; another drainer takes the partition.
        get_redis().delete(lease_key(settings.KAFKA_SPANS_TOPIC, partition))
        successor = Lease(lease_key(settings.KAFKA_SPANS_TOPIC, partition), 30)
        assert successor.acquire()

        with pytest.raises(drain.DrainInterrupted):
            stalled.drain_once()  # reads a batch, may not record it
        assert not get_redis().exists(key)
        assert committed(partition) == before

        # The successor records its batch; the stalled drainer can neither change nor
        # clear that record, nor commit.
        record = InFlightRecord(settings.KAFKA_SPANS_TOPIC, partition, successor)
        assert record.write(before, before + 9, topic_id(settings.KAFKA_SPANS_TOPIC))
        assert not stalled.inflight.write(before, before + 3, "x")
        assert not stalled.inflight.clear()
        assert stalled.inflight.bump_attempts() == -1
        batch = drain.Batch(stalled.topic, stalled.topic_id, partition, before, before + 9, [])
        with pytest.raises(drain.DrainInterrupted):
            stalled._commit(batch)
    finally:
        stalled.close()
    assert record.read().last == before + 9  # the successor's record, untouched
    assert committed(partition) == before
    successor.release()
    drain_everything()
    assert count_rows(org.id) == 10


def test_the_committed_offset_never_moves_backwards(settings):
    drain_everything()
    settings.DRAIN_BATCH_SIZE = 10
    org, _ = new_org()
    partition = 9
    before = committed(partition)
    produce([span_message(org.id, "back", i) for i in range(20)], partition=partition)
    drainer = PartitionDrainer(partition)
    assert drainer.open()
    try:
        batch = drainer._next_batch()
        assert (batch.first, batch.last) == (before, before + 9)
        skip_to_end()  # an operator skips the backlog meanwhile
        drainer._store(batch)
        drainer._commit(batch)
    finally:
        drainer.close()
    assert committed(partition) == before + 20


# -- 9. a hung insert ends, within the drain's budget -------------------------------------


def test_a_hung_clickhouse_ends_the_drain_within_its_budget(settings, black_hole):
    drain_everything()
    org, _ = new_org()
    partition = 10
    produce([span_message(org.id, "hung", i) for i in range(10)], partition=partition)
    real_url = settings.CLICKHOUSE_URL
    settings.CLICKHOUSE_URL = f"http://default:@127.0.0.1:{black_hole}/llmops_test"
    settings.CLICKHOUSE_QUERY_TIMEOUT_S = 5
    settings.DRAIN_INSERT_TIMEOUT_S = 1.0
    budget = 3.0

    started = time.monotonic()
    stats = in_thread(lambda: PartitionDrainer(partition).run(budget_s=budget))
    took = time.monotonic() - started
    assert took < budget + settings.DRAIN_INSERT_TIMEOUT_S + 2, took
    assert stats.stopped.startswith("interrupted"), stats.stopped
    assert get_redis().exists(inflight_key(settings.KAFKA_SPANS_TOPIC, partition))


    settings.CLICKHOUSE_URL = real_url
    drain_everything()
    assert count_rows(org.id) == 10
