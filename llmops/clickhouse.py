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
    name = database()
    admin = new_client(database="default")
    try:
        cluster = settings.CLICKHOUSE_CLUSTER
        on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
        admin.command(f"CREATE DATABASE IF NOT EXISTS `{name}`{on_cluster}")
    finally:
        admin.close()
