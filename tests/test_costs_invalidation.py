"""A price changed in the admin is used by a drain in another process within a second."""

import queue
import subprocess
import sys
import threading
import time
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from costs.models import Price
from tests.ingest_helpers import (
    BASE_TIME,
    client_for,
    count_rows,
    drain_everything,
    make_span,
    new_org,
    post_spans,
    stored_spans,
)

pytestmark = pytest.mark.django_db(transaction=True)

AT = BASE_TIME
# The other process: drains every partition with the real drainer, and prints each price it
# sees for acme-chat (micro-USD per million input tokens) with the time it first saw it.
OTHER_PROCESS = """
import signal, sys, threading, time
from datetime import datetime
import django
django.setup()
from costs.services.pricing import price_for
from ingestion.services.drain import PartitionDrainer
from ingestion.services.partitions import partition_lags
from llmops import changes

at = datetime.fromisoformat(sys.argv[1])
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())

def watch():
    seen = None
    while not stop.is_set():
        row = price_for(model="acme-chat", provider="acme", at=at)
        if row.input != seen:
            seen = row.input
            print(f"price {seen} {time.time():.6f}", flush=True)
        time.sleep(0.002)

threading.Thread(target=watch, daemon=True).start()
changes.listening.wait(30)
print("ready", flush=True)
while not stop.is_set():
    for lag in partition_lags():
        if lag.lag or lag.in_flight:
            PartitionDrainer(lag.partition).run(budget_s=0.5)
    time.sleep(0.05)
"""


def _lines(process: subprocess.Popen) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue, prefix: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line.startswith(prefix):
            return line
        seen.append(line)
    raise AssertionError(f"no line starting {prefix!r} within {timeout_s}s; got {seen[-20:]}")


def _stored(org_id: int, count: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while count_rows(org_id) < count:
        assert time.monotonic() < deadline, "the other process did not drain the span"
        time.sleep(0.05)


def _admin_form(price: Price, **changes) -> dict:
    data = {"provider": price.provider, "model_name": price.model_name,
            "model_pattern": price.model_pattern, "input_price": price.input_price,
            "output_price": price.output_price, "cached_input_price": "",
            "cache_write_price": "", "priority": price.priority,
            "effective_from_0": "", "effective_from_1": "", "effective_to_0": "",
            "effective_to_1": ""}
    return {**data, **changes}


def test_a_price_changed_in_the_admin_reaches_a_drain_in_another_process(client,
                                                                          subprocess_env):
    drain_everything()
    price = Price.objects.create(provider="acme", model_name="acme-chat",
                                 model_pattern="acme-chat", input_price=1, output_price=0)
    org, key = new_org()
    usage = {"input_tokens": 1_000_000, "output_tokens": 0}
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, AT.isoformat()], cwd=settings.BASE_DIR,
        env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = _lines(other)
        _wait_for(lines, "ready")
        assert _wait_for(lines, "price ").split()[1] == "1000000"  # $1 per M, cached there
        span = make_span("before", 0, model="acme-chat", provider="acme", usage=usage)
        assert post_spans(client_for(key), [span]).status_code == 202
        _stored(org.id, 1)

        client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
        changed_at = time.time()
        response = client.post(f"/admin/costs/price/{price.id}/change/",
                               _admin_form(price, input_price="3"))
        assert response.status_code == 302, response.content
        span = make_span("after", 0, model="acme-chat", provider="acme", usage=usage)
        assert post_spans(client_for(key), [span]).status_code == 202

        _, micros, seen_at = _wait_for(lines, "price ", timeout_s=5).split()
        latency = float(seen_at) - changed_at
        print(f"\nthe other process used the new price {latency * 1000:.1f} ms after the "
              "admin save began")
        assert micros == "3000000" and latency < 1.0
        _stored(org.id, 2)
    finally:
        other.terminate()
        other.wait(timeout=30)

    rows = {row["trace_id"]: row for row in stored_spans(org.id)}
    assert (rows["before"]["cost"], rows["before"]["price_id"]) == (Decimal(1), price.id)
    assert (rows["after"]["cost"], rows["after"]["price_id"]) == (Decimal(3), price.id)
