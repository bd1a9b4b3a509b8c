"""The platform's processes for a run, and the tier-1 faults done to them.

A fault kills with SIGKILL (nothing is flushed, nothing says goodbye) and restarts the way an
operator or a supervisor would: the services through scripts/services.py (its pid files in
var/run/), the platform's processes as this harness started them.
"""

import importlib.util
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
from django.conf import settings

from bench.env import ROOT
from bench.ingest import start_api, start_beat, start_ingest_worker, stop
from ingestion.services.partitions import inflight_key
from llmops.redis import get_redis


def _load_services():
    spec = importlib.util.spec_from_file_location("services", ROOT / "scripts" / "services.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


services = _load_services()


class Platform:
    """API (two gunicorn workers), the ingest worker and beat, as `make run` starts them."""

    def __init__(self):
        self.api = start_api(workers=2)
        self.worker = start_ingest_worker("chaos")
        self.beat = start_beat("chaos")

    def restart_ingest_worker(self) -> None:
        self.worker.wait(timeout=10)
        self.worker = start_ingest_worker("chaos")

    def anyone_dead(self) -> bool:
        return any(p.poll() is not None for p in (self.api, self.worker, self.beat))

    def revive(self) -> list[str]:
        """Start again what died by itself (not by a fault's hand); returns their names. Nothing
        supervises these processes in `make run`: a death is a finding, and the next fault
        must start from a whole platform."""
        died = []
        if self.api.poll() is not None:
            died.append("api")
            self.api = start_api(workers=2)
        if self.worker.poll() is not None:
            died.append("ingest worker")
            self.worker = start_ingest_worker("chaos")
        if self.beat.poll() is not None:
            died.append("beat")
            self.beat = start_beat("chaos")
        return died

    def close(self) -> None:
        for process in (self.beat, self.worker, self.api):
            if process.poll() is None:
                stop(process)


def wait_for_batch_in_flight(timeout_s: float = 10.0) -> bool:
    """Until some drain is between recording its batch and committing it (mid-batch)."""
    keys = [inflight_key(settings.KAFKA_SPANS_TOPIC, p)
            for p in range(settings.KAFKA_SPANS_PARTITIONS)]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if get_redis().exists(*keys):
            return True
        time.sleep(0.02)
    return False


def kill_service(name: str) -> None:
    pid = services.read_pid(name, services.PID_HINT[name])
    if pid is None:
        raise RuntimeError(f"{name} is not running from var/run/{name}.pid")
    os.kill(pid, signal.SIGKILL)
    while services._alive(pid):
        time.sleep(0.05)


def restart_service(name: str) -> None:
    services.up(name)


# A fault does its harm and returns (when it struck, when the service was back), monotonic.
Inject = Callable[[Platform, float], tuple[float, float]]


def ingest_worker(platform: Platform, down_s: float) -> tuple[float, float]:
    wait_for_batch_in_flight()
    os.killpg(platform.worker.pid, signal.SIGKILL)
    struck = time.monotonic()
    platform.restart_ingest_worker()
    return struck, time.monotonic()


def api_process(platform: Platform, down_s: float) -> tuple[float, float]:
    # One of the two gunicorn workers; the master starts a new one, the other keeps serving.
    victim = psutil.Process(platform.api.pid).children()[0]
    victim.send_signal(signal.SIGKILL)
    struck = time.monotonic()
    victim.wait(timeout=10)
    return struck, time.monotonic()


def service_fault(name: str, *, mid_batch: bool, use_down_s: bool) -> Inject:
    def inject(platform: Platform, down_s: float) -> tuple[float, float]:
        if mid_batch:
            wait_for_batch_in_flight()
        kill_service(name)
        struck = time.monotonic()
        if use_down_s:
            time.sleep(down_s)
        restart_service(name)
        return struck, time.monotonic()

    return inject


def postgres_restart(platform: Platform, down_s: float) -> tuple[float, float]:
    # pg_ctl stop -m fast: the connections of every process are cut, as in a failover.
    struck = time.monotonic()
    services.down("postgres")
    services.up("postgres")
    return struck, time.monotonic()


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    inject: Inject


FAULTS = {fault.name: fault for fault in [
    Fault("ingest-worker", "SIGKILL of the ingest worker mid-batch, restarted", ingest_worker),
    Fault("api-process", "SIGKILL of one of two API processes (gunicorn respawns it)",
          api_process),
    Fault("kafka", "SIGKILL of the Kafka broker, restarted after the down time",
          service_fault("kafka", mid_batch=False, use_down_s=True)),
    Fault("clickhouse", "SIGKILL of the ClickHouse server mid-insert, restarted after the "
          "down time", service_fault("clickhouse", mid_batch=True, use_down_s=True)),
    Fault("redis", "SIGKILL of Redis while drains run, restarted (leases, in-flight records "
          "and queued tasks since its last snapshot lost)",
          service_fault("redis", mid_batch=True, use_down_s=False)),
    Fault("postgres", "PostgreSQL restarted (pg_ctl stop -m fast, start)", postgres_restart),
]}

