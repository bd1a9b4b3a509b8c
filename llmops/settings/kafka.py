"""Kafka: brokers, topics, producer and consumer tuning (seed: `kafka_publish` retry policy)."""

from .env import env

# 1 locally; 3 for `KAFKA_BROKERS=3 make services`, a cluster of three KRaft nodes, node i on
# KAFKA_PORT + KAFKA_PORT_STEP * i (scripts/services.py): the default bootstrap lists them all.
KAFKA_BROKERS = env("KAFKA_BROKERS", 1)
KAFKA_PORT_STEP = env("KAFKA_PORT_STEP", 100)
KAFKA_BOOTSTRAP_SERVERS = env("KAFKA_BOOTSTRAP_SERVERS", ",".join(
    f"127.0.0.1:{env('KAFKA_PORT', 9092) + KAFKA_PORT_STEP * node}"
    for node in range(KAFKA_BROKERS)))
KAFKA_SPANS_TOPIC = env("KAFKA_SPANS_TOPIC", "llmops.spans.v1")
KAFKA_DEAD_LETTER_TOPIC = env("KAFKA_DEAD_LETTER_TOPIC", "llmops.spans.dead-letter")
KAFKA_SPANS_PARTITIONS = env("KAFKA_SPANS_PARTITIONS", 12)
# The design document's 3 once there are three brokers (one broker holds one copy). Writes
# (acks=all) need KAFKA_MIN_INSYNC_REPLICAS copies in sync: 2 of 3, so what was acknowledged
# survives a broker's loss and a partition takes writes while one broker is down.
KAFKA_REPLICATION_FACTOR = env("KAFKA_REPLICATION_FACTOR", min(KAFKA_BROKERS, 3))
KAFKA_MIN_INSYNC_REPLICAS = env("KAFKA_MIN_INSYNC_REPLICAS",
                                2 if KAFKA_REPLICATION_FACTOR >= 3 else 1)
# Seed: Kafka topics kept 7 days.
KAFKA_RETENTION_MS = env("KAFKA_RETENTION_MS", 7 * 24 * 3600 * 1000)
KAFKA_CONSUMER_GROUP = env("KAFKA_CONSUMER_GROUP", "llmops-drain")
# The largest message (key and value, before compression) the producer sends: its
# `message.max.bytes`, and, with room for batch framing, the topics' `max.message.bytes`. The
# API refuses a span whose message is larger (after truncating content to
# INGEST_MAX_CONTENT_BYTES), rather than let produce() raise MSG_SIZE_TOO_LARGE.
KAFKA_MESSAGE_MAX_BYTES = env("KAFKA_MESSAGE_MAX_BYTES", 3 * 1024 * 1024)

# Seed retry policy `kafka_publish`: 3 attempts, 50 ms initial backoff, acks=all,
# retries 3, retry_backoff_ms 100.
KAFKA_PUBLISH_MAX_ATTEMPTS = env("KAFKA_PUBLISH_MAX_ATTEMPTS", 3)
KAFKA_PUBLISH_INITIAL_BACKOFF_MS = env("KAFKA_PUBLISH_INITIAL_BACKOFF_MS", 50)
KAFKA_PUBLISH_ACKS = env("KAFKA_PUBLISH_ACKS", "all")
KAFKA_PUBLISH_RETRIES = env("KAFKA_PUBLISH_RETRIES", 3)
KAFKA_PUBLISH_RETRY_BACKOFF_MS = env("KAFKA_PUBLISH_RETRY_BACKOFF_MS", 100)
# How long a request waits for Kafka's acknowledgement before answering 503.
KAFKA_PUBLISH_TIMEOUT_S = env("KAFKA_PUBLISH_TIMEOUT_S", 10.0)
KAFKA_LINGER_MS = env("KAFKA_LINGER_MS", 5)
KAFKA_COMPRESSION = env("KAFKA_COMPRESSION", "lz4")
# Bytes one fetch may bring from one partition: a drain batch of spans in one round trip.
KAFKA_FETCH_PARTITION_BYTES = env("KAFKA_FETCH_PARTITION_BYTES", 16 * 1024 * 1024)
