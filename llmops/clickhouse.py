"""The shared ClickHouse client: one per thread, configured from CLICKHOUSE_URL."""

import threading
from functools import cache
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.httputil import get_pool_manager
from django.conf import settings

_local = threading.local()


def connection_params(url: str | None = None) -> dict:
    """host, port, username, password, database and secure flag from a URL."""
    parsed = urlparse(url or settings.CLICKHOUSE_URL)
    secure = parsed.scheme == "https"
    return {
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or (8443 if secure else 8123),
        "username": parsed.username or "default",
        "password": parsed.password or "",
        "database": parsed.path.lstrip("/") or "default",
        "secure": secure,
    }


def database() -> str:
    return connection_params()["database"]


@cache
def _pool_manager():
    # One pool for the process, sized for a thread per partition: the library's shared
    # default holds 8 connections and drops the rest after each use.
    return get_pool_manager(maxsize=settings.CLICKHOUSE_POOL_SIZE, num_pools=4)


def new_client(*, database: str | None = None, **overrides) -> Client:
    options = {
        **connection_params(),
        "connect_timeout": settings.CLICKHOUSE_CONNECT_TIMEOUT_S,
        "send_receive_timeout": settings.CLICKHOUSE_QUERY_TIMEOUT_S,
        # Sessions serialise queries on the server side; we need none.
        "autogenerate_session_id": False,
        # Times come back timezone-aware (UTC), as they went in.
        "tz_mode": "aware",
        "pool_mgr": _pool_manager(),
    }
    if database is not None:
        options["database"] = database
    if settings.CLICKHOUSE_CLUSTER:
        options["settings"] = {
            # An insert into a Distributed table returns once every shard has its rows, not
            # when they are queued on this node: the drain commits Kafka offsets after it.
            "distributed_foreground_insert": 1,
            # `IN (SELECT ... FROM spans)` and JOINs of two Distributed tables (spans with
            # span_content, sharded apart) run their subquery once, across all shards, as on
            # one node; the default refuses them.
            "distributed_product_mode": "global",
        }
    options.update(overrides)
    return clickhouse_connect.get_client(**options)


def get_client() -> Client:
    """The calling thread's client (clickhouse-connect clients are not thread-safe)."""
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = new_client()
    return client


def ensure_database() -> None:
    """Create the configured database (the client must connect to `default` for that)."""
    from llmops.clickhouse_admin import create_database, run  # it imports this module

    admin = new_client(database="default")
    try:
        run(create_database(database()), client=admin)
    finally:
        admin.close()
