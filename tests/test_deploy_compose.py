"""docker/: the compose files validated offline, as a reviewer would check them before running
them elsewhere: Debian's docker-compose resolves them (no Docker engine needed), HAProxy
checks its config, every mounted config file exists and parses (each server's files are
loaded by ClickHouse's own engine, chDB), and the cluster the files describe is one cluster
(2 shards x 2 replicas in remote_servers = the containers and their macros, 3 Keeper ids,
3 KRaft voters) that the app containers are pointed at."""

import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
CLUSTER_FILE = DOCKER / "docker-compose.cluster.yml"
SINGLE_FILE = DOCKER / "docker-compose.yml"
# The secrets the files refuse to start without; dummies, only to resolve them.
SECRETS = {"DJANGO_SECRET_KEY": "k", "CLICKHOUSE_PASSWORD": "p", "CLICKHOUSE_CLUSTER_SECRET": "s",
           "POSTGRES_PASSWORD": "p", "FLOWER_BASIC_AUTH": "u:p"}
TOOLS = {"docker-compose": "docker-compose", "/usr/sbin/haproxy": "haproxy"}


def settings_read() -> set[str]:
    """Every environment variable a setting reads (llmops/settings/*.py, through env())."""
    names = set()
    for path in (ROOT / "llmops" / "settings").glob("*.py"):
        names |= set(re.findall(r'\benv\(\s*"([A-Z0-9_]+)"', path.read_text()))
    return names


@pytest.fixture(scope="module")
def services():
    """scripts/services.py, the module that sets this machine's stack up."""
    spec = importlib.util.spec_from_file_location("services", ROOT / "scripts" / "services.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tools(services) -> None:
    """docker-compose and haproxy from Debian, installed by scripts/services.py's apt-get helper
    when missing (a fresh CI machine); a clear failure when they cannot be."""
    try:
        services.ensure_commands(TOOLS)
    except services.ServiceError as exc:
        pytest.fail(f"docker-compose/haproxy (Debian) are needed to validate docker/: {exc}")


def compose(path: Path, *args: str, secrets: bool = True) -> subprocess.CompletedProcess:
    # Only PATH and the dummy secrets: nothing of this shell's environment leaks in.
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", **(SECRETS if secrets else {})}
    return subprocess.run(["docker-compose", "-f", str(path), *args], env=env, cwd=DOCKER,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def cluster(tools) -> dict:
    """The cluster compose file as docker-compose resolves it (anchors merged, paths absolute)."""
    done = compose(CLUSTER_FILE, "config")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_both_compose_files_validate(tools, cluster):
    # The cluster file was validated by `config` itself (the fixture); the single-node file
    # must stay valid beside it.
    done = compose(SINGLE_FILE, "config", "-q")
    assert done.returncode == 0, f"{SINGLE_FILE.name}: {done.stderr}"
    # No default secret: without them the cluster file refuses, naming what is missing.
    done = compose(CLUSTER_FILE, "config", "-q", secrets=False)
    assert done.returncode != 0
    assert "set " in done.stderr, done.stderr


def test_cluster_has_every_process(cluster):
    services = set(cluster["services"])
    assert services >= {
        "kafka1", "kafka2", "kafka3", "clickhouse-keeper1", "clickhouse-keeper2",
        "clickhouse-keeper3", "clickhouse-shard1-replica1", "clickhouse-shard1-replica2",
        "clickhouse-shard2-replica1", "clickhouse-shard2-replica2", "redis", "postgres", "lb",
        "api1", "api2", "worker-ingest", "worker-evaluation", "beat", "flower", "migrate"}
    images = {name: service.get("image", "") for name, service in cluster["services"].items()}
    assert all(images[f"kafka{n}"].startswith("apache/kafka:4.") for n in (1, 2, 3))
    assert all(image.startswith("clickhouse/clickhouse-server:")
               for name, image in images.items() if name.startswith("clickhouse-shard"))
    assert all(image.startswith("clickhouse/clickhouse-keeper:")
               for name, image in images.items() if name.startswith("clickhouse-keeper"))
    assert images["lb"].startswith("haproxy:")
    assert cluster["services"].get("beat", {}).get("deploy", {}).get("replicas", 1) == 1


def mounts(service: dict) -> dict[str, Path]:
    """Container path -> host file, for the service's bind mounts (docker-compose 1.29 prints
    them as `/abs/source:target[:mode]`; a named volume's source has no slash)."""
    binds = (volume.split(":") for volume in service.get("volumes", []))
    return {parts[1]: Path(parts[0]) for parts in binds if parts[0].startswith("/")}


def test_every_mounted_config_exists_and_parses(cluster):
    seen = 0
    for name, service in cluster["services"].items():
        for source in mounts(service).values():
            assert source.is_file(), f"{name}: {source} missing"
            assert DOCKER in source.parents, f"{name}: {source} outside docker/"
            if source.suffix == ".xml":
                ET.parse(source)  # raises on malformed XML
            seen += 1
    assert seen == 4 * 2 + 3 + 1  # cluster.xml + macros per server, a file per Keeper, haproxy
    done = subprocess.run(["/usr/sbin/haproxy", "-c", "-f",
                           str(DOCKER / "haproxy" / "haproxy.cfg")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def server_config(cluster: dict, name: str, target: str) -> ET.Element:
    return ET.parse(mounts(cluster["services"][name])[target]).getroot()


def test_clickhouse_shards_replicas_and_keepers_agree(cluster):
    services = cluster["services"]
    servers = sorted(name for name in services if name.startswith("clickhouse-shard"))
    keepers = sorted(name for name in services if name.startswith("clickhouse-keeper"))
    assert len(servers) == 4 and len(keepers) == 3

    # Macros: each server its own (shard, replica), the replica named as its container.
    macros = {}
    for name in servers:
        root = server_config(cluster, name, "/etc/clickhouse-server/config.d/macros.xml")
        macros[name] = (root.findtext("macros/shard"), root.findtext("macros/replica"))
        assert macros[name][1] == name
        assert root.findtext("interserver_http_host") == name
    assert len(set(macros.values())) == 4

    # remote_servers: the same file on every server; 2 shards x 2 replicas = the containers,
    # each replica in the shard its macros say, writes replicated by the table engine.
    cluster_files = {mounts(services[name])["/etc/clickhouse-server/config.d/cluster.xml"]
                     for name in servers}
    assert len(cluster_files) == 1
    root = ET.parse(cluster_files.pop()).getroot()
    (definition,) = list(root.find("remote_servers"))
    shards = definition.findall("shard")
    assert len(shards) == 2
    placed = {}
    for number, shard in enumerate(shards, start=1):
        assert shard.findtext("internal_replication") == "true"
        replicas = shard.findall("replica")
        assert len(replicas) == 2
        for replica in replicas:
            assert replica.findtext("port") == "9000"
            placed[replica.findtext("host")] = str(number)
    assert placed == {name: shard for name, (shard, _) in macros.items()}
    assert definition.find("secret").get("from_env") == "CLICKHOUSE_CLUSTER_SECRET"
    assert all("CLICKHOUSE_CLUSTER_SECRET" in services[name]["environment"] for name in servers)

    # Every app container names this cluster (the DDL's ON CLUSTER and Distributed engine).
    apps = [name for name, service in services.items() if "build" in service]
    assert {services[name]["environment"]["CLICKHOUSE_CLUSTER"] for name in apps} == \
        {definition.tag}

    # Keeper: the servers know the three nodes; each node has its own id in one Raft config.
    assert sorted((node.findtext("host"), node.findtext("port"))
                  for node in root.findall("zookeeper/node")) == [(k, "9181") for k in keepers]
    raft_configs, ids = set(), {}
    for name in keepers:
        keeper = server_config(cluster, name, "/etc/clickhouse-keeper/keeper_config.xml")
        raft = tuple((server.findtext("id"), server.findtext("hostname"))
                     for server in keeper.findall("keeper_server/raft_configuration/server"))
        raft_configs.add(raft)
        ids[name] = keeper.findtext("keeper_server/server_id")
        assert keeper.findtext("keeper_server/tcp_port") == "9181"
        assert dict(raft)[ids[name]] == name  # its own id is its own host
    assert len(raft_configs) == 1
    assert sorted(ids.values()) == ["1", "2", "3"]
    assert sorted(id_ for id_, _ in raft_configs.pop()) == ["1", "2", "3"]


def test_kafka_is_a_three_node_kraft_quorum(cluster):
    services = cluster["services"]
    brokers = {f"kafka{n}": services[f"kafka{n}"]["environment"] for n in (1, 2, 3)}
    voters = set()
    for name, env in brokers.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert str(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == "3"
        assert str(env["KAFKA_MIN_INSYNC_REPLICAS"]) == "2"
        assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "3"
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
    assert len(voters) == 1  # one quorum, the same on all
    assert sorted(voters.pop().split(",")) == [f"{brokers[name]['KAFKA_NODE_ID']}@{name}:9093"
                                                for name in sorted(brokers)]
    assert len({env["KAFKA_NODE_ID"] for env in brokers.values()}) == 3
    (cluster_id,) = {env["CLUSTER_ID"] for env in brokers.values()}
    # kafka-storage.sh format takes only a UUID: 16 bytes in URL-safe base64, unpadded.
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16 and len(cluster_id) == 22


def broker_property(variable: str) -> str:
    """The apache/kafka image's rule: KAFKA_ dropped, `___` -> `-`, `__` -> `_`, `_` -> `.`."""
    name = variable.removeprefix("KAFKA_").lower()
    return name.replace("___", "-").replace("__", "\0").replace("_", ".").replace("\0", "_")


def test_kafka_variables_name_real_broker_configs(cluster, services):
    """Each KAFKA_* variable becomes a server.properties line; a misspelt one would be ignored
    by the broker. The names are looked up, exactly, among the string constants of the Kafka
    jars this machine's broker runs (scripts/services.py downloads them)."""
    jars = sorted(services.KAFKA_LIBS.glob("kafka*.jar"))
    assert jars, f"no Kafka jars in {services.KAFKA_LIBS}: start the services (make services)"
    wanted = {broker_property(variable)
              for n in (1, 2, 3) for variable in cluster["services"][f"kafka{n}"]["environment"]
              if variable.startswith("KAFKA_")}
    assert {"min.insync.replicas", "default.replication.factor", "node.id"} <= wanted
    # A class file holds each string constant as tag 1, a 2-byte length, the bytes.
    constants = {name: b"\x01" + len(name).to_bytes(2, "big") + name.encode() for name in wanted}
    missing = set(wanted)
    for jar in jars:
        with zipfile.ZipFile(jar) as archive:
            for entry in archive.namelist():
                if entry.endswith(".class") and missing:
                    data = archive.read(entry)
                    missing -= {name for name in missing if constants[name] in data}
    assert not missing, f"not a Kafka broker config: {missing}"


def test_app_containers_get_the_settings_they_need(cluster):
    services = cluster["services"]
    apps = {name: service for name, service in services.items() if "build" in service}
    assert set(apps) == {"migrate", "api1", "api2", "worker-ingest", "worker-evaluation", "beat",
                         "flower"}
    # Read by flower and prometheus_client themselves.
    known = settings_read() | {"FLOWER_BASIC_AUTH", "PROMETHEUS_MULTIPROC_DIR"}
    for name, service in apps.items():
        env = service["environment"]
        assert {"DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL",
                "CLICKHOUSE_CLUSTER", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS",
                "KAFKA_REPLICATION_FACTOR"} <= set(env), name
        assert not set(env) - known, f"{name}: no setting reads {set(env) - known}"
        assert sorted(env["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == \
            ["kafka1:9092", "kafka2:9092", "kafka3:9092"]
        assert env["KAFKA_REPLICATION_FACTOR"] == "3" and env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert "@lb:8123/" in env["CLICKHOUSE_URL"] and "@postgres:5432/" in env["DATABASE_URL"]

    # Two APIs behind the load balancer, checked on /health/live; ClickHouse for the app
    # through it too, over all four servers.
    haproxy = (DOCKER / "haproxy" / "haproxy.cfg").read_text()
    backends = dict(re.findall(r"^backend (\S+)\n(.*?)(?=^\S|\Z)", haproxy, re.S | re.M))
    assert re.findall(r"server \S+ (\S+):8000 check", backends["api"]) == ["api1", "api2"]
    assert "uri /health/live" in backends["api"]
    assert sorted(re.findall(r"server \S+ (\S+):8123 check", backends["clickhouse"])) == \
        sorted(name for name in services if name.startswith("clickhouse-shard"))
    for name in ("api1", "api2"):
        assert "0.0.0.0:8000" in apps[name]["command"]
        assert apps[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"] in apps[name]["tmpfs"]
    assert services["lb"]["ports"][0]["target"] == 8000


# Run by each server's own process: ClickHouse's engine (chDB) started with that server's
# config files merged, answering what the server would: its clusters and its macros.
READ_CONFIG = """
import json, sys
import chdb._chdb as chdb
conn = chdb.connect(f"file:{sys.argv[2]}?config-file={sys.argv[1]}")
def rows(sql):
    return [line.split("\\t") for line in
            conn.query(sql, "TabSeparated").bytes().decode().splitlines()]
print(json.dumps({
    "clusters": rows("SELECT cluster, shard_num, replica_num, host_name, port "
                     "FROM system.clusters WHERE cluster = 'llmops_cluster' ORDER BY 2, 3"),
    "macros": dict(rows("SELECT macro, substitution FROM system.macros"))}))
"""


def test_clickhouse_itself_reads_each_servers_config(cluster, tmp_path):
    """Each server's mounted files, merged as its config.d would be, loaded by ClickHouse's
    own engine: the cluster it sees is 2 shards x 2 replicas of the containers, and its macros
    are its own."""
    services = cluster["services"]
    servers = sorted(name for name in services if name.startswith("clickhouse-shard"))
    running = {}
    for name in servers:
        merged = ET.Element("clickhouse")
        for source in mounts(services[name]).values():
            merged.extend(list(ET.parse(source).getroot()))
        config = tmp_path / f"{name}.xml"
        ET.ElementTree(merged).write(config)
        running[name] = subprocess.Popen(
            [sys.executable, "-c", READ_CONFIG, str(config), str(tmp_path / name)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "CLICKHOUSE_CLUSTER_SECRET": "s"})
    for name, process in running.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"{name}: {err[-2000:]}"
        seen = json.loads(out)
        assert seen["clusters"] == [
            ["llmops_cluster", str(shard), str(replica),
             f"clickhouse-shard{shard}-replica{replica}", "9000"]
            for shard in (1, 2) for replica in (1, 2)]
        shard = re.match(r"clickhouse-shard(\d)-", name).group(1)
        assert seen["macros"] == {"shard": shard, "replica": name}
