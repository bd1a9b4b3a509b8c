"""Shared fixtures. Every test runs against the real services; none is skipped when one is
down: the run stops at once and says which service and how to start it."""

import contextlib
import socket
import threading
from urllib.parse import urlparse

import pytest
from django.conf import settings

START_HINT = "start the services with `make services` (or run `make test`)"


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _require_services() -> None:
    from llmops.clickhouse import connection_params

    database = settings.DATABASES["default"]
    redis_url = urlparse(settings.REDIS_URL)
    kafka_host, kafka_port = settings.KAFKA_BOOTSTRAP_SERVERS.split(",")[0].rsplit(":", 1)
    clickhouse = connection_params()
    required = {
        "PostgreSQL": (database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)),
        "Redis": (redis_url.hostname, redis_url.port or 6379),
        "Kafka": (kafka_host, int(kafka_port)),
        "ClickHouse (embedded server)": (clickhouse["host"], clickhouse["port"]),
    }
    down = [f"{name} at {host}:{port}" for name, (host, port) in required.items()
            if not _tcp_open(host, port)]
    if down:
        pytest.exit(f"services not reachable: {', '.join(down)}; {START_HINT}", returncode=3)


@pytest.fixture(scope="session", autouse=True)
def platform_services():
    """Fail fast when a service is down; then start from clean test stores, as pytest-django
    does for the SQL database: Redis test DBs flushed, Kafka leftovers skipped, the ClickHouse
    test database created anew and migrated."""
    _require_services()
    from django.core.cache import cache

    from ingestion.services.partitions import skip_to_end
    from llmops import clickhouse_migrations
    from llmops.clickhouse import connection_params, new_client
    from llmops.kafka import ensure_topics
    from llmops.redis import get_redis

    get_redis().flushdb()
    cache.clear()
    ensure_topics()
    # Messages an earlier, aborted run left behind carry org ids this run's fresh DB reuses.
    skip_to_end()
    name = connection_params()["database"]
    assert name.endswith("_test"), f"refusing to reset non-test ClickHouse database {name}"
    admin = new_client(database="default")
    admin.command(f"DROP DATABASE IF EXISTS `{name}` SYNC")
    admin.close()
    for migration in clickhouse_migrations.pending():
        clickhouse_migrations.apply(migration)


@pytest.fixture(scope="session", autouse=True)
def collected_static():
    """Static files collected with their hashed names, as `make run` and the image do: pages
    name them through the manifest, and WhiteNoise serves what is there when it starts."""
    from django.core.management import call_command

    call_command("collectstatic", "--noinput", verbosity=0)


@pytest.fixture(autouse=True)
def fresh_process_caches():
    """In-process caches (degradation level, API keys, prices, retention, flags) must not
    carry one test's DB rows, rolled back since, into the next test (a rolled-back save never
    announces its change: the announcement waits for a commit)."""
    from costs.services.pricing import forget_cached_prices
    from ingestion.services.accept import forget_cached_retention
    from ingestion.services.tenancy import forget_cached_keys
    from operations.services.degradation import forget_cached_level
    from operations.services.flags import forget_cached_flags

    forgets = (forget_cached_level, forget_cached_keys, forget_cached_prices,
               forget_cached_retention, forget_cached_flags)
    for forget in forgets:
        forget()
    yield
    for forget in forgets:
        forget()


@pytest.fixture
def subprocess_env():
    """The environment for a real second process that must see this test's stores, the
    test database pytest-django created included."""
    import os

    from django.db import connection

    db = connection.settings_dict
    url = (f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:"
           f"{db['PORT'] or 5432}/{db['NAME']}")
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "llmops.settings.test",
            "TEST_DATABASE_URL": url}


@pytest.fixture
def clickhouse_queries(monkeypatch):
    """(sql, parameters) of every query this thread sends to ClickHouse (they still go
    there): to count them, or to check what reached the server."""
    from llmops.clickhouse import get_client

    client = get_client()
    sent = []
    original = client.query

    def recording(query, parameters=None, *args, **kwargs):
        sent.append((query, dict(parameters or {})))
        return original(query, parameters, *args, **kwargs)

    monkeypatch.setattr(client, "query", recording)
    return sent


@pytest.fixture
def black_hole():
    """A port that accepts connections and never answers: a hung dependency (ClickHouse, a
    health check's target)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):  # the accept timeout: look at `stop` again
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()
