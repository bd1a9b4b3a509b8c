"""Start and stop the platform's own processes: API (gunicorn), Celery workers, beat, flower.

`up` migrates both databases, creates the Kafka topics, a demo API key (kept in
var/demo_api_key and reused while active) and a demo dashboard login (password kept in
var/demo_password), then starts each process in the background (logs
in var/log, pid files in var/run) and prints the URLs.

API_INSTANCES=N (N > 1) starts N gunicorn instances on loopback ports and HAProxy on
API_PORT in front of them (config from `manage.py haproxy_config`, in var/haproxy.cfg; stats
on HAPROXY_STATS_PORT, default API_PORT + 9); HAProxy is installed with apt-get if missing.
"""

import argparse
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
LOGS = VAR / "log"
PIDS = VAR / "run"
BIN = ROOT / ".venv" / "bin"
API_PORT = int(os.environ.get("API_PORT", "8000"))
FLOWER_PORT = int(os.environ.get("FLOWER_PORT", "5555"))
DEMO_EMAIL = "demo@example.com"  # `make run`'s dashboard login, admin of org "demo"
API_WORKERS = os.environ.get("API_WORKERS", "2")
WORKER_CONCURRENCY = os.environ.get("WORKER_CONCURRENCY", "2")
# Drains wait on Kafka and ClickHouse most of the time: threads, one per partition.
INGEST_CONCURRENCY = os.environ.get("INGEST_CONCURRENCY",
                                    os.environ.get("KAFKA_SPANS_PARTITIONS", "12"))

# Celery processes run under llmops.supervise, which starts them again when they exit on
# their own (a Redis restart ends a Celery 5.7 worker for good), as a container runtime would.
SUPERVISED = [str(BIN / "python"), "-m", "llmops.supervise"]
API_INSTANCES = int(os.environ.get("API_INSTANCES", "1"))
HAPROXY = "/usr/sbin/haproxy"


def gunicorn(port: int) -> list[str]:
    return [
        str(BIN / "gunicorn"), "llmops.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", API_WORKERS,
        "--access-logfile", "-", "--timeout", "60",
    ]


PROCESSES = {
    "api": gunicorn(API_PORT),
    "ingest": [
        *SUPERVISED, str(BIN / "celery"), "-A", "celery_app", "worker", "--loglevel", "INFO",
        "-Q", "ingest", "--pool", "threads", "--concurrency", INGEST_CONCURRENCY,
        "--hostname", "ingest@%h",
    ],
    "worker": [
        *SUPERVISED, str(BIN / "celery"), "-A", "celery_app", "worker", "--loglevel", "INFO",
        "-Q", "evaluation,costs,operations", "--concurrency", WORKER_CONCURRENCY,
        "--hostname", "worker@%h",
    ],
    "beat": [
        *SUPERVISED, str(BIN / "celery"), "-A", "celery_app", "beat", "--loglevel", "INFO",
        "--schedule", str(VAR / "celerybeat-schedule"),
    ],
    "flower": [],  # see flower_command(): its address and auth come from the environment
}


def flower_command(environ: dict[str, str] | None = None) -> list[str]:
    """Flower listens on loopback (FLOWER_ADDRESS, default 127.0.0.1). It shows every task's
    arguments and can revoke tasks and shut workers down, so any other address needs
    FLOWER_BASIC_AUTH (user:password, also applied on loopback when set)."""
    environ = os.environ if environ is None else environ
    address = environ.get("FLOWER_ADDRESS", "127.0.0.1")
    auth = environ.get("FLOWER_BASIC_AUTH", "")
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = address == "localhost"
    if not loopback and not auth:
        sys.exit(f"flower on {address} needs FLOWER_BASIC_AUTH=user:password "
                 "(or leave FLOWER_ADDRESS unset for loopback only)")
    # Flower reads FLOWER_BASIC_AUTH from the environment itself: kept out of argv (and ps).
    return [str(BIN / "celery"), "-A", "celery_app", "flower", f"--address={address}",
            f"--port={FLOWER_PORT}"]


# Ports of the API instances behind HAProxy (API_INSTANCES > 1), known once its config is made.
INSTANCE_PORTS: dict[str, int] = {}


def process_names() -> list[str]:
    """What `up` starts: "api" alone, or api-1..api-N and haproxy in front of them."""
    if API_INSTANCES <= 1:
        return list(PROCESSES)
    api = [f"api-{n}" for n in range(1, API_INSTANCES + 1)]
    return [*api, "haproxy", *[name for name in PROCESSES if name != "api"]]


def command(name: str) -> list[str]:
    if name in INSTANCE_PORTS:
        return gunicorn(INSTANCE_PORTS[name])
    if name == "haproxy":
        return [HAPROXY, "-f", str(VAR / "haproxy.cfg"), "-db"]
    return flower_command() if name == "flower" else PROCESSES[name]


def stoppable() -> list[str]:
    """process_names(), and whatever an earlier `up` with other API_INSTANCES left running."""
    names = process_names()
    # var/run holds the services' pid files too (scripts/services.py): only ours here.
    left = sorted(path.stem for path in [*PIDS.glob("api-*.pid"), PIDS / "haproxy.pid"]
                  if path.exists() and path.stem not in names)
    return [*left, *names]


def prepare_load_balancer() -> None:
    """HAProxy installed (apt-get, as scripts/services.py does) and configured from settings."""
    done = subprocess.run([str(BIN / "python"), str(ROOT / "scripts" / "services.py"),
                           "haproxy"])
    if done.returncode != 0:
        sys.exit("HAProxy is needed for API_INSTANCES > 1 and could not be installed")
    out = manage("haproxy_config", "--write", str(VAR / "haproxy.cfg"))
    ports = out.strip().splitlines()[-1].split(":", 1)[1].split()
    INSTANCE_PORTS.update({f"api-{n}": int(port) for n, port in enumerate(ports, start=1)})


def manage(*args: str) -> str:
    result = subprocess.run(
        [str(BIN / "python"), "manage.py", *args], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def pid_of(name: str) -> int | None:
    path = PIDS / f"{name}.pid"
    try:
        pid = int(path.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


# Every process writes its Prometheus counters here; /metrics adds them up.
METRICS_DIR = VAR / "prometheus"


def start(name: str) -> None:
    if pid_of(name):
        print(f"{name:8} already running")
        return
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(METRICS_DIR)}
    with open(LOGS / f"{name}.log", "ab") as log:
        process = subprocess.Popen(
            command(name), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        )
    (PIDS / f"{name}.pid").write_text(str(process.pid))
    print(f"{name:8} started (pid {process.pid}, log var/log/{name}.log)")


def stop(name: str) -> None:
    pid = pid_of(name)
    if not pid:
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and pid_of(name):
        time.sleep(0.2)
    if pid_of(name):
        os.killpg(pid, signal.SIGKILL)
    (PIDS / f"{name}.pid").unlink(missing_ok=True)
    print(f"{name:8} stopped")


def wait_for_api(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{API_PORT}/health/live"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"the API did not answer {url} within {timeout:.0f}s; see var/log/api.log")


def up() -> None:
    manage("migrate", "--noinput")
    manage("migrate_clickhouse")
    manage("sync_prices")  # model prices from the genai-prices package; operators' edits kept
    manage("ensure_kafka_topics")
    manage("collectstatic", "--noinput")
    # One demo key for every `make run`: kept under var/ and reused while it is active.
    key = manage("create_api_key", "demo", "--name", "demo key",
                 "--reuse-file", str(VAR / "demo_api_key")).strip().splitlines()[-1]
    # And one demo person for the dashboard, password kept under var/ (mode 0600).
    demo_password = manage("create_user", DEMO_EMAIL, "--org", "demo", "--role", "admin",
                           "--staff", "--password-file",
                           str(VAR / "demo_password")).strip().splitlines()[-1]
    if API_INSTANCES > 1:
        prepare_load_balancer()
    if not any(pid_of(name) for name in stoppable()):
        # Counters of processes that are gone would be added to the new ones'.
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for name in process_names():
        start(name)
    wait_for_api()
    print(
        f"\nDashboard http://127.0.0.1:{API_PORT}/  (sign in as {DEMO_EMAIL} / {demo_password})"
        f"\nAPI      http://127.0.0.1:{API_PORT}/api/v1/spans"
        f"\nDocs     http://127.0.0.1:{API_PORT}/api/docs/"
        f"\nAdmin    http://127.0.0.1:{API_PORT}/admin/  (python manage.py createsuperuser)"
        f"\nHealth   http://127.0.0.1:{API_PORT}/health/"
        # Through HAProxy /metrics wants METRICS_TOKEN; an instance's port sees every process.
        f"\nMetrics  http://127.0.0.1:{next(iter(INSTANCE_PORTS.values()), API_PORT)}/metrics"
        f"\nFlower   http://127.0.0.1:{FLOWER_PORT}/"
        f"\nDemo API key (org 'demo'): {key}"
        + (f"\nHAProxy  http://127.0.0.1:{API_PORT}/ in front of {API_INSTANCES} API instances "
           f"(ports {', '.join(map(str, INSTANCE_PORTS.values()))}); stats "
           f"http://127.0.0.1:{os.environ.get('HAPROXY_STATS_PORT', API_PORT + 9)}/"
           if INSTANCE_PORTS else "")
        + "\nStop with: make stop"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    action = parser.parse_args().action
    if action == "up":
        up()
    elif action == "down":
        for name in reversed(stoppable()):
            stop(name)
    else:
        for name in stoppable():
            print(f"{name:8} {'up' if pid_of(name) else 'down'}")


if __name__ == "__main__":
    main()
