"""The dead-letter topic: parking what can never be stored, counting it, replaying it.

A message is parked only once Kafka acknowledged it on the dead-letter topic: the drain
commits past a parked message only after that, so a refused dead letter stays in flight.
"""

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from confluent_kafka import KafkaException, TopicPartition
from django.conf import settings

from llmops.kafka import end_offsets, get_producer, new_consumer, retrying, watermarks
from llmops.redis import get_redis

logger = logging.getLogger(__name__)


class DeadLetterFailed(Exception):
    """Kafka did not acknowledge every dead letter (topic missing, broker down...)."""


def replay_group() -> str:
    # Its own consumer group on the dead-letter topic: its committed offset is what was
    # replayed already, so a second run does not publish the same messages again.
    return f"{settings.KAFKA_CONSUMER_GROUP}-dead-letter-replay"


def _publish_acknowledged(outgoing: list[dict], what: str) -> None:
    """Produce each message and wait for Kafka's delivery report of every one."""
    if not outgoing:
        return
    producer = get_producer()
    errors: list = []
    reports: list = []
    lock = threading.Lock()

    def report(err, _msg) -> None:
        with lock:
            reports.append(err)
            if err is not None:
                errors.append(err)

    for message in outgoing:
        try:
            producer.produce(**message, on_delivery=report)
        except (KafkaException, BufferError) as exc:
            raise DeadLetterFailed(f"{what}: Kafka refused a message: {exc}") from exc
    deadline = time.monotonic() + settings.KAFKA_PUBLISH_TIMEOUT_S + 5
    producer.flush(settings.KAFKA_PUBLISH_TIMEOUT_S)
    # Another thread's flush may be serving our reports: wait until all are in.
    while len(reports) < len(outgoing) and time.monotonic() < deadline:
        producer.poll(0.05)
    if errors or len(reports) < len(outgoing):
        first = errors[0] if errors else "no delivery report in time"
        raise DeadLetterFailed(f"{what}: {len(errors) or len(outgoing) - len(reports)} of "
                               f"{len(outgoing)} not acknowledged: {first}")


def dead_letter_all(parked: list[tuple[object, str]]) -> None:
    """Park (message, reason) pairs, with why and where each came from; returns once Kafka
    acknowledged every one, raises DeadLetterFailed otherwise."""
    _publish_acknowledged([{
        "topic": settings.KAFKA_DEAD_LETTER_TOPIC,
        "key": message.key(),
        "value": message.value(),
        "headers": {
            "reason": reason[:1000],
            "source_topic": message.topic(),
            "source_partition": str(message.partition()),
            "source_offset": str(message.offset()),
            # A span parked alone out of a message of several: which one it was there.
            **({"source_span": str(message.index)} if hasattr(message, "index") else {}),
        },
    } for message, reason in parked], "dead letters")


def dead_letter(message, reason: str) -> None:
    """Park one message; returns once Kafka acknowledged it (DeadLetterFailed otherwise)."""
    dead_letter_all([(message, reason)])


@dataclass
class DeadLetterCount:
    parked: int  # messages the dead-letter topic still holds
    not_replayed: int  # of those, the ones `replay_dead_letters` has not re-published


def _positions(consumer, topic: str) -> list[tuple[int, int, int, int]]:
    """(partition, low, first not replayed, end) of each dead-letter partition: the replay
    group's committed offset marks what was re-published already."""
    ends = end_offsets(consumer, topic)
    committed = retrying(lambda: consumer.committed(
        [TopicPartition(topic, tp.partition) for tp in ends], timeout=10))
    positions = []
    for end, done in zip(ends, committed, strict=True):
        low, _ = watermarks(consumer, topic, end.partition)
        positions.append((end.partition, low, max(low, done.offset), end.offset))
    return positions


def dead_letter_count() -> DeadLetterCount:
    consumer = new_consumer(**{"group.id": replay_group()})
    try:
        positions = _positions(consumer, settings.KAFKA_DEAD_LETTER_TOPIC)
    finally:
        consumer.close()
    return DeadLetterCount(parked=sum(end - low for _, low, _, end in positions),
                           not_replayed=sum(end - start for _, _, start, end in positions))


@dataclass
class ReplayReport:
    replayed: list = field(default_factory=list)  # (partition, offset, reason) re-published
    skipped: int = 0  # left parked by the filters


def _replayed_key(topic: str, partition: int) -> str:
    # Offsets re-published past the group's committed offset (a filter left a gap before).
    return f"dead-letters:replayed:{topic}:{partition}"


def _header(message, name: str) -> str:
    return dict(message.headers() or []).get(name, b"").decode(errors="replace")


def replay_dead_letters(*, since: datetime | None = None, reason: str = "",
                        dry_run: bool = False) -> ReplayReport:
    """Re-publish parked messages (parked at or after `since`, whose reason contains
    `reason`) to the topic they came from, once their cause is fixed. What was replayed is
    remembered (the replay group's offset, and past a gap a set in Redis), so a second run
    re-publishes nothing twice; messages the filters leave out stay for a later run."""
    topic = settings.KAFKA_DEAD_LETTER_TOPIC
    report = ReplayReport()
    consumer = new_consumer(**{"group.id": replay_group()})
    try:
        for partition, _, start, end in _positions(consumer, topic):
            if start < end:
                _replay_partition(consumer, partition, start, end,
                                  since=since, reason=reason, dry_run=dry_run, report=report)
    finally:
        consumer.close()
    return report


def _replay_partition(consumer, partition: int, start: int, end: int, *, since, reason,
                      dry_run, report: ReplayReport) -> None:
    topic = settings.KAFKA_DEAD_LETTER_TOPIC
    redis = get_redis()
    key = _replayed_key(topic, partition)
    already = {int(x) for x in redis.smembers(key)}
    consumer.assign([TopicPartition(topic, partition, start)])
    messages: list = []
    deadline = time.monotonic() + settings.DRAIN_REPLAY_READ_S
    while (not messages or messages[-1].offset() < end - 1) and time.monotonic() < deadline:
        batch = consumer.consume(num_messages=min(10_000, end - start), timeout=1.0)
        messages.extend(m for m in batch if m.error() is None and m.offset() < end)
    consumer.unassign()
    chosen = []
    for message in messages:
        if message.offset() in already:
            continue
        parked_at = message.timestamp()[1] / 1000
        wanted = ((since is None or parked_at >= since.timestamp())
                  and reason.lower() in _header(message, "reason").lower())
        if wanted:
            chosen.append(message)
        else:
            report.skipped += 1
    report.replayed.extend((partition, m.offset(), _header(m, "reason")) for m in chosen)
    if dry_run or not chosen:
        return
    _publish_acknowledged([{
        "topic": _header(m, "source_topic") or settings.KAFKA_SPANS_TOPIC,
        "key": m.key(),
        "value": m.value(),
        "headers": {"replayed_from": f"{topic}:{partition}:{m.offset()}"},
    } for m in chosen], "dead-letter replay")
    handled = already | {m.offset() for m in chosen}
    # The committed offset covers the replayed prefix; replays past a gap are kept aside.
    commit = start
    while commit in handled:
        commit += 1
    beyond = [offset for offset in handled if offset >= commit]
    if commit > start:
        retrying(lambda: consumer.commit(offsets=[TopicPartition(topic, partition, commit)],
                                         asynchronous=False))
    pipe = redis.pipeline()
    pipe.delete(key)
    if beyond:
        pipe.sadd(key, *beyond)
    pipe.execute()
    logger.info("dead letters of partition %d: %d re-published", partition, len(chosen))
