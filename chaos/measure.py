"""What a run measures: stored rows and drain lag over time, and the final counts, all read
from ClickHouse and Kafka for the run's own org."""

import threading
import time
from dataclasses import dataclass

from ingestion.services.partitions import partition_lags
from llmops.clickhouse import get_client


@dataclass
class Sample:
    t: float  # seconds since the load started
    stored: int | None  # rows of the org in `spans` (no FINAL); None: ClickHouse unreachable
    lag: int | None  # messages not yet committed, all partitions; None: Kafka/Redis down
    in_flight: int | None  # partitions with a batch in flight


def stored_rows(org_id: int, *, final: bool = False) -> int:
    return get_client().command(
        f"SELECT count() FROM spans {'FINAL' if final else ''} WHERE org_id = {{o:UInt64}}",
        parameters={"o": org_id})


def stored_span_ids(org_id: int) -> set[str]:
    rows = get_client().query("SELECT DISTINCT span_id FROM spans WHERE org_id = {o:UInt64}",
                              parameters={"o": org_id}).result_rows
    return {row[0] for row in rows}


def worst_latency_ms(org_id: int) -> int:
    """Accept-to-queryable: per span, its first stored copy's insert time minus the time the
    API received it; the worst over the run."""
    return get_client().command(
        "SELECT max(ms) FROM (SELECT min(dateDiff('millisecond', received_at, ingested_at)) "
        "AS ms FROM spans WHERE org_id = {o:UInt64} GROUP BY trace_id, span_id)",
        parameters={"o": org_id})


def lag_now() -> tuple[int, int]:
    lags = partition_lags()
    return sum(lag.lag for lag in lags), sum(lag.in_flight for lag in lags)


class Timeline:
    """Samples stored rows and lag every `interval_s` in a thread, until stopped. A probe
    that fails (its service is down) records None and the sampling goes on."""

    def __init__(self, org_id: int, started: float, interval_s: float):
        self.org_id = org_id
        self.started = started
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                stored = stored_rows(self.org_id)
            except Exception:  # noqa: BLE001 (down is what is measured)
                stored = None
            try:
                lag, in_flight = lag_now()
            except Exception:  # noqa: BLE001
                lag = in_flight = None
            self.samples.append(Sample(round(began - self.started, 2), stored, lag, in_flight))
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - began)))


# A lag this many times its pre-fault worst is harm; less is the load's own noise.
HARM_FACTOR = 1.5


def recovery_seconds(samples: list[Sample], *, fault_t: float, back_t: float,
                     impact_window_s: float = 10.0) -> float | None:
    """RTO: from the fault until the lag is back to its steady state after the harm showed.

    Steady: no higher than the worst lag seen under the same load shortly before the fault
    (under a steady load the lag is never 0 for long: a batch waits for more). The harm: a
    sample over HARM_FACTOR times that, or no answer from Kafka or Redis, from the fault until
    `impact_window_s` after the service was back. No harm seen: the RTO is the time until
    the service was back. None: the lag never came back within the run."""
    # The second half of the time before the fault: the drains are up to speed by then.
    before = [s.lag for s in samples if fault_t / 2 <= s.t < fault_t and s.lag is not None]
    steady = max(before, default=0)

    after = [s for s in samples if s.t >= fault_t]
    harm = next((s for s in after if s.t <= back_t + impact_window_s
                 and (s.lag is None or s.lag > steady * HARM_FACTOR)), None)
    if harm is None:
        return round(back_t - fault_t, 1)
    for sample in after:
        if sample.t > harm.t and sample.t >= back_t and sample.lag is not None \
                and sample.lag <= steady:
            return round(sample.t - fault_t, 1)
    return None
