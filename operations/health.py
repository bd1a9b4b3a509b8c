"""Readiness checks for the stores the platform cannot work without."""

import dataclasses
import datetime

import celery
from django.conf import settings
from health_check.base import HealthCheck
from health_check.contrib.celery import Ping
from health_check.contrib.psutil import Disk
from health_check.exceptions import ServiceUnavailable

from llmops.clickhouse import new_client
from llmops.kafka import admin_client
from llmops.redis import get_redis


def _timeout() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.HEALTH_CHECK_TIMEOUT_S)


@dataclasses.dataclass
class ClickHouse(HealthCheck):
    timeout: datetime.timedelta = dataclasses.field(default_factory=_timeout, repr=False)

    def run(self) -> None:
        try:
            seconds = max(1, int(self.timeout.total_seconds()))
            client = new_client(database="default", connect_timeout=seconds,
                                send_receive_timeout=seconds)
            client.command("SELECT 1")
            client.close()
        except Exception as exc:
            raise ServiceUnavailable(f"ClickHouse unreachable: {type(exc).__name__}") from exc


@dataclasses.dataclass
class Kafka(HealthCheck):
    timeout: datetime.timedelta = dataclasses.field(default_factory=_timeout, repr=False)

    def run(self) -> None:
        try:
            metadata = admin_client().list_topics(timeout=self.timeout.total_seconds())
        except Exception as exc:
            raise ServiceUnavailable(f"Kafka unreachable: {type(exc).__name__}") from exc
        if not metadata.brokers:
            raise ServiceUnavailable("Kafka answered with no brokers")


@dataclasses.dataclass
class Redis(HealthCheck):
    timeout: datetime.timedelta = dataclasses.field(default_factory=_timeout, repr=False)

    def run(self) -> None:
        try:
            get_redis().ping()
        except Exception as exc:
            raise ServiceUnavailable(f"Redis unreachable: {type(exc).__name__}") from exc


@dataclasses.dataclass
class CeleryWorkers(Ping):
    """A worker answers a ping, and every queue has a worker consuming it."""

    app: celery.Celery = dataclasses.field(default=None, repr=False)
    timeout: datetime.timedelta = dataclasses.field(default_factory=_timeout, repr=False)

    def run(self) -> None:
        if self.app is None:
            from celery_app import app

            self.app = app
        super().run()


@dataclasses.dataclass
class DiskSpace(Disk):
    path: str = dataclasses.field(default_factory=lambda: str(settings.VAR_DIR), repr=False)
    hostname: str = dataclasses.field(default="", init=False, repr=False)


def readiness_checks() -> list:
    """What must answer for this instance to take traffic; each within its timeout (a check
    that hangs is reported down, it never hangs the endpoint)."""
    return ["health_check.checks.Database", ClickHouse, Kafka, Redis, CeleryWorkers, DiskSpace]
