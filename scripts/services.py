#!/usr/bin/env python3
"""Start, stop and report the local dev services: redis, postgres, kafka, clickhouse.

    python scripts/services.py up     [NAME ...]   # start what is not answering, wait until ready
    python scripts/services.py down   [NAME ...]   # stop what this script started
    python scripts/services.py status [NAME ...]   # exit 0 if all asked are up, 1 otherwise
    python scripts/services.py browser            # install chromium for the browser tests
    python scripts/services.py haproxy            # install HAProxy (API_INSTANCES > 1)

Everything lives under var/ in the repo root (git-ignored): data dirs, downloaded Kafka jars,
logs in var/log/<name>.log, pid files in var/run/<name>.pid. Services listen on 127.0.0.1 only.

Standard library only: this runs before the venv has anything installed.

Environment:
    REDIS_PORT (6379), PG_PORT (5432), KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093),
    CLICKHOUSE_HTTP_PORT (8123), <NAME>_START_TIMEOUT in seconds (KAFKA 60, the others 30).
    KAFKA_BROKERS (1): 3 starts a cluster of three KRaft nodes (each broker and controller);
    node i listens on KAFKA_PORT + KAFKA_PORT_STEP * i (step 100), its controller on
    KAFKA_CONTROLLER_PORT + KAFKA_PORT_STEP * i, data in var/kafka/<i>/. KAFKA_HEAP_MB (768 for
    one node, 384 per node of a cluster), KAFKA_JVM_FLAGS (extra java options; a cluster's
    nodes default to the quick compiler and the serial GC), KAFKA_REPLICATION_FACTOR and
    KAFKA_MIN_INSYNC_REPLICAS (3 and 2 with three brokers, 1 and 1 with one) for the internal
    topics, as the platform's settings read them for its own.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
LOG_DIR = VAR / "log"
RUN_DIR = VAR / "run"
HOST = "127.0.0.1"
NAMES = ("redis", "postgres", "kafka", "clickhouse")

# Dev-only credentials; llmops/settings/test.py defaults to postgres://llmops:llmops@127.0.0.1:5432.
PG_ROLE = PG_PASSWORD = PG_DB = "llmops"
PG_DATA = VAR / "postgres"

KAFKA_DIR = VAR / "kafka"
KAFKA_LIBS = KAFKA_DIR / "libs"
KAFKA_POM = ROOT / "scripts" / "kafka" / "pom.xml"
KAFKA_MARKER = KAFKA_LIBS / ".downloaded"

CLICKHOUSE_DIR = VAR / "clickhouse"


class ServiceError(Exception):
    """A service could not be started or stopped; the message says why."""


# --------------------------------------------------------------------------- helpers


def port(name: str) -> int:
    env, default = {
        "redis": ("REDIS_PORT", 6379),
        "postgres": ("PG_PORT", 5432),
        "kafka": ("KAFKA_PORT", 9092),
        "kafka-controller": ("KAFKA_CONTROLLER_PORT", 9093),
        "clickhouse": ("CLICKHOUSE_HTTP_PORT", 8123),
    }[name]
    return int(os.environ.get(env, default))


def start_timeout(name: str) -> float:
    default = 60 if name == "kafka" else 30
    return float(os.environ.get(f"{name.upper()}_START_TIMEOUT", default))


def log_path(name: str) -> Path:
    return LOG_DIR / f"{name}.log"


def pid_path(name: str) -> Path:
    return RUN_DIR / f"{name}.pid"


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def port_open(port_no: int) -> bool:
    try:
        with socket.create_connection((HOST, port_no), timeout=1):
            return True
    except OSError:
        return False


def read_pid(name: str, cmd_hint: str) -> int | None:
    """The pid in var/run/<name>.pid if that process is alive and is what we started.

    Checking the command line guards against a stale pid file whose number was reused by an
    unrelated process, which `down` would otherwise kill.
    """
    return read_pid_file(pid_path(name), cmd_hint)


def read_pid_file(path: Path, cmd_hint: str) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError):
        return None
    return pid if cmd_hint in cmdline else None


def spawn(name: str, argv: list[str], *, log_file: Path | None = None,
          pid_file: Path | None = None) -> subprocess.Popen:
    """Run argv detached from this process (own session), output appended to its log."""
    with open(log_file or log_path(name), "ab") as log:
        log.write(f"\n===== {time.strftime('%F %T')} services.py starts {name}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (pid_file or pid_path(name)).write_text(f"{proc.pid}\n")
    return proc


def wait_ready(name: str, ready, alive=lambda: True) -> None:
    """Poll ready() until true; fail early if alive() turns false, or at the timeout."""
    deadline = time.monotonic() + start_timeout(name)
    while True:
        if ready():
            return
        if not alive():
            raise ServiceError(f"{name}: the process exited during start-up")
        if time.monotonic() > deadline:
            raise ServiceError(
                f"{name}: not answering on port {port(name)} after {start_timeout(name):.0f}s "
                f"(set {name.upper()}_START_TIMEOUT to wait longer)"
            )
        time.sleep(0.25)


def wait_spawned(name: str, proc: subprocess.Popen, ready) -> None:
    """wait_ready for a process from spawn(); on failure stop it, so nothing half-up is left."""
    try:
        wait_ready(name, ready, lambda: proc.poll() is None)
    except ServiceError as err:
        if proc.poll() is not None:
            raise ServiceError(
                f"{name}: the process exited with code {proc.returncode} during start-up"
            ) from None
        stop_pid(name, proc.pid)
        raise ServiceError(f"{err}; stopped it") from None


def stop_pid(name: str, pid: int, pid_file: Path | None = None) -> None:
    """SIGTERM, wait up to 20 s for a clean shutdown, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.2)
        else:
            print(f"{name}: no exit 20 s after SIGTERM, sending SIGKILL", file=sys.stderr)
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    (pid_file or pid_path(name)).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an exited, unreaped process)."""
    with contextlib.suppress(ChildProcessError):  # reap it if it is our own child
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ensure_commands(packages: dict[str, str]) -> None:
    """apt-get install the Debian package for each command that is missing (fresh CI box)."""
    missing = sorted({pkg for cmd, pkg in packages.items() if not _have(cmd)})
    if not missing:
        return
    if os.geteuid() != 0:
        raise ServiceError(f"missing packages {missing}; install them (this script is not root)")
    print(f"installing {' '.join(missing)} with apt-get ...", file=sys.stderr, flush=True)
    # Debian's postinst scripts would start the stock services (a stock redis or cluster on our
    # ports); policy-rc.d exit 101 forbids that while we install, as Docker images do.
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *missing]):
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise ServiceError(
                    f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
                )
    finally:
        if own_policy:
            policy.unlink(missing_ok=True)


def _have(cmd: str) -> bool:
    return bool(glob.glob(cmd)) if cmd.startswith("/") else shutil.which(cmd) is not None


# --------------------------------------------------------------------------- redis


def redis_ready() -> bool:
    """PING in RESP over a raw socket; a PONG means a usable redis (no password set)."""
    try:
        with socket.create_connection((HOST, port("redis")), timeout=2) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_start() -> None:
    ensure_commands({"redis-server": "redis-server"})
    (VAR / "redis").mkdir(parents=True, exist_ok=True)
    pid_path("redis").unlink(missing_ok=True)  # so a pid file seen below is the new one
    # No config file: Debian's /etc/redis/redis.conf belongs to the system service. Bound to
    # loopback, protected mode off is harmless and avoids refusals of passwordless clients.
    argv = [
        "redis-server",
        "--port",
        str(port("redis")),
        "--bind",
        HOST,
        "--protected-mode",
        "no",
        "--daemonize",
        "yes",
        "--dir",
        str(VAR / "redis"),
        "--pidfile",
        str(pid_path("redis")),
        "--logfile",
        str(log_path("redis")),
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise ServiceError(
            f"redis: redis-server exited {done.returncode}: {done.stdout}{done.stderr}"
        )

    def alive() -> bool:
        # Until the daemon writes its pid file it is still starting; after, it must be alive.
        return not pid_path("redis").exists() or read_pid("redis", "redis-server") is not None

    wait_ready("redis", redis_ready, alive)


def redis_stop() -> bool:
    pid = read_pid("redis", "redis-server")
    if pid is None:
        return False
    stop_pid("redis", pid)  # redis treats SIGTERM as SHUTDOWN (saves the RDB, then exits)
    return True


# --------------------------------------------------------------------------- postgres


def pg_bin(tool: str) -> str:
    """Debian keeps server binaries per major version; use the newest installed."""
    dirs = glob.glob("/usr/lib/postgresql/*/bin")
    dirs.sort(key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    for d in reversed(dirs):
        if os.path.exists(f"{d}/{tool}"):
            return f"{d}/{tool}"
    found = shutil.which(tool)
    if found is None:
        raise ServiceError(f"postgres: {tool} not found")
    return found


def pg_socket_dir() -> Path:
    # A unix socket path is limited to 107 bytes; a deep checkout would overflow it.
    sock_dir = RUN_DIR / "postgres"
    return sock_dir if len(str(sock_dir)) < 80 else Path("/tmp")


def as_postgres(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command as the postgres OS user (initdb and postgres refuse to run as root)."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, **kwargs)


def chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def pg_ready() -> bool:
    try:
        cmd = pg_bin("pg_isready")
    except ServiceError:  # not installed (status on a fresh box): fall back to the port
        return port_open(port("postgres"))
    done = subprocess.run([cmd, "-q", "-h", HOST, "-p", str(port("postgres")), "-t", "2"])
    return done.returncode == 0


def pg_ours_running() -> bool:
    """Our cluster runs, on PG_PORT (line 4 of postmaster.pid; a changed PG_PORT is not ours)."""
    if not (PG_DATA / "PG_VERSION").exists():
        return False
    if as_postgres([pg_bin("pg_ctl"), "status", "-D", str(PG_DATA)]).returncode != 0:
        return False
    lines = (PG_DATA / "postmaster.pid").read_text().splitlines()
    return len(lines) > 3 and lines[3].strip() == str(port("postgres"))


def pg_accepts_our_login() -> bool:
    done = subprocess.run(
        [
            pg_bin("psql"),
            "-h",
            HOST,
            "-p",
            str(port("postgres")),
            "-U",
            PG_ROLE,
            "-d",
            PG_DB,
            "-tAc",
            "select 1",
        ],
        env={**os.environ, "PGPASSWORD": PG_PASSWORD, "PGCONNECT_TIMEOUT": "3"},
        capture_output=True,
        text=True,
    )
    return done.returncode == 0


def pg_make_reachable() -> None:
    """The postgres user must traverse every directory above var/postgres (the repo is root's)."""
    if os.geteuid() != 0 or as_postgres(["test", "-w", str(PG_DATA)]).returncode == 0:
        return
    for parent in reversed(PG_DATA.parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            print(
                f"postgres: chmod o+x {parent} so the postgres user can reach its data",
                file=sys.stderr,
            )
            parent.chmod(mode | 0o001)


def pg_init() -> None:
    """initdb once: trust on the local socket (the script's admin path), passwords over TCP."""
    PG_DATA.mkdir(parents=True, exist_ok=True)
    PG_DATA.chmod(0o700)
    chown_postgres(PG_DATA)
    pg_make_reachable()
    if (PG_DATA / "PG_VERSION").exists():
        return
    done = as_postgres(
        [
            pg_bin("initdb"),
            "-D",
            str(PG_DATA),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ]
    )
    if done.returncode != 0:
        raise ServiceError(f"postgres: initdb failed:\n{done.stdout}{done.stderr}")


def pg_start() -> None:
    ensure_commands({"/usr/lib/postgresql/*/bin/initdb": "postgresql"})
    pg_init()
    sock_dir = pg_socket_dir()
    if sock_dir != Path("/tmp"):
        sock_dir.mkdir(parents=True, exist_ok=True)
        chown_postgres(sock_dir)
    log_path("postgres").touch()
    chown_postgres(log_path("postgres"))  # pg_ctl opens the log as the postgres user
    # Port and addresses are passed on each start (not written to postgresql.conf) so that
    # changing PG_PORT needs no edit of the cluster.
    opts = (
        f"-p {port('postgres')} -c listen_addresses={HOST} "
        f"-c unix_socket_directories={shlex.quote(str(sock_dir))}"
    )
    done = as_postgres(
        [
            pg_bin("pg_ctl"),
            "start",
            "-D",
            str(PG_DATA),
            "-l",
            str(log_path("postgres")),
            "-o",
            opts,
            "-w",
            "-t",
            str(int(start_timeout("postgres"))),
        ]
    )
    if done.returncode != 0:
        raise ServiceError(f"postgres: pg_ctl start failed: {done.stdout}{done.stderr}".strip())
    wait_ready("postgres", pg_ready)


def pg_ensure_role_and_db() -> None:
    """Create role and database llmops if missing (as superuser over our socket)."""
    sql = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_ROLE}') THEN
    CREATE ROLE {PG_ROLE} LOGIN CREATEDB PASSWORD '{PG_PASSWORD}';
  END IF;
END $$;
SELECT 'CREATE DATABASE {PG_DB} OWNER {PG_ROLE}'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{PG_DB}') \\gexec
"""
    done = as_postgres(
        [
            pg_bin("psql"),
            "-h",
            str(pg_socket_dir()),
            "-p",
            str(port("postgres")),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
        ],
        input=sql,
    )
    if done.returncode != 0:
        raise ServiceError(f"postgres: creating role/database failed: {done.stderr}")


def pg_stop() -> bool:
    if not pg_ours_running():
        return False
    done = as_postgres([pg_bin("pg_ctl"), "stop", "-D", str(PG_DATA), "-m", "fast", "-t", "20"])
    if done.returncode != 0:
        raise ServiceError(f"postgres: pg_ctl stop failed: {done.stdout}{done.stderr}")
    return True


# --------------------------------------------------------------------------- kafka


class KafkaNode(NamedTuple):
    """One KRaft node (broker and controller in one process) and where its files go. A
    NamedTuple, not a dataclass: chaos/ loads this file without a sys.modules entry."""

    index: int
    name: str  # in messages; its log and pid files are named after it
    port: int
    controller_port: int
    home: Path  # server.properties, log4j2.properties and data/
    log: Path
    pid: Path
    heap_mb: int
    jvm_flags: tuple[str, ...]

    @property
    def node_id(self) -> int:
        return self.index + 1

    @property
    def data(self) -> Path:
        return self.home / "data"


def kafka_brokers() -> int:
    count = int(os.environ.get("KAFKA_BROKERS", 1))
    if count < 1:
        raise ServiceError(f"KAFKA_BROKERS={count}: at least one broker")
    return count


def kafka_nodes(count: int | None = None, *, base_port: int | None = None,
                base_controller_port: int | None = None, var: Path = VAR) -> list[KafkaNode]:
    """The nodes of KAFKA_BROKERS (or `count`): one is today's single broker (var/kafka,
    var/log/kafka.log); node i of a cluster adds KAFKA_PORT_STEP * i to both ports, so the
    stacks of the other checkouts (2 ports apart) never meet it."""
    count = kafka_brokers() if count is None else count
    base_port = port("kafka") if base_port is None else base_port
    base_controller_port = (port("kafka-controller") if base_controller_port is None
                            else base_controller_port)
    if count == 1:
        heap = int(os.environ.get("KAFKA_HEAP_MB", 768))
        flags = tuple(os.environ.get("KAFKA_JVM_FLAGS", "").split())
        return [KafkaNode(0, "kafka", base_port, base_controller_port, var / "kafka",
                          var / "log" / "kafka.log", var / "run" / "kafka.pid", heap, flags)]
    step = int(os.environ.get("KAFKA_PORT_STEP", 100))
    # Three JVMs beside everything else on one machine: a small heap each, one GC thread, and
    # the quick compiler only (the three start in 8 s of CPU instead of 16 here; a dev
    # cluster's load does not need the optimizing compiler).
    heap = int(os.environ.get("KAFKA_HEAP_MB", 384))
    flags = tuple(os.environ.get("KAFKA_JVM_FLAGS",
                                 "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC").split())
    return [KafkaNode(i, f"kafka-{i}", base_port + step * i, base_controller_port + step * i,
                      var / "kafka" / str(i), var / "log" / f"kafka-{i}.log",
                      var / "run" / f"kafka-{i}.pid", heap, flags) for i in range(count)]


def kafka_bootstrap(nodes: list[KafkaNode] | None = None) -> str:
    """KAFKA_BOOTSTRAP_SERVERS for these nodes."""
    return ",".join(f"{HOST}:{node.port}" for node in nodes or kafka_nodes())


def kafka_ready() -> bool:
    return all(kafka_answers(node.port) for node in kafka_nodes())


def kafka_answers(port_no: int) -> bool:
    """Send an ApiVersions request (key 18, v0) and expect error_code 0 in the answer."""
    correlation_id = 7
    client_id = b"services.py"
    request = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((HOST, port_no), timeout=2) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", _recv_exact(sock, 4))[0]
            answer = _recv_exact(sock, min(size, 6))
    except (OSError, struct.error):
        return False
    got_id, error_code = struct.unpack(">ih", answer)
    return got_id == correlation_id and error_code == 0


def kafka_brokers_seen(port_no: int) -> int:
    """How many brokers the node's metadata lists (Metadata v4, no topics): a broker is
    listed once the controller has registered and unfenced it; 0 without an answer."""
    correlation_id = 9
    client_id = b"services.py"
    request = (struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
               + struct.pack(">i?", 0, False))
    try:
        with socket.create_connection((HOST, port_no), timeout=2) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", _recv_exact(sock, 4))[0]
            answer = _recv_exact(sock, min(size, 12))
    except (OSError, struct.error):
        return 0
    got_id, _throttle_ms, brokers = struct.unpack(">iii", answer)
    return brokers if got_id == correlation_id else 0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


def kafka_version() -> str:
    return re.search(r"<kafka\.version>(.+?)</kafka\.version>", KAFKA_POM.read_text()).group(1)


def kafka_fetch_jars() -> None:
    """Download the broker jars with Maven once; the marker records which pom they came from."""
    pom_hash = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()[:16]
    marker = f"kafka {kafka_version()} pom {pom_hash}\n"
    if KAFKA_MARKER.exists() and KAFKA_MARKER.read_text() == marker:
        return
    ensure_commands({"mvn": "maven"})
    KAFKA_LIBS.mkdir(parents=True, exist_ok=True)
    for old in KAFKA_LIBS.glob("*.jar"):  # never mix two versions on the classpath
        old.unlink()
    print(
        f"kafka: downloading Kafka {kafka_version()} jars with Maven ...",
        file=sys.stderr,
        flush=True,
    )
    done = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(KAFKA_POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={KAFKA_LIBS}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ServiceError(
            f"kafka: Maven download failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    KAFKA_MARKER.write_text(marker)


def kafka_replication(count: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of the internal topics; the platform's
    settings derive its own topics' the same way from KAFKA_BROKERS."""
    factor = int(os.environ.get("KAFKA_REPLICATION_FACTOR", min(count, 3)))
    return factor, int(os.environ.get("KAFKA_MIN_INSYNC_REPLICAS", 2 if factor >= 3 else 1))


def kafka_write_config(node: KafkaNode, nodes: list[KafkaNode]) -> Path:
    """server.properties and log4j2 config, rewritten each start so env ports apply."""
    node.home.mkdir(parents=True, exist_ok=True)
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes)
    factor, min_isr = kafka_replication(len(nodes))
    if len(nodes) == 1:
        replication = f"""\
# A single node cannot hold more than one replica of the internal topics.
offsets.topic.replication.factor={factor}
transaction.state.log.replication.factor={factor}
transaction.state.log.min.isr={min_isr}
share.coordinator.state.topic.replication.factor={factor}
share.coordinator.state.topic.min.isr={min_isr}
"""
    else:
        replication = f"""\
# Every partition on {factor} nodes. acks=all waits for every in-sync replica, and a partition
# with fewer than {min_isr} in sync refuses writes: what was acknowledged is on {min_isr} nodes
# at least, and one node may die while partitions keep taking writes.
default.replication.factor={factor}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={factor}
transaction.state.log.replication.factor={factor}
transaction.state.log.min.isr={min_isr}
share.coordinator.state.topic.replication.factor={factor}
share.coordinator.state.topic.min.isr={min_isr}
"""
    what = ("One node in KRaft mode, acting as broker and controller." if len(nodes) == 1 else
            f"Node {node.index} of {len(nodes)} in KRaft mode, each broker and controller "
            f"(a quorum of {len(nodes)}).")
    props = f"""\
# Written by scripts/services.py on each start; edit the script, not this file.
# {what}
process.roles=broker,controller
node.id={node.node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}
advertised.listeners=PLAINTEXT://{HOST}:{node.port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs={node.data}
num.partitions=1
auto.create.topics.enable=false
{replication}\
# Consumers in tests should not wait 3 s for the first rebalance.
group.initial.rebalance.delay.ms=0
# 7 days, the retention of the design document.
log.retention.hours=168
"""
    path = node.home / "server.properties"
    path.write_text(props)
    # Everything to stdout, which spawn() appends to the node's log: one writer, one file.
    (node.home / "log4j2.properties").write_text("""\
# Written by scripts/services.py.
# Keep logging through the JVM shutdown hooks, so the broker's shutdown lines are not lost.
shutdownHook = disable
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
# Each client and server config is dumped in full at INFO (~250 lines, 25+ times per start),
# which would bury the lines that matter; server.properties beside this file holds ours.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
""")
    return path


def kafka_java(node: KafkaNode, main: str, *args: str) -> list[str]:
    log4j = node.home / "log4j2.properties"
    return [
        "java",
        f"-Xms{min(256, node.heap_mb)}m",
        f"-Xmx{node.heap_mb}m",
        "-XX:+ExitOnOutOfMemoryError",
        *node.jvm_flags,
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{KAFKA_LIBS}/*",
        main,
        *args,
    ]


def kafka_cluster_id(nodes: list[KafkaNode]) -> str:
    """The id a formatted node already has (a node whose data was lost rejoins its cluster),
    or a new one."""
    for node in nodes:
        with contextlib.suppress(OSError):
            found = re.search(r"^cluster\.id=(\S+)", (node.data / "meta.properties").read_text(),
                              re.MULTILINE)
            if found:
                return found.group(1)
    # A cluster id is a Kafka Uuid: 16 random bytes, url-safe base64 without padding, not
    # starting with "-" (it would read as an option). os.urandom, not the uuid module: that one
    # imports `platform`, which scripts/platform.py shadows when this runs as scripts/services.py.
    cluster_id = "-"
    while cluster_id.startswith("-"):
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    return cluster_id


def kafka_format(node: KafkaNode, config: Path, cluster_id: str) -> None:
    """Format the log dir once: KRaft refuses to start on a directory without meta.properties."""
    if (node.data / "meta.properties").exists():
        return
    node.data.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        kafka_java(node, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c",
                   str(config)),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    with open(node.log, "a") as log:
        log.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise ServiceError(f"{node.name}: formatting {node.data} failed")


def kafka_start(nodes: list[KafkaNode] | None = None) -> None:
    """Start each node that does not answer, all at once (a node of a cluster serves only
    once a quorum of controllers is up), and wait until every node answers and, in a
    cluster, sees every broker."""
    if nodes is None:
        nodes = kafka_nodes()
        # Node 0 of a cluster and the single broker share KAFKA_PORT: the new nodes would
        # wait for a quorum with a stranger until the timeout.
        other = kafka_nodes(3 if len(nodes) == 1 else 1)
        if running := [n.name for n in other if read_pid_file(n.pid, "kafka.Kafka")]:
            raise ServiceError(
                f"{', '.join(running)} of the other layout (KAFKA_BROKERS) is running; stop it "
                "first with `scripts/services.py down kafka` (it stops both)")
    ensure_commands({"java": "openjdk-17-jre-headless"})
    kafka_fetch_jars()
    cluster_id = kafka_cluster_id(nodes)
    waiting: list[tuple[KafkaNode, subprocess.Popen | None]] = []
    for node in nodes:
        if kafka_answers(node.port):
            continue
        if read_pid_file(node.pid, "kafka.Kafka") is not None:
            waiting.append((node, None))  # ours, still starting: wait instead of a second copy
            continue
        if port_open(node.port):
            raise ServiceError(
                f"{node.name}: port {node.port} is taken by a program that does not answer "
                "as kafka")
        node.log.parent.mkdir(parents=True, exist_ok=True)
        node.pid.parent.mkdir(parents=True, exist_ok=True)
        config = kafka_write_config(node, nodes)
        kafka_format(node, config, cluster_id)
        waiting.append((node, spawn(node.name, kafka_java(node, "kafka.Kafka", str(config)),
                                    log_file=node.log, pid_file=node.pid)))
    def serving(node: KafkaNode) -> bool:
        # A node answers before the controller has unfenced every broker; until then a topic
        # of replication factor 3 cannot be created.
        return kafka_answers(node.port) and (
            len(nodes) == 1 or kafka_brokers_seen(node.port) == len(nodes))

    deadline = time.monotonic() + start_timeout("kafka")
    while waiting:
        waiting = [(node, proc) for node, proc in waiting if not serving(node)]
        failed = next((f"{node.name}: the process exited with code {proc.returncode} during "
                       "start-up" for node, proc in waiting
                       if proc is not None and proc.poll() is not None), None)
        if failed is None and waiting and time.monotonic() > deadline:
            failed = (f"{', '.join(node.name for node, _ in waiting)}: not answering after "
                      f"{start_timeout('kafka'):.0f}s (set KAFKA_START_TIMEOUT to wait longer)")
        if failed:
            for node, proc in waiting:  # nothing half-up is left
                if proc is not None and proc.poll() is None:
                    stop_pid(node.name, proc.pid, node.pid)
            logs = "\n".join(f"--- last 20 lines of {node.log}:\n{tail(node.log)}"
                             for node, _ in waiting)
            raise ServiceError(f"{failed}\n{logs}")
        time.sleep(0.25)


def kafka_stop(nodes: list[KafkaNode] | None = None) -> bool:
    """Stop every node these pid files name, all at once: a node stopped alone waits for
    the others to take over its partitions. Without `nodes`, both layouts under var/ (one
    broker and a cluster), whatever KAFKA_BROKERS says now."""
    if nodes is None:
        nodes = kafka_nodes(1) + kafka_nodes(max(3, kafka_brokers()))
    running = [(node, pid) for node in nodes
               if (pid := read_pid_file(node.pid, "kafka.Kafka")) is not None]
    stoppers = [threading.Thread(target=stop_pid, args=(node.name, pid, node.pid))
                for node, pid in running]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()
    return bool(running)


# --------------------------------------------------------------------------- clickhouse


def clickhouse_ready() -> bool:
    url = f"http://{HOST}:{port('clickhouse')}/ping"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.read().strip() == b"Ok."
    except OSError:
        return False


def clickhouse_start() -> None:
    if not (ROOT / "llmops" / "chserver" / "__main__.py").exists():
        raise ServiceError("clickhouse: llmops/chserver/__main__.py does not exist (yet)")
    python = ROOT / ".venv" / "bin" / "python"
    for sub in ("data", "backups"):
        (CLICKHOUSE_DIR / sub).mkdir(parents=True, exist_ok=True)
    proc = spawn(
        "clickhouse",
        [
            str(python if python.exists() else sys.executable),
            "-m",
            "llmops.chserver",
            "--data-dir",
            str(CLICKHOUSE_DIR / "data"),
            "--backups-dir",
            str(CLICKHOUSE_DIR / "backups"),
            # The password of user `default`, generated at first start (mode 0600); the
            # settings read it for a CLICKHOUSE_URL without one.
            "--credentials-file",
            str(CLICKHOUSE_DIR / "credentials"),
            "--host",
            HOST,
            "--port",
            str(port("clickhouse")),
        ],
    )
    wait_spawned("clickhouse", proc, clickhouse_ready)


def clickhouse_stop() -> bool:
    pid = read_pid("clickhouse", "llmops.chserver")
    if pid is None:
        return False
    stop_pid("clickhouse", pid)
    return True


# --------------------------------------------------------------------------- commands

READY = {
    "redis": redis_ready,
    "postgres": pg_ready,
    "kafka": kafka_ready,
    "clickhouse": clickhouse_ready,
}
START = {
    "redis": redis_start,
    "postgres": pg_start,
    "kafka": kafka_start,
    "clickhouse": clickhouse_start,
}
STOP = {
    "redis": redis_stop,
    "postgres": pg_stop,
    "kafka": kafka_stop,
    "clickhouse": clickhouse_stop,
}
# The process this script starts, per service, to tell "ours but still starting" apart.
PID_HINT = {"redis": "redis-server", "kafka": "kafka.Kafka", "clickhouse": "llmops.chserver"}


def up(name: str) -> str:
    began = time.monotonic()
    if READY[name]():
        if name == "postgres" and pg_ours_running():
            pg_ensure_role_and_db()
        elif name == "postgres" and not pg_accepts_our_login():
            raise ServiceError(
                f"postgres: a server on port {port(name)} is not ours and "
                f"refuses {PG_ROLE}/{PG_PASSWORD}; stop it or set PG_PORT"
            )
        return "up (already running)"
    if name == "kafka":  # each node: up, ours still starting, or started (kafka_start)
        kafka_start()
        return f"up (started, {time.monotonic() - began:.1f}s)"
    hint = PID_HINT.get(name)
    if hint and read_pid(name, hint) is not None:
        # Ours, still starting (e.g. an earlier `up` timed out): wait instead of a second copy.
        wait_ready(name, READY[name])
        return f"up (was starting, {time.monotonic() - began:.1f}s)"
    if name != "postgres" and port_open(port(name)):
        raise ServiceError(
            f"{name}: port {port(name)} is taken by a program that does not answer as {name}"
        )
    START[name]()
    if name == "postgres":
        pg_ensure_role_and_db()
    return f"up (started, {time.monotonic() - began:.1f}s)"


def down(name: str) -> str:
    began = time.monotonic()
    if STOP[name]():
        return f"down (stopped, {time.monotonic() - began:.1f}s)"
    if READY[name]():
        return "up (not started by this script, left alone)"
    return "down (was not running)"


# The dashboard's browser tests drive Debian's Chromium through its chromedriver.
BROWSER_PACKAGES = {"/usr/bin/chromium": "chromium", "/usr/bin/chromedriver": "chromium-driver"}


def _install_missing(packages: dict[str, str], present: str) -> int:
    """Install Debian's `packages` (path -> package) when missing; 1 with the error if not."""
    try:
        ensure_commands(packages)
    except ServiceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(present, flush=True)
    return 0


def browser() -> int:
    """Install Chromium and its driver when missing: only the browser tests need them."""
    return _install_missing(BROWSER_PACKAGES, "browser    chromium and chromedriver present")


# Several API processes behind a load balancer (API_INSTANCES > 1, tests/test_load_balancer.py).
HAPROXY_PACKAGES = {"/usr/sbin/haproxy": "haproxy"}


def haproxy() -> int:
    """Install Debian's HAProxy when missing: only API_INSTANCES > 1 and its tests need it."""
    return _install_missing(HAPROXY_PACKAGES, "haproxy    /usr/sbin/haproxy present")


def main(argv: list[str]) -> int:
    if argv == ["browser"]:
        return browser()
    if argv == ["haproxy"]:
        return haproxy()
    if not argv or argv[0] not in ("up", "down", "status") or set(argv[1:]) - set(NAMES):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    command, names = argv[0], argv[1:] or list(NAMES)
    if command == "down" and not argv[1:]:
        names.reverse()  # stop consumers of a service before the service
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        VAR.chmod(0o755)  # postgres, another OS user, keeps its cluster below var/
    all_up = True
    for name in names:
        if command == "status":
            ok = READY[name]()
            all_up &= ok
            where = kafka_bootstrap() if name == "kafka" else f"{HOST}:{port(name)}"
            print(f"{name:<10} {'up' if ok else 'down':<5} {where}", flush=True)
            continue
        try:
            result = up(name) if command == "up" else down(name)
        except ServiceError as err:
            print(f"{name:<10} FAILED", flush=True)
            print(
                f"error: {err}\n--- last 20 lines of {log_path(name)}:\n{tail(log_path(name))}",
                file=sys.stderr,
            )
            return 1
        print(f"{name:<10} {result}", flush=True)
        if name == "kafka" and command == "up" and kafka_brokers() > 1:
            print(f"{'':<10} KAFKA_BOOTSTRAP_SERVERS={kafka_bootstrap()}", flush=True)
    return 0 if all_up else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
