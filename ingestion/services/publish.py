"""Publishing accepted spans to Kafka: acknowledged by the broker, or an error."""

import time

from confluent_kafka import KafkaError
from django.conf import settings

from llmops.kafka import get_producer


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
        failed: list[tuple[bytes, bytes]] = []

        def on_delivery(error, message, failed=failed):
            nonlocal last_error
            if error is not None:
                last_error = error
                failed.append((message.key(), message.value()))

        for key, value in to_send:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                    break
                except BufferError:
                    # The local queue is full: serve delivery reports until there is room.
                    producer.poll(0.05)
        remaining = producer.flush(max(0.0, deadline - time.monotonic()))
        if remaining:
            raise PublishFailed(f"{remaining} message(s) not acknowledged by Kafka in time")
        if not failed:
            return
        to_send = failed
        if attempt == settings.KAFKA_PUBLISH_MAX_ATTEMPTS or time.monotonic() + backoff > deadline:
            break
        time.sleep(backoff)
        backoff *= 2
    raise PublishFailed(f"Kafka refused {len(to_send)} message(s): {last_error}")
