"""What the end-to-end run costs and how long each stage takes, observed from outside the
platform: the CPU time of each process (psutil, sampled at the start and the end of the run)
and, for a sample of spans, when each reached Kafka, ClickHouse, the drain's committed
offset and the query API. Nothing here changes how the platform runs."""

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path

import psutil
from confluent_kafka import TopicPartition

from llmops.kafka import end_offsets

# The services scripts/services.py starts, by their pid files (var/run/<name>*.pid, so a
# cluster's extra brokers or servers are found too) and the command line each must have.
SERVICES = {"kafka": "kafka.Kafka", "clickhouse": "llmops.chserver", "redis": "redis-server"}


# -- CPU time ------------------------------------------------------------------------------

def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process and every descendant, the live ones and those
    already waited for (children_user/children_system); 0.0 if the process is gone."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # ended between the listing and the read: its parent counts it
        total += times.user + times.system + times.children_user + times.children_system
    return total


def service_pids(run_dir: Path, name: str, hint: str) -> list[int]:
    """Pids from var/run/<name>*.pid whose process is alive and runs `hint` (a stale pid file
    may name a reused pid)."""
    pids = []
    for pid_file in sorted(run_dir.glob(f"{name}*.pid")):
        try:
            pid = int(pid_file.read_text().split()[0])
            if hint in " ".join(psutil.Process(pid).cmdline()):
                pids.append(pid)
        except (ValueError, IndexError, OSError, psutil.Error):
            continue
    return pids


@dataclass
class ProcessGroup:
    """A named set of process trees; `counted` False for the load generator and the bench's
    own probes, which the platform's cost per span leaves out."""
    name: str
    pids: list[int]
    counted: bool = True
    start: float = 0.0
    seconds: float = 0.0

    def cpu_seconds(self) -> float:
        return sum(tree_cpu_seconds(pid) for pid in self.pids)


@dataclass
class CpuSampler:
    """CPU seconds of each group between `begin()` and `end()`. The bench's own threads are
    measured apart: the load generator by the thread CPU time its threads add up
    (`add_load_seconds`), the rest of the bench process (probes, polling) as the remainder."""
    groups: list[ProcessGroup]
    load_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _own_start: float = 0.0
    own_seconds: float = 0.0

    def begin(self) -> None:
        for group in self.groups:
            group.start = group.cpu_seconds()
        times = psutil.Process().cpu_times()
        self._own_start = times.user + times.system

    def end(self) -> None:
        for group in self.groups:
            group.seconds = max(0.0, group.cpu_seconds() - group.start)
        times = psutil.Process().cpu_times()
        self.own_seconds = times.user + times.system - self._own_start

    def pids_of(self, name_prefix: str) -> list[int]:
        return [pid for g in self.groups if g.name.startswith(name_prefix) for pid in g.pids]

    def add_load_seconds(self, seconds: float) -> None:
        with self._lock:
            self.load_seconds += seconds

    def rows(self) -> list[tuple[str, float, bool]]:
        """(name, CPU seconds, counted in the platform's total)."""
        return [*((g.name, g.seconds, g.counted) for g in self.groups),
                ("load generator (bench threads)", self.load_seconds, False),
                ("bench probes (sampling, polling)",
                 max(0.0, self.own_seconds - self.load_seconds), False)]

    def table(self, stored: int, target_us: float) -> tuple[str, float]:
        """The table of CPU microseconds per stored span, and the platform's total."""
        lines = [f"  {'process':38} {'CPU s':>8} {'us/span':>8}"]
        total = 0.0
        for name, seconds, counted in self.rows():
            per_span = seconds * 1e6 / max(stored, 1)
            total += per_span if counted else 0.0
            lines.append(f"  {name:38} {seconds:8.2f} {per_span:8.1f}"
                         + ("" if counted else "  (not counted)"))
        mark = "pass" if total <= target_us else "MISS"
        lines.append(f"  {'total, load generator excluded':38} {'':8} {total:8.1f}  "
                     f"target <= {target_us:.0f}  {mark}")
        return "\n".join(lines), total


# -- stage latencies -----------------------------------------------------------------------

@dataclass
class Sample:
    """One sampled span: its trace, and each stage's wall-clock time (time.time())."""
    trace_id: str
    span_id: str
    sent: float = 0.0
    accepted: float | None = None
    produced: float | None = None  # the Kafka message's timestamp
    readable: float | None = None  # a probe consumer of our own read it
    partition: int = -1
    offset: int = -1
    inserted: float | None = None  # ClickHouse's ingested_at, seen by a plain SELECT
    committed: float | None = None  # the drain group's committed offset passed it
    visible: float | None = None  # GET /api/v1/traces/<id> answered with the span
    seen: float | None = None  # the probe's SELECT returned it (the probe's own delay)
    asked: float | None = None  # the GET that found it was sent


GET_TIMEOUT_S = 120
STAGES = ("produced", "readable", "inserted", "committed", "visible")
# Each stage's duration is measured from this earlier event: the drain commits after the
# insert, and the query API can answer before that commit.
SINCE = {"produced": "accepted", "readable": "produced", "inserted": "readable",
         "committed": "inserted", "visible": "inserted"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class StageProbe:
    """Follows a sample of spans through the pipeline from outside: a Kafka consumer in its
    own group (reading from the end at start, matching the sampled span ids in the message
    bodies, so it holds whatever the API publishes), the drain group's committed offsets, a
    plain SELECT (no FINAL) on spans, and GETs of the trace from the query API.

    Its own cost: the consumer reads every message (the broker serves it once more), one
    SELECT and one offsets request every `interval_s`, one GET per sample after it is
    stored; the consumer and polling CPU show in the bench's "probes" row."""

    def __init__(self, *, topic: str, org_id: int, api_port: int, key: str,
                 new_consumer, clickhouse, interval_s: float):
        self.topic, self.org_id, self.api_port, self.key = topic, org_id, api_port, key
        self.new_consumer, self.clickhouse, self.interval_s = new_consumer, clickhouse, interval_s
        self.samples: dict[str, Sample] = {}  # by span id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pattern: re.Pattern | None = None
        self._threads: list[threading.Thread] = []
        self._reader = None
        self._getters = ThreadPoolExecutor(16)
        self._asking: set[str] = set()
        self.selects: list[dict] = []  # the parameters of each SELECT the probe sent
        self.gets: list[tuple[float, int]] = []  # each GET's milliseconds and status

    def start(self, span_id_pattern: bytes) -> None:
        """Before the load: the reader is assigned at the end of every partition. A message
        holds a sample when bytes in it match `span_id_pattern` (a regex) and are a sampled
        span's id: quoted in JSON or not (another encoding), one span or many per message."""
        self._pattern = re.compile(span_id_pattern)
        self._reader = self.new_consumer(**{"group.id": f"{self.topic}.bench-probe",
                                            "fetch.wait.max.ms": 10})
        # The end offsets now, not OFFSET_END: that one is resolved at the first fetch,
        # after the load may have begun.
        self._reader.assign(end_offsets(self._reader, self.topic))
        self._threads = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._poll_offsets, daemon=True),
                         threading.Thread(target=self._poll_inserted, daemon=True)]
        for thread in self._threads:
            thread.start()

    SELECT = ("SELECT span_id, toFloat64(min(ingested_at)) FROM spans "
              "WHERE org_id = {o:UInt64} AND trace_id IN {t:Array(String)} "
              "AND span_id IN {s:Array(String)} GROUP BY span_id")

    def select_cpu_seconds(self, server_pids: list[int], repeats: int = 20) -> float:
        """An estimate of the ClickHouse CPU the probe's SELECTs took during the run (they
        count in the server's row): a SELECT of the median size, repeated now, times the
        number sent."""
        if not self.selects or not server_pids:
            return 0.0
        typical = sorted(self.selects, key=lambda p: len(p["s"]))[len(self.selects) // 2]
        before = sum(tree_cpu_seconds(pid) for pid in server_pids)
        for _ in range(repeats):
            self.clickhouse.query(self.SELECT, parameters=typical)
        spent = sum(tree_cpu_seconds(pid) for pid in server_pids) - before
        return spent / repeats * len(self.selects)

    def add(self, trace_id: str, span_id: str, sent: float) -> Sample:
        """A sample, before its request is sent (the probe may read it from Kafka before the
        202 reaches the load generator); set its `accepted` at the 202."""
        sample = Sample(trace_id, span_id, sent)
        with self._lock:
            self.samples[span_id] = sample
        return sample

    def pending(self) -> list[Sample]:
        """Accepted samples not yet visible, or read from Kafka and not yet committed."""
        with self._lock:
            return [s for s in self.samples.values() if s.accepted and (
                s.visible is None or (s.offset >= 0 and s.committed is None))]

    def wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.pending() and time.monotonic() < deadline:
            time.sleep(self.interval_s)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._getters.shutdown(cancel_futures=True)
        if self._reader is not None:
            self._reader.close()

    def _read(self) -> None:
        while not self._stop.is_set():
            for message in self._reader.consume(1000, timeout=0.05):
                if message.error():
                    continue
                read_at = time.time()
                for match in self._pattern.finditer(message.value() or b""):
                    sample = self.samples.get(match.group(0).decode())
                    if sample is not None and sample.readable is None:
                        sample.produced = message.timestamp()[1] / 1000
                        sample.readable = read_at
                        sample.partition, sample.offset = message.partition(), message.offset()

    def _poll_offsets(self) -> None:
        committed_reader = self.new_consumer()  # the drain's group: reads its offsets only
        try:
            while not self._stop.wait(self.interval_s):
                self._poll_committed(committed_reader)
        finally:
            committed_reader.close()

    def _poll_inserted(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._poll_stored()

    def _poll_committed(self, committed_reader) -> None:
        in_kafka = [s for s in self.pending() if s.offset >= 0 and s.committed is None]
        if in_kafka:
            offsets = committed_reader.committed(
                [TopicPartition(self.topic, p) for p in {s.partition for s in in_kafka}],
                timeout=5)
            seen_at = time.time()  # the commit was made since the previous poll, by then
            by_partition = {tp.partition: tp.offset for tp in offsets}
            for sample in in_kafka:
                if by_partition.get(sample.partition, -1) > sample.offset:
                    sample.committed = seen_at

    def _poll_stored(self) -> None:
        pending = self.pending()
        unseen = [s for s in pending if s.inserted is None]
        if unseen:
            parameters = {"o": self.org_id, "t": sorted({s.trace_id for s in unseen}),
                          "s": [s.span_id for s in unseen]}
            self.selects.append(parameters)
            rows = self.clickhouse.query(self.SELECT, parameters=parameters).result_rows
            seen = time.time()
            for span_id, ingested_at in rows:
                self.samples[span_id].inserted = ingested_at
                self.samples[span_id].seen = seen
        # The GETs in other threads, one per sample at a time: under load an answer can take
        # seconds, which must hold up neither the SELECT nor the other samples' GETs.
        for sample in pending:
            if sample.inserted is not None and sample.visible is None \
                    and sample.span_id not in self._asking:
                self._asking.add(sample.span_id)
                self._getters.submit(self._ask, sample)

    def _ask(self, sample: Sample) -> None:
        try:
            sample.visible = self._answers(sample)
        finally:
            self._asking.discard(sample.span_id)

    def _answers(self, sample: Sample) -> float | None:
        """When the query API answered the sample's trace with the span; None if not."""
        # A long timeout: a GET abandoned and sent again would hide how long the first took.
        connection = HTTPConnection("127.0.0.1", self.api_port, timeout=GET_TIMEOUT_S)
        sample.asked = asked = time.time()
        try:
            connection.request("GET", f"/api/v1/traces/{sample.trace_id}",
                               headers={"Authorization": f"Bearer {self.key}"})
            response = connection.getresponse()
            body = response.read()
            answered = time.time()
        except OSError:
            self.gets.append(((time.time() - asked) * 1000, 0))
            return None
        finally:
            connection.close()
        self.gets.append(((answered - asked) * 1000, response.status))
        found = response.status == 200 and f'"{sample.span_id}"'.encode() in body
        return answered if found else None

    def latencies(self) -> dict[str, dict[str, float]]:
        """Per stage: p50/p99 ms since the 202 and since the event before it (SINCE), over
        the samples that reached it; `n` samples."""
        result = {}
        for stage in STAGES:
            previous = SINCE[stage]
            since_accepted, since_previous = [], []
            for s in self.samples.values():
                at, before = getattr(s, stage), getattr(s, previous)
                if at is not None and s.accepted is not None:
                    since_accepted.append((at - s.accepted) * 1000)
                    if before is not None:
                        since_previous.append((at - before) * 1000)
            if since_accepted:
                result[stage] = {
                    "n": len(since_accepted),
                    "p50_ms": percentile(since_accepted, 0.5),
                    "p99_ms": percentile(since_accepted, 0.99),
                    "stage_p50_ms": percentile(since_previous, 0.5) if since_previous else 0,
                    "stage_p99_ms": percentile(since_previous, 0.99) if since_previous else 0,
                }
        return result


STAGE_NAMES = {
    "produced": "in Kafka (the message's timestamp)",
    "readable": "read by a consumer of our own",
    "inserted": "inserted (ingested_at, plain SELECT)",
    "committed": "drained (drain group's offset passed it)",
    "visible": "visible (GET /api/v1/traces/<id>)",
}


def gets_line(probe: "StageProbe") -> str:
    """The probe's own delays, part of `visible`: from the insert to its SELECT seeing it, to
    the GET that found it being sent, and the GETs' time."""
    if not probe.gets:
        return "  (the probe sent no GET)"
    times = [ms for ms, _ in probe.gets]
    statuses = sorted({status for _, status in probe.gets})
    done = [s for s in probe.samples.values() if s.visible and s.seen and s.asked]

    def p50_p99(values: list[float]) -> str:
        return (f"p50 {percentile(values, 0.5):.0f} ms, p99 {percentile(values, 0.99):.0f} ms"
                if values else "none")

    return (f"  (the probe's own delays: insert to its SELECT seeing it "
            f"{p50_p99([(s.seen - s.inserted) * 1000 for s in done])}; to the GET that found "
            f"it sent {p50_p99([(s.asked - s.seen) * 1000 for s in done])}; its "
            f"{len(probe.gets)} GETs took {p50_p99(times)}, statuses {statuses}; 0: no "
            "answer)")


def latency_table(latencies: dict[str, dict[str, float]], sent: int) -> str:
    lines = [f"  stage latencies of {sent} sampled spans, ms (negative: before the 202)",
             f"  {'reached':44} {'n':>5} {'since 202: p50':>14} {'p99':>8} "
             f"{'stage: p50':>10} {'p99':>8}  stage from"]
    for stage in STAGES:
        row = latencies.get(stage)
        if row is None:
            lines.append(f"  {STAGE_NAMES[stage]:44} {0:5}  (none reached it)")
            continue
        lines.append(f"  {STAGE_NAMES[stage]:44} {row['n']:5} {row['p50_ms']:14.0f} "
                     f"{row['p99_ms']:8.0f} {row['stage_p50_ms']:10.0f} "
                     f"{row['stage_p99_ms']:8.0f}  {SINCE[stage]}")
    return "\n".join(lines)


# -- the end-to-end run's processes and series ----------------------------------------------

def platform_sampler(run_dir: Path, *, api, drains, beat) -> CpuSampler:
    """The processes of an end-to-end run: the bench's API, drain and beat subprocesses (each
    with its children) and the services of scripts/services.py found by their pid files."""
    groups = [ProcessGroup("API (gunicorn master + workers)", [api.pid]),
              ProcessGroup("drain (ingest worker(s) + children)", [d.pid for d in drains]),
              ProcessGroup("beat", [beat.pid])]
    for name, label in (("kafka", "Kafka broker(s)"), ("clickhouse", "ClickHouse server"),
                        ("redis", "Redis")):
        pids = service_pids(run_dir, name, SERVICES[name])
        if not pids:
            print(f"  note: no {name} process found by var/run/{name}*.pid; its CPU is not "
                  "counted (was it started by scripts/services.py in this tree?)")
        groups.append(ProcessGroup(label, pids))
    return CpuSampler(groups)


def per_second(times: list[float], weight: float = 1.0) -> tuple[list[float], list[float]]:
    """Counts per whole second of `times` (seconds since the start), times `weight`."""
    if not times:
        return [], []
    counts = [0.0] * (int(max(times)) + 1)
    for at in times:
        counts[int(at)] += weight
    return list(range(len(counts))), counts


def stored_series(clickhouse, org_id: int, prefix: str, started: float) -> dict:
    """Spans stored per second (by ingested_at) and the p99 accepted-to-stored latency of
    the spans accepted in each second (by received_at), seconds since `started`."""
    parameters = {"o": org_id, "p": prefix, "t0": int(started * 1000)}
    where = "org_id = {o:UInt64} AND startsWith(trace_id, {p:String})"
    stored = clickhouse.query(
        "SELECT intDiv(toUnixTimestamp64Milli(ingested_at) - {t0:Int64}, 1000) AS s, count() "
        f"FROM spans WHERE {where} GROUP BY s ORDER BY s", parameters=parameters).result_rows
    latency = clickhouse.query(
        "SELECT intDiv(toUnixTimestamp64Milli(received_at) - {t0:Int64}, 1000) AS s, "
        "quantile(0.99)(dateDiff('millisecond', received_at, ingested_at)) "
        f"FROM spans WHERE {where} GROUP BY s ORDER BY s", parameters=parameters).result_rows
    # Every second from the start, 0 where none was stored (a stall shows as one).
    counts = dict(stored)
    seconds = list(range(max(counts, default=-1) + 1))
    return {"stored": (seconds, [counts.get(s, 0) for s in seconds]),
            "p99_latency": ([r[0] for r in latency], [r[1] for r in latency])}
