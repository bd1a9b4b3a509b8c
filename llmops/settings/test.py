"""Test settings: the same real services, with their own databases, topics and Redis DBs.

Each TEST_* variable lets two test runs share the services without touching each other."""

import dj_database_url

from llmops.settings import *  # noqa: F403
from llmops.settings import CACHES

from .env import env

# Tests run on PostgreSQL, as production does; pytest-django creates test_<name>.
DATABASES = {
    "default": dj_database_url.parse(
        env("TEST_DATABASE_URL", "postgres://llmops:llmops@127.0.0.1:5432/llmops")
    )
}
CLICKHOUSE_URL = with_local_password(  # noqa: F405
    env("TEST_CLICKHOUSE_URL", "http://default:@127.0.0.1:8123/llmops_test"),
    CLICKHOUSE_CREDENTIALS_FILE)  # noqa: F405
KAFKA_SPANS_TOPIC = env("TEST_KAFKA_SPANS_TOPIC", "llmops.test.spans.v1")
KAFKA_DEAD_LETTER_TOPIC = env("TEST_KAFKA_DEAD_LETTER_TOPIC", "llmops.test.spans.dead-letter")
KAFKA_CONSUMER_GROUP = env("TEST_KAFKA_CONSUMER_GROUP", "llmops-test-drain")
REDIS_URL = env("TEST_REDIS_URL", "redis://127.0.0.1:6379/2")
CELERY_BROKER_URL = REDIS_URL
CACHES = {"default": {**CACHES["default"],
                      "LOCATION": env("TEST_CACHE_REDIS_URL", "redis://127.0.0.1:6379/3"),
                      "KEY_PREFIX": "llmops-test"},
          # Dashboard sign-ins, beside the test query caches (flushed with them).
          "sessions": {**CACHES["sessions"],
                       "LOCATION": env("TEST_CACHE_REDIS_URL", "redis://127.0.0.1:6379/3"),
                       "KEY_PREFIX": "llmops-test-session"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests drain until a partition is empty; a drain need not linger waiting for more.
DRAIN_IDLE_EXIT_S = 0.3
# Collected once per test session (tests/conftest.py), apart from what `make run` serves.
STATIC_ROOT = VAR_DIR / "static-test"  # noqa: F405
# Inside the embedded server's allowed backup path, apart from the operators' backups.
BACKUP_DIR = str(VAR_DIR / "clickhouse" / "backups" / "test")  # noqa: F405
