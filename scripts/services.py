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
import time
import urllib.request
from pathlib import Path

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
KAFKA_DATA = KAFKA_DIR / "data"
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
    try:
        pid = int(pid_path(name).read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError):
        return None
    return pid if cmd_hint in cmdline else None


def spawn(name: str, argv: list[str]) -> subprocess.Popen:
    """Run argv detached from this process (own session), output appended to its log."""
    with open(log_path(name), "ab") as log:
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
    pid_path(name).write_text(f"{proc.pid}\n")
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


def stop_pid(name: str, pid: int) -> None:
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
    pid_path(name).unlink(missing_ok=True)


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


def kafka_ready() -> bool:
    """Send an ApiVersions request (key 18, v0) and expect error_code 0 in the answer."""
    correlation_id = 7
    client_id = b"services.py"
    request = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((HOST, port("kafka")), timeout=2) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", _recv_exact(sock, 4))[0]
            answer = _recv_exact(sock, min(size, 6))
    except (OSError, struct.error):
        return False
    got_id, error_code = struct.unpack(">ih", answer)
    return got_id == correlation_id and error_code == 0


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


def kafka_write_config() -> Path:
    """server.properties and log4j2 config, rewritten each start so env ports apply."""
    controller = f"{HOST}:{port('kafka-controller')}"
    props = f"""\
# Written by scripts/services.py on each start; edit the script, not this file.
# One node in KRaft mode, acting as broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{controller}
listeners=PLAINTEXT://{HOST}:{port("kafka")},CONTROLLER://{controller}
advertised.listeners=PLAINTEXT://{HOST}:{port("kafka")}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs={KAFKA_DATA}
num.partitions=1
auto.create.topics.enable=false
# A single node cannot hold more than one replica of the internal topics.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumers in tests should not wait 3 s for the first rebalance.
group.initial.rebalance.delay.ms=0
# 7 days, the retention of the design document.
log.retention.hours=168
"""
    path = KAFKA_DIR / "server.properties"
    path.write_text(props)
    # Everything to stdout, which spawn() appends to var/log/kafka.log: one writer, one file.
    (KAFKA_DIR / "log4j2.properties").write_text("""\
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
# which would bury the lines that matter; var/kafka/server.properties holds ours.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
""")
    return path


def kafka_java(main: str, *args: str) -> list[str]:
    log4j = KAFKA_DIR / "log4j2.properties"
    return [
        "java",
        "-Xms256m",
        "-Xmx768m",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{KAFKA_LIBS}/*",
        main,
        *args,
    ]


def kafka_format(config: Path) -> None:
    """Format the log dir once: KRaft refuses to start on a directory without meta.properties."""
    if (KAFKA_DATA / "meta.properties").exists():
        return
    KAFKA_DATA.mkdir(parents=True, exist_ok=True)
    # A cluster id is a Kafka Uuid: 16 random bytes, url-safe base64 without padding, not
    # starting with "-" (it would read as an option). os.urandom, not the uuid module: that one
    # imports `platform`, which scripts/platform.py shadows when this runs as scripts/services.py.
    cluster_id = "-"
    while cluster_id.startswith("-"):
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    done = subprocess.run(
        kafka_java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    with open(log_path("kafka"), "a") as log:
        log.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise ServiceError(f"kafka: formatting {KAFKA_DATA} failed")


def kafka_start() -> None:
    ensure_commands({"java": "openjdk-17-jre-headless"})
    kafka_fetch_jars()
    config = kafka_write_config()
    kafka_format(config)
    proc = spawn("kafka", kafka_java("kafka.Kafka", str(config)))
    wait_spawned("kafka", proc, kafka_ready)


def kafka_stop() -> bool:
    pid = read_pid("kafka", "kafka.Kafka")
    if pid is None:
        return False
    stop_pid("kafka", pid)
    return True


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


def browser() -> int:
    """Install Chromium and its driver when missing: only the browser tests need them."""
    try:
        ensure_commands(BROWSER_PACKAGES)
    except ServiceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("browser    chromium and chromedriver present", flush=True)
    return 0


# Several API processes behind a load balancer (API_INSTANCES > 1, tests/test_load_balancer.py).
HAPROXY_PACKAGES = {"/usr/sbin/haproxy": "haproxy"}


def haproxy() -> int:
    """Install Debian's HAProxy when missing: only API_INSTANCES > 1 and its tests need it."""
    try:
        ensure_commands(HAPROXY_PACKAGES)
    except ServiceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("haproxy    /usr/sbin/haproxy present", flush=True)
    return 0


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
            print(f"{name:<10} {'up' if ok else 'down':<5} {HOST}:{port(name)}", flush=True)
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
    return 0 if all_up else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
