"""Two API processes (gunicorn, as `make run` starts them) behind HAProxy with the config
`manage.py haproxy_config` makes: one is SIGKILLed, master and workers, under load and
started again a few seconds later. Clients see no error beyond 503s they retry (honouring
Retry-After, as exporters do), everything acknowledged is stored exactly once, and the
restarted instance takes traffic again."""

import csv
import io
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from http.client import HTTPConnection
from pathlib import Path

import orjson
import pytest
from django.conf import settings

from operations.services.loadbalancer import haproxy_config
from tests.ingest_helpers import drain_everything, make_span, new_org

pytestmark = [pytest.mark.django_db(transaction=True),  # the API processes must see the org
              pytest.mark.slow]

HAPROXY = "/usr/sbin/haproxy"
RATE = 300  # spans/s, in requests of SPANS_PER_REQUEST
SPANS_PER_REQUEST = 10
THREADS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Instance:
    """One API instance: a gunicorn master and its worker on its own port (one worker, not
    make run's two: each start imports Django once less, on a machine the suite shares)."""

    def __init__(self, env: dict, log: Path) -> None:
        self.env, self.log, self.port = env, log, free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [str(Path(settings.BASE_DIR) / ".venv" / "bin" / "gunicorn"),
                 "llmops.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
                 "--workers", "1", "--timeout", "60"],
                cwd=settings.BASE_DIR, env=self.env, start_new_session=True,
                stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL to the master and its workers (the process group) at once."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def server_stats(stats_port: int) -> dict[str, dict]:
    """HAProxy's stats CSV, by server name (api-1, api-2)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/;csv", timeout=5) as answer:
        text = answer.read().decode().lstrip("# ")
    return {row["svname"]: row for row in csv.DictReader(io.StringIO(text))
            if row["pxname"] == "api"}


def wait_for(condition, timeout_s: float, what: str) -> None:
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        try:
            if condition():
                print(f"{what}: {time.monotonic() - started:.1f}s")
                return
        except OSError:
            pass  # HAProxy still starting
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


class RetryingClient:
    """RATE spans/s until stopped; a 503 is sent again after its Retry-After (0.2 s if none),
    as OTLP exporters do. Anything else that is not a 202 is an error the client saw."""

    def __init__(self, port: int, key: str, run: str) -> None:
        self.port, self.key, self.run = port, key, run
        self.stop = threading.Event()
        self.acknowledged: set[str] = set()
        self.outcomes: Counter = Counter()
        self.requests = 0
        self.lock = threading.Lock()

    def send(self, number: int) -> None:
        spans = [make_span(f"{self.run}-r{number}", i) for i in range(SPANS_PER_REQUEST)]
        body = orjson.dumps({"spans": spans})
        with self.lock:
            self.requests += 1
        for _ in range(60):  # bounded: 60 tries of at most 1 s apart
            connection = HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                connection.request("POST", "/api/v1/spans", body, {
                    "Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
                answer = connection.getresponse()
                status, retry_after = answer.status, answer.getheader("Retry-After")
                answer.read()
            except OSError as exc:
                status, retry_after = f"connection error ({type(exc).__name__})", None
            finally:
                connection.close()
            with self.lock:
                self.outcomes[status] += 1
            if status != 503:
                break
            time.sleep(min(float(retry_after or 0.2), 1.0))
        if status == 202:
            with self.lock:
                self.acknowledged |= {span["span_id"] for span in spans}

    def loop(self, slot: int) -> None:
        interval = THREADS * SPANS_PER_REQUEST / RATE
        number, next_at = slot, time.monotonic() + slot * interval / THREADS
        while not self.stop.is_set():
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + interval, time.monotonic())
            self.send(number)
            number += THREADS


def test_one_api_instance_killed_and_restarted_behind_haproxy(subprocess_env, tmp_path):
    assert Path(HAPROXY).exists(), (
        f"{HAPROXY} is missing: install it with `python scripts/services.py haproxy` "
        "(make haproxy; `make test` does it)")
    drain_everything()
    org, key = new_org(ingest_rate_limit=10**6)
    instances = [Instance(subprocess_env, tmp_path / f"api-{n}.log") for n in (1, 2)]
    port, stats_port = free_port(), free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(listen_port=port, stats_port=stats_port,
                                     server_ports=[i.port for i in instances]))
    for instance in instances:
        instance.start()
    haproxy = subprocess.Popen([HAPROXY, "-f", str(config), "-db"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, start_new_session=True)
    client = RetryingClient(port, key, f"lb-{uuid.uuid4().hex[:8]}")
    threads = [threading.Thread(target=client.loop, args=(slot,)) for slot in range(THREADS)]
    victim = instances[0]
    try:
        wait_for(lambda: all(row["status"] == "UP"
                             for name, row in server_stats(stats_port).items()
                             if name.startswith("api-")), 60, "both instances are UP")
        for thread in threads:
            thread.start()
        time.sleep(2)
        victim.kill()
        killed_at = time.monotonic()
        wait_for(lambda: server_stats(stats_port)["api-1"]["status"].startswith("DOWN"), 10,
                 "HAProxy marks the killed instance DOWN")
        time.sleep(max(0.0, killed_at + 3 - time.monotonic()))
        victim.start()  # on the same port, as a supervisor would
        wait_for(lambda: server_stats(stats_port)["api-1"]["status"] == "UP", 60,
                 "the restarted instance is UP again")
        back = int(server_stats(stats_port)["api-1"]["stot"])
        wait_for(lambda: int(server_stats(stats_port)["api-1"]["stot"]) >= back + 10, 15,
                 "the restarted instance answers requests again")
    finally:
        client.stop.set()
        try:
            for thread in threads:
                if thread.ident:
                    thread.join(timeout=60)
            final_stats = server_stats(stats_port)
        except OSError:
            final_stats = {}
        finally:  # never leave a server behind, whatever failed above
            for instance in instances:
                instance.kill()
            os.killpg(haproxy.pid, signal.SIGKILL)
            haproxy.wait(timeout=10)

    drain_everything()
    from llmops.clickhouse import get_client

    stored, distinct = get_client().query(
        "SELECT count(), uniqExact(span_id) FROM spans FINAL WHERE org_id = {o:UInt64}",
        parameters={"o": org.id}).result_rows[0]
    stored_ids = {row[0] for row in get_client().query(
        "SELECT DISTINCT span_id FROM spans WHERE org_id = {o:UInt64}",
        parameters={"o": org.id}).result_rows}
    lost = len(client.acknowledged - stored_ids)
    sessions = {name: final_stats.get(name, {}).get("stot") for name in ("api-1", "api-2")}
    print(f"\nLB kill: {client.requests} requests, outcomes {dict(client.outcomes)}; "
          f"acknowledged {len(client.acknowledged)} spans, stored {stored} (FINAL), "
          f"lost {lost}; requests per instance {sessions}")
    errors = {status: n for status, n in client.outcomes.items() if status not in (202, 503)}
    assert errors == {}, f"the clients saw errors beyond retried 503s: {errors}"
    assert client.acknowledged and len(client.acknowledged) == client.requests * SPANS_PER_REQUEST
    assert lost == 0
    assert stored == distinct == len(client.acknowledged)  # exactly once in FINAL


def test_the_haproxy_config_made_from_settings_is_valid(settings, tmp_path):
    assert Path(HAPROXY).exists(), f"{HAPROXY} is missing: `python scripts/services.py haproxy`"
    from django.core.management import call_command

    settings.API_INSTANCES, settings.API_PORT, settings.HAPROXY_STATS_PORT = 3, 18500, 18509
    out = io.StringIO()
    call_command("haproxy_config", "--write", str(tmp_path / "haproxy.cfg"), stdout=out)
    assert out.getvalue().strip() == "instance ports: 18510 18511 18512"
    config = (tmp_path / "haproxy.cfg").read_text()
    checked = subprocess.run([HAPROXY, "-c", "-f", str(tmp_path / "haproxy.cfg")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "bind 127.0.0.1:18500" in config and "bind 127.0.0.1:18509" in config
    assert [line.split()[2] for line in config.splitlines() if line.strip().startswith(
        "server ")] == ["127.0.0.1:18510", "127.0.0.1:18511", "127.0.0.1:18512"]
    # What keeps a killed instance from reaching clients (see the test above).
    assert "retry-on conn-failure empty-response response-timeout" in config
    assert "option redispatch 1" in config and "uri /health/live" in config
    assert "option forwardfor" in config  # /metrics is not opened to the proxied
