"""Spans travel on Kafka by key (org and trace): one message per key of a request
(MESSAGE_VERSION 2), within Kafka's message limit. The drain reads both that and the old
one-span format, and a span that cannot be stored is parked alone, its neighbours stored."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from confluent_kafka import TopicPartition
from django.conf import settings
from django.core.management import call_command

from ingestion.schema import (
    MESSAGE_VERSION,
    SINGLE_SPAN_VERSION,
    SpanIn,
    SpanMessage,
    SpansMessage,
    validate_span,
)
from ingestion.services.accept import spans_messages
from llmops.kafka import end_offsets, get_producer, new_consumer
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

pytestmark = pytest.mark.django_db
_encode = msgspec.json.Encoder().encode


def spans_topic_ends() -> dict[int, int]:
    consumer = new_consumer(**{"group.id": f"reader-{uuid.uuid4().hex}"})
    try:
        return {tp.partition: tp.offset
                for tp in end_offsets(consumer, settings.KAFKA_SPANS_TOPIC)}
    finally:
        consumer.close()


def messages_since(starts: dict[int, int]) -> list:
    consumer = new_consumer(**{"group.id": f"reader-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(settings.KAFKA_SPANS_TOPIC, partition, offset)
                     for partition, offset in starts.items()])
    ends = spans_topic_ends()
    wanted = sum(ends[p] - starts[p] for p in starts)
    messages: list = []
    deadline = time.monotonic() + 10
    while len(messages) < wanted and time.monotonic() < deadline:
        messages += [m for m in consumer.consume(wanted - len(messages), timeout=1)
                     if not m.error()]
    consumer.close()
    return messages


def span_json(org_id: int, trace_id: str, index: int, **changes) -> bytes:
    """A span as it travels in a message, changed past the API's checks (as a bug or an
    older API could have sent it)."""
    fields = make_span(trace_id, index)
    start = datetime.now(UTC) - timedelta(minutes=5, seconds=-index)
    fields["start_time"], fields["end_time"] = start.isoformat(), None
    span, errors, _ = validate_span(fields)
    assert not errors, errors
    for name, value in changes.items():
        setattr(span, name, value)
    return _encode(span)


def test_a_request_travels_as_one_message_per_trace_and_is_stored_whole():
    drain_everything()
    org, key = new_org()
    marker = uuid.uuid4().hex[:8]
    traces = [f"msg-{marker}-{n}" for n in range(3)]
    spans = [make_span(trace, i) for i in range(10) for trace in traces]  # interleaved
    spans.append({"trace_id": traces[0]})  # refused: stays out of every message
    starts = spans_topic_ends()
    response = post_spans(client_for(key), spans)
    assert response.status_code == 207, response.content
    assert response.json()["accepted"] == 30

    messages = messages_since(starts)
    assert len(messages) == 3
    decoded = {m.key(): msgspec.json.decode(m.value(), type=SpansMessage) for m in messages}
    assert set(decoded) == {f"{org.id}:{trace}".encode() for trace in traces}
    for trace in traces:
        message = decoded[f"{org.id}:{trace}".encode()]
        assert (message.v, message.org_id, message.count) == (MESSAGE_VERSION, org.id, 10)
        assert [s.span_id for s in message.spans] == [f"{trace}-s{i}" for i in range(10)]

    drain_everything()
    assert count_rows(org.id) == 30
    stored = stored_spans(org.id)
    assert {row["span_id"] for row in stored} == {f"{t}-s{i}" for t in traces for i in range(10)}
    assert all(row["input_content"].startswith('[{"role"') for row in stored)


def test_a_key_with_more_spans_than_a_message_holds_is_split_within_the_limit(settings):
    settings.KAFKA_MESSAGE_MAX_BYTES = 8_000  # about six of these spans a message
    drain_everything()
    org, key = new_org()
    trace = f"split-{uuid.uuid4().hex[:8]}"
    starts = spans_topic_ends()
    response = post_spans(client_for(key), [make_span(trace, i) for i in range(40)])
    assert response.status_code == 202, response.content

    messages = messages_since(starts)
    assert len(messages) > 4
    assert all(len(m.key()) + len(m.value()) <= 8_000 for m in messages)
    decoded = [msgspec.json.decode(m.value(), type=SpansMessage) for m in messages]
    assert all(message.count == len(message.spans) for message in decoded)
    assert [s.span_id for message in decoded for s in message.spans] == [
        f"{trace}-s{i}" for i in range(40)]  # in order, all on the trace's partition
    assert len({m.partition() for m in messages}) == 1
    drain_everything()
    assert count_rows(org.id) == 40


def test_old_one_span_messages_and_new_ones_drain_side_by_side():
    """An upgrade finds messages of the old format (SINGLE_SPAN_VERSION) still in Kafka."""
    drain_everything()
    org, _ = new_org()
    trace = f"mixed-{uuid.uuid4().hex[:8]}"
    received = int(time.time() * 1e6)
    producer = get_producer()
    spans = [span_json(org.id, trace, i) for i in range(12)]
    for i in range(6):  # the old format, one span a message
        span = msgspec.json.decode(spans[i], type=SpanIn)
        producer.produce(settings.KAFKA_SPANS_TOPIC, key=f"{org.id}:{trace}".encode(),
                         value=_encode(SpanMessage(SINGLE_SPAN_VERSION, org.id, received,
                                                   span)))
    for key, value in spans_messages(org.id, received, {f"{org.id}:{trace}".encode(): spans[6:]}):
        producer.produce(settings.KAFKA_SPANS_TOPIC, key=key, value=value)
    assert producer.flush(10) == 0
    drain_everything()
    assert count_rows(org.id) == 12
    assert {row["span_id"] for row in stored_spans(org.id)} == {
        f"{trace}-s{i}" for i in range(12)}


def test_a_bad_span_is_parked_alone_out_of_its_message_and_replays_as_itself(capsys):
    drain_everything()
    org, _ = new_org()
    marker = uuid.uuid4().hex[:8]
    trace = f"alone-{marker}"
    spans = [span_json(org.id, trace, i) for i in range(10)]
    spans[4] = span_json(org.id, trace, 4, cost=2e7)  # past the cost column: cannot be built
    spans[6] = span_json(org.id, trace, 6).replace(b'"input_tokens":106',
                                                   b'"input_tokens":' + str(2**70).encode())
    starts = dead_letter_ends()
    ((key, value),) = spans_messages(org.id, int(time.time() * 1e6), {
        f"{org.id}:{trace}".encode(): spans})
    producer = get_producer()
    producer.produce(settings.KAFKA_SPANS_TOPIC, key=key, value=value)
    assert producer.flush(10) == 0

    drain_everything()
    assert {row["span_id"] for row in stored_spans(org.id)} == {
        f"{trace}-s{i}" for i in range(10) if i not in (4, 6)}
    parked = {int(dict(m.headers())["source_span"]): m for m in dead_letters_since(starts)
              if marker.encode() in m.value()}
    assert sorted(parked) == [4, 6]
    assert dict(parked[4].headers())["reason"].startswith(b"span could not be built")
    assert dict(parked[6].headers())["reason"].startswith(b"undecodable span message")
    for index, message in parked.items():
        assert message.key() == key
        alone = msgspec.json.decode(message.value())  # the span alone, as a message
        assert alone[:2] == [MESSAGE_VERSION, org.id] and alone[3] == 1
        assert [span["span_id"] for span in alone[4]] == [f"{trace}-s{index}"]

    # Replayed, it is a message of its own on the spans topic, that span alone.
    before = spans_topic_ends()
    call_command("replay_dead_letters", "--reason", "9223372036854775807", "--since", "1h")
    assert "re-published" in capsys.readouterr().out
    replayed = [m for m in messages_since(before) if marker.encode() in m.value()]
    assert [m.value() for m in replayed] == [parked[6].value()]
    drain_everything()
    assert count_rows(org.id) == 8  # parked again (its cause stays), nothing else doubled


def test_a_drain_that_spends_its_budget_with_lag_left_queues_the_next_at_once(
        settings, monkeypatch):
    """Not at the next beat tick: each tick's wait would be latency on every span."""
    from ingestion import tasks
    from ingestion.services.schedule import forget_queued, queued_key, requeue
    from llmops.redis import get_redis

    drain_everything()
    org, key = new_org()
    trace = f"budget-{uuid.uuid4().hex[:8]}"
    starts = spans_topic_ends()
    assert post_spans(client_for(key), [make_span(trace, i) for i in range(5)]).status_code \
        == 202
    (partition,) = [m.partition() for m in messages_since(starts)]
    queued: list[int] = []
    monkeypatch.setattr(tasks.drain_partition, "delay", queued.append)
    settings.DRAIN_TASK_BUDGET_S = 0  # spent before the first batch: the lag stays
    try:
        assert tasks.drain_partition(partition)["stopped"] == "budget spent"
        assert queued == [partition] and get_redis().exists(queued_key(partition))
        # Queued already (the marker stands until that drain starts): not queued twice.
        assert not requeue(partition, enqueue=queued.append)
        assert queued == [partition]
    finally:
        forget_queued(partition)
    settings.DRAIN_TASK_BUDGET_S = 30.0
    drain_everything()
    assert count_rows(org.id) == 5
