"""ClickHouse: where it is, and whether DDL targets a cluster."""

from pathlib import Path

from llmops.local_secrets import with_local_password

from .base import VAR_DIR
from .env import env

# The embedded server (llmops/chserver) generates its password here at first start.
CLICKHOUSE_CREDENTIALS_FILE = Path(env("CLICKHOUSE_CREDENTIALS_FILE",
                                       str(VAR_DIR / "clickhouse" / "credentials")))
# A URL for user `default` without a password, on this machine, gets the embedded server's
# password from that file (so `CLICKHOUSE_URL=http://default:@127.0.0.1:8123/db` works);
# a URL with a password, or another user or host, is used as given.
CLICKHOUSE_URL = with_local_password(
    env("CLICKHOUSE_URL", "http://default:@127.0.0.1:8123/llmops"), CLICKHOUSE_CREDENTIALS_FILE)
# Empty: one node, MergeTree-family engines. A name: Replicated* engines on that cluster
# plus Distributed tables sharded as the design document says.
CLICKHOUSE_CLUSTER = env("CLICKHOUSE_CLUSTER", "")
CLICKHOUSE_CONNECT_TIMEOUT_S = env("CLICKHOUSE_CONNECT_TIMEOUT_S", 5)
CLICKHOUSE_QUERY_TIMEOUT_S = env("CLICKHOUSE_QUERY_TIMEOUT_S", 60)
# Seed: 90 days hot.
CLICKHOUSE_SPANS_TTL_DAYS = env("CLICKHOUSE_SPANS_TTL_DAYS", 90)
# How many recent insert tokens a table remembers, so a replayed batch is dropped.
CLICKHOUSE_DEDUP_WINDOW = env("CLICKHOUSE_DEDUP_WINDOW", 10000)
# HTTP connections kept per process (the ingest worker runs a thread per partition).
CLICKHOUSE_POOL_SIZE = env("CLICKHOUSE_POOL_SIZE", 32)
