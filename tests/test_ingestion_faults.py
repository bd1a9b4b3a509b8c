"""Faults: drainers killed mid-batch, ClickHouse down, poison messages. Nothing lost,
nothing doubled: the row count (without FINAL) equals the unique spans sent."""

import signal
import subprocess
import sys
import uuid

import msgspec
import pytest
from django.conf import settings

from ingestion.schema import SINGLE_SPAN_VERSION, SpanMessage, SpansMessage, validate_span
from ingestion.services.drain import PartitionDrainer, spans_of
from ingestion.services.partitions import inflight_key, partition_lags
from ingestion.services.rows import RowBuilder
from llmops.kafka import get_producer
from llmops.redis import get_redis
from tests.ingest_helpers import (
    client_for,
    count_rows,
    dead_letter_ends,
    dead_letters_since,
    drain_everything,
    make_span,
    new_org,
    post_spans,
    stored_spans,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# A real drainer in its own process, made to die by SIGKILL at a chosen point.
DRAINER = """
import os, signal, sys
import django
django.setup()
from ingestion.services import drain, partitions

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

point = sys.argv[1]
if point == "after-insert":
    drain.PartitionDrainer._commit = die
elif point == "before-insert":
    drain.PartitionDrainer._insert_entries = die
for lag in partitions.partition_lags():
    if lag.lag:
        drain.PartitionDrainer(lag.partition).run(budget_s=30)
"""


def run_doomed_drainer(point: str, subprocess_env: dict) -> subprocess.CompletedProcess:
    # The test database (drains read prices from it); short leases so the partition passes
    # on quickly after the death.
    env = {**subprocess_env, "DRAIN_LEASE_TTL_S": "2"}
    return subprocess.run([sys.executable, "-c", DRAINER, point], cwd=settings.BASE_DIR,
                          env=env, capture_output=True, text=True, timeout=120)


def send(key: str, traces: int, spans_per_trace: int) -> int:
    client = client_for(key)
    spans = [make_span(f"f-{uuid.uuid4().hex[:8]}", i) for _ in range(traces)
             for i in range(spans_per_trace)]
    for start in range(0, len(spans), 500):
        response = post_spans(client, spans[start:start + 500])
        assert response.status_code == 202, response.content
    return len(spans)


def in_flight_partitions() -> list[int]:
    return [lag.partition for lag in partition_lags() if lag.in_flight]


def test_drainer_killed_after_insert_before_commit(subprocess_env):
    drain_everything()
    org, key = new_org()
    sent = send(key, traces=20, spans_per_trace=50)

    result = run_doomed_drainer("after-insert", subprocess_env)
    assert result.returncode == -signal.SIGKILL, result.stderr
    # The batch is in ClickHouse, its offsets are not committed: the range is in flight.
    (partition,) = in_flight_partitions()
    assert 0 < count_rows(org.id) <= sent

    drain_everything()
    assert count_rows(org.id) == sent  # the replay was deduplicated by its token
    assert count_rows(org.id, final=True) == sent
    assert not get_redis().exists(inflight_key(settings.KAFKA_SPANS_TOPIC, partition))
    assert all(lag.lag == 0 for lag in partition_lags())


def test_drainer_killed_before_insert(subprocess_env):
    drain_everything()
    org, key = new_org()
    sent = send(key, traces=20, spans_per_trace=50)

    result = run_doomed_drainer("before-insert", subprocess_env)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert len(in_flight_partitions()) == 1
    assert count_rows(org.id) == 0

    drain_everything()
    assert count_rows(org.id) == sent
    assert count_rows(org.id, final=True) == sent


def services(action: str, name: str) -> None:
    subprocess.run([sys.executable, "scripts/services.py", action, name],
                   cwd=settings.BASE_DIR, check=True, timeout=120)


def test_clickhouse_down_while_spans_keep_arriving():
    drain_everything()
    org, key = new_org()
    services("down", "clickhouse")
    try:
        sent = send(key, traces=10, spans_per_trace=30)  # the API keeps accepting into Kafka
        stats = [PartitionDrainer(lag.partition).run(budget_s=5)
                 for lag in partition_lags() if lag.lag]
        assert stats and all(s.stopped.startswith("interrupted: ClickHouse unavailable")
                             for s in stats), [s.stopped for s in stats]
        assert in_flight_partitions()
        sent += send(key, traces=10, spans_per_trace=30)
    finally:
        services("up", "clickhouse")
    drain_everything()
    assert count_rows(org.id) == sent
    assert count_rows(org.id, final=True) == sent


def test_undecodable_message_goes_to_dead_letters_and_the_partition_goes_on():
    drain_everything()
    org, key = new_org()
    starts = dead_letter_ends()
    marker = uuid.uuid4().hex
    producer = get_producer()
    for partition in range(settings.KAFKA_SPANS_PARTITIONS):
        producer.produce(settings.KAFKA_SPANS_TOPIC, value=f"garbage {marker}".encode(),
                         key=b"bad", partition=partition)
    producer.flush(10)
    sent = send(key, traces=12, spans_per_trace=10)

    drain_everything()
    assert count_rows(org.id) == sent

    parked = [m for m in dead_letters_since(starts) if marker.encode() in m.value()]
    assert len(parked) == settings.KAFKA_SPANS_PARTITIONS
    headers = dict(parked[0].headers())
    assert headers["reason"].startswith(b"undecodable span message")
    assert headers["source_topic"] == settings.KAFKA_SPANS_TOPIC.encode()
    assert int(headers["source_offset"]) >= 0


def test_a_message_older_checks_let_through_is_dead_lettered_and_the_rest_stored():
    """A message that today's schema refuses (a count past UInt64, as an older producer
    without today's API checks could have sent) is parked; its neighbours are stored."""
    drain_everything()
    org, _ = new_org()
    starts = dead_letter_ends()
    marker = uuid.uuid4().hex[:8]
    producer = get_producer()
    encode = msgspec.json.Encoder().encode
    for index in range(50):
        span, errors, _ = validate_span(make_span(f"poison-{marker}", index))
        assert not errors
        if index == 17:
            span.usage.input_tokens = 2**70
        message = SpanMessage(SINGLE_SPAN_VERSION, org.id, 1_700_000_000_000_000, span)
        producer.produce(settings.KAFKA_SPANS_TOPIC, value=encode(message),
                         key=f"{org.id}:poison-{marker}".encode())
    producer.flush(10)
    drain_everything()
    stored = {row["span_id"] for row in stored_spans(org.id)}
    assert len(stored) == 49 and f"poison-{marker}-s17" not in stored
    assert count_rows(org.id) == 49
    (parked,) = [m for m in dead_letters_since(starts) if marker.encode() in m.value()]
    assert dict(parked.headers())["reason"].startswith(b"undecodable span message")


def test_a_row_clickhouse_refuses_is_isolated_by_halving_and_dead_lettered():
    """The insert path's own guard: when ClickHouse (or the client) refuses a batch for
    good, the batch is halved until the bad row is alone; only that row is parked."""
    drain_everything()
    org, key = new_org()
    assert post_spans(client_for(key), [make_span("halve", i) for i in range(10)]).status_code \
        == 202
    (lag,) = [lag for lag in partition_lags() if lag.lag]
    drainer = PartitionDrainer(lag.partition)
    assert drainer.open()
    try:
        batch = drainer._next_batch()
        # One message: the request's spans of one trace travel together.
        assert batch is not None and len(batch.messages) == 1
        rows, undecodable = RowBuilder(), []
        for decoded, source in spans_of(batch.messages[0], undecodable):
            rows.add(decoded, source)
        assert len(rows.entries) == 10 and not undecodable
        bad = rows.entries[7]
        bad.span = msgspec.structs.replace(bad.span, input_tokens="not a number")
        starts = dead_letter_ends()
        parked = []
        drainer._insert_entries(rows.entries, batch.token, parked, isolate=False)
        drainer._park(parked)
        drainer._commit(batch)
    finally:
        drainer.close()
    assert count_rows(org.id) == 9
    (parked,) = [m for m in dead_letters_since(starts) if m.value() == bad.message.value()]
    headers = dict(parked.headers())
    assert headers["reason"].startswith(b"ClickHouse refused the row")
    # The dead letter holds that span alone, and says where it was in its message.
    alone = msgspec.json.decode(parked.value(), type=SpansMessage)
    assert [span.span_id for span in alone.spans] == ["halve-s7"] and alone.count == 1
    assert headers["source_span"] == b"7"
    assert int(headers["source_offset"]) == batch.first
