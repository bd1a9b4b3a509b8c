"""`python -m chaos.brokers`: SIGKILL brokers of a three-node Kafka cluster under load.

The harness starts its own cluster (three KRaft nodes, each broker and controller, through
scripts/services.py, on the stack's Kafka ports plus BROKERS_PORT_OFFSET, data under
var/chaos-brokers/), creates the topics with replication 3 and min.insync.replicas 2, and
sends spans through the real API path (the Django test client: accept_spans answers 202
only after Kafka's ack) at --rate spans/s. Then, for each fault, a fresh org's load: SIGKILL
the broker leading the most partitions, wait until every partition has a live leader,
start it again, wait until it is back in every partition's ISR; the second fault kills
another broker. Cluster metadata is read every 100 ms: a partition whose leader is none or
a killed broker has no leader. At the end the real drain stores everything in ClickHouse,
and one line per fault says: acknowledged, stored (FINAL), lost, duplicated rows (without
FINAL minus with), the most seconds a partition had no leader, and the API's answers;
var/chaos/brokers.json holds it.

Only 127.0.0.1 is used; the load, every wait and the cluster's life are bounded.
"""

import argparse
import importlib.util
import json
import os
import shutil
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The design document: "Kafka broker down ... Leader election (< 30s)".
LEADER_ELECTION_LIMIT_S = 30.0
PROBE_INTERVAL_S = 0.1
# The harness's cluster sits this far above the stack's own Kafka ports: clear of a
# KAFKA_BROKERS=3 stack (+100, +200) and of the other stacks (2 ports apart).
BROKERS_PORT_OFFSET = int(os.environ.get("BROKERS_PORT_OFFSET", 50))
SPANS_PER_REQUEST = 20
WAIT_S = 60.0  # the most any single wait (leaders, ISR, a start) may take


def _load_services():
    spec = importlib.util.spec_from_file_location("services", ROOT / "scripts" / "services.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


services = _load_services()


class Cluster:
    """Three KRaft nodes under `var`, started and killed through scripts/services.py."""

    def __init__(self, var: Path, port_offset: int = BROKERS_PORT_OFFSET):
        self.var = var
        self.nodes = services.kafka_nodes(
            3, base_port=services.port("kafka") + port_offset,
            base_controller_port=services.port("kafka-controller") + port_offset, var=var)
        self.down: set[int] = set()  # node ids killed and not started again

    @property
    def bootstrap(self) -> str:
        return services.kafka_bootstrap(self.nodes)

    def start(self) -> None:
        """Start every node that is not answering (all, or the one killed) and wait."""
        services.kafka_start(self.nodes)
        self.down.clear()

    def node(self, node_id: int):
        return next(node for node in self.nodes if node.node_id == node_id)

    def kill(self, node_id: int) -> float:
        """SIGKILL a node (nothing flushed, no goodbye); returns when, monotonic."""
        node = self.node(node_id)
        pid = services.read_pid_file(node.pid, "kafka.Kafka")
        if pid is None:
            raise RuntimeError(f"{node.name} is not running ({node.pid})")
        os.kill(pid, signal.SIGKILL)
        struck = time.monotonic()
        self.down.add(node_id)
        while services._alive(pid):
            time.sleep(0.02)
        return struck

    def close(self) -> None:
        """SIGKILL whatever is left: its data is thrown away with it."""
        for node in self.nodes:
            pid = services.read_pid_file(node.pid, "kafka.Kafka")
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                while services._alive(pid):
                    time.sleep(0.02)
            node.pid.unlink(missing_ok=True)

    def log_tails(self) -> str:
        return "\n".join(f"--- {node.log}:\n{services.tail(node.log)}" for node in self.nodes)


@dataclass
class Sample:
    t: float  # monotonic
    leaders: dict[int, int] | None  # partition -> leader node id; None: no metadata answer
    isr: dict[int, int] | None  # partition -> in-sync replicas
    down: frozenset[int]  # nodes killed at that moment


class LeaderWatch:
    """Every PROBE_INTERVAL_S, each partition's leader and ISR size from cluster metadata."""

    def __init__(self, cluster: Cluster, topic: str):
        from confluent_kafka.admin import AdminClient

        self.cluster = cluster
        self.topic = topic
        self.admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "LeaderWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            down = frozenset(self.cluster.down)
            try:
                partitions = self.admin.list_topics(self.topic, timeout=1).topics[
                    self.topic].partitions
                leaders = {p: (m.leader if m.error is None else -1)
                           for p, m in partitions.items()}
                isr = {p: len(m.isrs) for p, m in partitions.items()}
            except Exception:  # noqa: BLE001 (no answer is what a fault may cause)
                leaders = isr = None
            self.samples.append(Sample(began, leaders, isr, down))
            self._stop.wait(max(0.0, PROBE_INTERVAL_S - (time.monotonic() - began)))

    def latest(self) -> Sample:
        return self.samples[-1]

    def wait_for(self, what: str, condition: Callable[[Sample], bool], since: float) -> float:
        """Until a sample probed after `since` meets the condition; returns when."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            sample = self.latest() if self.samples else None
            if sample and sample.t > since and sample.leaders is not None and condition(sample):
                return time.monotonic()
            time.sleep(PROBE_INTERVAL_S / 2)
        raise TimeoutError(f"{what}: not within {WAIT_S:.0f}s; last sample {self.latest()}")

    def wait_for_leaders(self, since: float) -> float:
        return self.wait_for("every partition led by a live broker", lambda s: all(
            leader >= 0 and leader not in s.down for leader in s.leaders.values()), since)

    def wait_for_full_isr(self, since: float) -> float:
        replicas = len(self.cluster.nodes)
        return self.wait_for("every broker in every partition's ISR",
                             lambda s: all(n == replicas for n in s.isr.values()), since)

    def leaderless_seconds(self, since: float, until: float) -> dict[int, float]:
        """Per partition, the seconds between `since` and `until` without a live leader (none,
        or a killed broker): a sample counts until the next one. A probe without an answer
        keeps the leaders last seen (a partition the killed broker led stays leaderless)."""
        known: dict[int, int] = {}
        result: dict[int, float] = {}
        for sample, after in zip(self.samples, self.samples[1:], strict=False):
            known = sample.leaders or known
            if sample.t < since or after.t > until:
                continue
            for partition, leader in known.items():
                gap = after.t - sample.t if leader < 0 or leader in sample.down else 0.0
                result[partition] = result.get(partition, 0.0) + gap
        return result


@dataclass
class Load:
    """`rate` spans/s through POST /api/v1/spans until stopped, no retries: a span counts
    as acknowledged only if its request was answered 202."""

    key: str
    run: str
    rate: int
    threads: int = 8
    acknowledged: set[str] = field(default_factory=set)
    answers: Counter = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self._workers = [threading.Thread(target=self._loop, args=(slot,), daemon=True)
                         for slot in range(self.threads)]

    def __enter__(self) -> "Load":
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for worker in self._workers:
            # A request waits at most KAFKA_PUBLISH_TIMEOUT_S for Kafka.
            worker.join(timeout=60)

    def _loop(self, slot: int) -> None:
        import orjson
        from django.db import connections
        from django.test import Client

        from bench.ingest import make_span

        client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {self.key}")
        interval = self.threads * SPANS_PER_REQUEST / self.rate
        next_at = time.monotonic() + slot * interval / self.threads
        request_no = slot
        try:
            while not self._stop.is_set():
                self._stop.wait(max(0.0, next_at - time.monotonic()))
                if self._stop.is_set():
                    break
                # A thread held up by a slow answer goes on from now: never a burst.
                next_at = max(next_at + interval, time.monotonic())
                spans = [make_span(self.run, request_no, i) for i in range(SPANS_PER_REQUEST)]
                response = client.post("/api/v1/spans", orjson.dumps({"spans": spans}),
                                       content_type="application/json")
                with self._lock:
                    self.answers[str(response.status_code)] += 1
                    if response.status_code == 202:
                        self.acknowledged.update(span["span_id"] for span in spans)
                request_no += self.threads
        finally:
            connections.close_all()  # this thread's DB connection, or the DB cannot be dropped


def drain_all(timeout_s: float = 120) -> None:
    """The real drain (PartitionDrainer, a thread per partition, as the ingest worker runs)
    until every partition is committed with nothing in flight."""
    from django.db import connections

    from ingestion.services.drain import PartitionDrainer
    from ingestion.services.partitions import partition_lags

    def drain(partition: int) -> None:
        try:
            PartitionDrainer(partition).run(budget_s=10)
        finally:
            connections.close_all()

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = [lag.partition for lag in partition_lags() if lag.lag or lag.in_flight]
        if not pending:
            return
        with ThreadPoolExecutor(len(pending)) as pool:
            list(pool.map(drain, pending))
    raise TimeoutError(f"partitions still lagging after {timeout_s}s: {partition_lags()}")


def stored(org_id: int) -> tuple[set[str], int, int]:
    """(distinct span ids, rows with FINAL, rows without) of the org in ClickHouse."""
    from llmops.clickhouse import get_client

    client = get_client()
    ids = {row[0] for row in client.query(
        "SELECT DISTINCT span_id FROM spans WHERE org_id = {o:UInt64}",
        parameters={"o": org_id}).result_rows}
    final, raw = (client.command(f"SELECT count() FROM spans {final} WHERE org_id = {{o:UInt64}}",
                                 parameters={"o": org_id}) for final in ("FINAL", ""))
    return ids, final, raw


def topic_replication(bootstrap: str, topic: str) -> tuple[int, str]:
    """(fewest replicas of any partition, the topic's min.insync.replicas) as Kafka says; a
    value the topic does not set itself (a broker's default) is marked so: the platform's
    topics carry theirs, for clusters whose brokers default to 1."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + WAIT_S
    # A broker's metadata may lag the controller's by a moment after the topic's creation.
    while not (partitions := admin.list_topics(topic, timeout=10).topics[topic].partitions):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic}: no partitions in the metadata after {WAIT_S:.0f}s")
        time.sleep(0.1)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entry = admin.describe_configs([resource])[resource].result(timeout=10)[
        "min.insync.replicas"]
    own = entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    return (min(len(p.replicas) for p in partitions.values()),
            entry.value if own else f"{entry.value} (broker default)")


@dataclass
class FaultResult:
    fault: str
    victim: int  # node id
    acknowledged: int
    stored: int  # rows with FINAL
    lost: int  # acknowledged, not stored
    duplicated: int  # rows without FINAL minus with
    stored_not_acknowledged: int  # spans of 503s that Kafka had after all (clients resend)
    leaderless_partitions: int
    leaderless_s: float  # the most seconds any partition had no live leader
    answers: dict[str, int]
    seconds: float  # of load


def strike(cluster: Cluster, watch: LeaderWatch, *, spare: set[int]) -> tuple[int, float, float]:
    """SIGKILL the broker leading the most partitions (not one of `spare`) and start it again
    at once, as a supervisor would (a start takes longer here than the controller's 9 s to
    fence a silent broker: the other brokers take its partitions over first); wait until
    every partition has a live leader and it is back in every ISR.
    Returns (victim, struck, recovered) times, monotonic."""
    led = Counter(watch.latest().leaders.values())
    victim = max((node.node_id for node in cluster.nodes if node.node_id not in spare),
                 key=lambda node_id: led[node_id])
    struck = cluster.kill(victim)
    print(f"  killed node {victim} (leader of {led[victim]} partitions)", flush=True)
    restart = ThreadPoolExecutor(1)
    started = restart.submit(cluster.start)
    led_again = watch.wait_for_leaders(since=struck)
    print(f"  every partition led again after {led_again - struck:.1f}s", flush=True)
    started.result(timeout=WAIT_S)
    restart.shutdown()
    # Only samples probed after it answers: earlier ones may show the ISR of before the kill.
    recovered = watch.wait_for_full_isr(since=time.monotonic())
    print(f"  node {victim} back in every ISR {recovered - struck:.1f}s after the kill",
          flush=True)
    return victim, struck, recovered


def run_faults(cluster: Cluster, orgs: list[tuple[int, str]], *, rate: int,
               before_s: float = 2.0, after_s: float = 1.0) -> list[FaultResult]:
    """Two faults, each under its own org's load: the second kills another broker once the
    first is back in the ISR. `orgs`: (org id, API key) per fault. Everything is drained
    into ClickHouse before the counts."""
    from django.conf import settings

    topic = settings.KAFKA_SPANS_TOPIC
    loads, faults = [], []
    with LeaderWatch(cluster, topic) as watch:
        watch.wait_for_full_isr(since=time.monotonic())
        spare: set[int] = set()
        for number, (_, key) in enumerate(orgs, 1):
            name = f"kill-{number}"
            print(f"{name}: SIGKILL of the broker leading the most partitions", flush=True)
            load = Load(key=key, run=f"{name}-{uuid.uuid4().hex[:8]}", rate=rate)
            began = time.monotonic()
            with load:
                time.sleep(before_s)
                victim, struck, recovered = strike(cluster, watch, spare=spare)
                time.sleep(after_s)
            spare.add(victim)
            loads.append((load, time.monotonic() - began))
            faults.append((name, victim, struck, recovered, watch))
    drain_all()
    results = []
    for (org_id, _), (load, seconds), (name, victim, struck, recovered, watch) in zip(
            orgs, loads, faults, strict=True):
        ids, final, raw = stored(org_id)
        leaderless = watch.leaderless_seconds(struck, recovered)
        results.append(FaultResult(
            fault=name, victim=victim, acknowledged=len(load.acknowledged), stored=final,
            lost=len(load.acknowledged - ids), duplicated=raw - final,
            stored_not_acknowledged=len(ids - load.acknowledged),
            leaderless_partitions=sum(1 for s in leaderless.values() if s > 0),
            leaderless_s=round(max(leaderless.values()), 1), answers=dict(load.answers),
            seconds=round(seconds, 1)))
    return results


COLUMNS = [("fault", "fault", 8), ("victim", "node", 6), ("acknowledged", "acked", 8),
           ("stored", "stored", 8), ("lost", "lost", 6), ("duplicated", "dup rows", 9),
           ("leaderless_partitions", "no-leader parts", 16),
           ("leaderless_s", "leaderless s", 13), ("answers", "answers", 0)]


def table(results: list[FaultResult]) -> str:
    def cell(value, width: int) -> str:
        if isinstance(value, dict):
            value = " ".join(f"{k}x{v}" for k, v in sorted(value.items()))
            return f"  {value}"
        return f"{value:>{width}}"

    lines = ["".join(f"{title:>{width}}" if width else f"  {title}"
                     for _, title, width in COLUMNS)]
    lines += ["".join(cell(getattr(r, name), width) for name, _, width in COLUMNS)
              for r in results]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=300, help="spans/s of each fault's load")
    parser.add_argument("--var", type=Path, default=ROOT / "var" / "chaos-brokers",
                        help="the cluster's data and logs (emptied first)")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "chaos",
                        help="where brokers.json goes")
    args = parser.parse_args()
    shutil.rmtree(args.var, ignore_errors=True)
    cluster = Cluster(args.var)
    try:
        started = time.monotonic()
        cluster.start()
        print(f"3-node cluster at {cluster.bootstrap} up in {time.monotonic() - started:.1f}s",
              flush=True)
        # The platform's settings for three brokers, derived from KAFKA_BROKERS, and stores
        # of its own (chaos.setup: its ClickHouse database, Redis DBs, PostgreSQL database).
        os.environ.update({"KAFKA_BROKERS": "3", "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap})
        from chaos.__main__ import new_org, setup

        setup()
        from django.conf import settings

        replicas, min_isr = topic_replication(cluster.bootstrap, settings.KAFKA_SPANS_TOPIC)
        print(f"topic {settings.KAFKA_SPANS_TOPIC}: {replicas} replicas, "
              f"min.insync.replicas {min_isr}", flush=True)
        results = run_faults(cluster, [new_org("brokers") for _ in range(2)], rate=args.rate)
    finally:
        cluster.close()
    print(f"\n{args.rate} spans/s; leader election limit {LEADER_ELECTION_LIMIT_S:.0f}s "
          "(design document)\n" + table(results), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "brokers.json").write_text(json.dumps(
        {"rate": args.rate, "leader_election_limit_s": LEADER_ELECTION_LIMIT_S,
         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         "faults": [asdict(result) for result in results]}, indent=1))
    print(f"written: {args.out / 'brokers.json'}")


if __name__ == "__main__":
    main()
