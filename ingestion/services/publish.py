"""Publishing accepted spans to Kafka: acknowledged by the broker, or an error."""

import time

from confluent_kafka import KafkaError, KafkaException
from django.conf import settings

from llmops.kafka import get_producer
from llmops.metrics import KAFKA_DELIVERY_ERRORS


class PublishFailed(Exception):
    """Kafka did not acknowledge every message in time; the client must retry."""


def publish(topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Send (key, value) pairs and wait until Kafka has acknowledged all of them.

    Retries follow the seed's `kafka_publish` policy on top of librdkafka's own retries,
    re-sending only what failed, and never past KAFKA_PUBLISH_TIMEOUT_S in all.
    """
    producer = get_producer()
    deadline = time.monotonic() + settings.KAFKA_PUBLISH_TIMEOUT_S
    backoff = settings.KAFKA_PUBLISH_INITIAL_BACKOFF_MS / 1000
    to_send = messages
    last_error: KafkaError | None = None
    for attempt in range(1, settings.KAFKA_PUBLISH_MAX_ATTEMPTS + 1):
        failed, unacknowledged = _send(producer, topic, to_send, deadline)
        if unacknowledged:
            raise PublishFailed(f"{unacknowledged} message(s) not acknowledged by Kafka in time")
        if not failed:
            return
        last_error = failed[-1][2]
        to_send = [(key, value) for key, value, _ in failed]
        if attempt == settings.KAFKA_PUBLISH_MAX_ATTEMPTS or time.monotonic() + backoff > deadline:
            break
        time.sleep(backoff)
        backoff *= 2
    raise PublishFailed(f"Kafka refused {len(to_send)} message(s): {last_error}")


def _send(producer, topic: str, messages: list[tuple[bytes, bytes]], deadline: float):
    """Produce, then wait for THESE messages' reports only (not the whole queue's, which
    other threads of a threaded server keep filling). Returns (failed, unacknowledged)."""
    failed: list[tuple[bytes, bytes, KafkaError]] = []
    reports: list[None] = []  # list.append is atomic: callbacks may run on other threads

    def on_delivery(error, message):
        reports.append(None)
        if error is not None:
            KAFKA_DELIVERY_ERRORS.inc()
            failed.append((message.key(), message.value(), error))

    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                producer.poll(0.05)
            except KafkaException as exc:
                # Refused before sending (MSG_SIZE_TOO_LARGE, say): the caller answers an error
                # the client can act on, not a crash. Callers check sizes first, since what
                # was produced before this message still goes out.
                raise PublishFailed(f"Kafka refused a message: {exc.args[0]}") from exc
    # flush() sends at once (ignoring linger.ms) and serves reports; short slices, because
    # in a threaded server the queue also holds other requests' messages and may never empty.
    while len(reports) < len(messages) and time.monotonic() < deadline:
        producer.flush(min(0.01, max(0.0, deadline - time.monotonic())))
    return failed, len(messages) - len(reports)
