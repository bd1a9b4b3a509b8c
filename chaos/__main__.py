"""`python -m chaos [--only FAULT ...]`: each tier-1 fault under a steady load, one table.

For each fault: a fresh org and key, `--rate` spans/s for `--seconds` (CHAOS_RATE 2,000 and
CHAOS_SECONDS 60 by default), the fault a third of the way in, then wait until every
partition is drained. Printed and written to var/chaos/chaos.json and chaos.png: spans
acknowledged (in 202s, or accepted in 207s), rows stored with and without FINAL, lost
(acknowledged, not stored), duplicated rows (without FINAL minus with), RTO (from the fault
until the lag is back to its pre-fault level) and the worst accept-to-queryable latency.

It runs the API (two gunicorn workers), the ingest worker and beat itself, on its own Kafka
topic, ClickHouse database, PostgreSQL database and Redis DBs, on the services the
environment points at (CLICKHOUSE_URL, REDIS_URL, KAFKA_BOOTSTRAP_SERVERS, PG_PORT; ports as
scripts/services.py reads them). It kills and restarts those services: nothing else should
be using them meanwhile.
"""

import argparse
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import django

from bench.env import ROOT, isolated_stores, prepare_stores

# Read here, not through llmops.settings: importing that before setup() would fix the
# platform's settings before the run's stores are in the environment.
RATE = int(os.environ.get("CHAOS_RATE", 2000))  # spans/s
SECONDS = float(os.environ.get("CHAOS_SECONDS", 60))  # of load per fault
DOWN_S = float(os.environ.get("CHAOS_DOWN_S", 10))  # a killed Kafka or ClickHouse stays down
FAULT_AT = float(os.environ.get("CHAOS_FAULT_AT", 1 / 3))  # of the load's duration
SETTLE_TIMEOUT_S = float(os.environ.get("CHAOS_SETTLE_TIMEOUT_S", 180))  # drains catch up
SAMPLE_S = float(os.environ.get("CHAOS_SAMPLE_S", 1.0))  # between samples of rows and lag


def ensure_database(url: str) -> None:
    """Create the run's PostgreSQL database if missing (the role may create databases)."""
    import psycopg
    from psycopg import sql

    target = psycopg.conninfo.conninfo_to_dict(url)
    name = target.pop("dbname")
    with psycopg.connect(**target, dbname="postgres", autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (name,)).fetchone():
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup() -> None:
    # PostgreSQL, not the default SQLite: its restart is one of the faults.
    database_url = os.environ.get("CHAOS_DATABASE_URL", "postgres://llmops:llmops@127.0.0.1:"
                                  f"{os.environ.get('PG_PORT', '5432')}/llmops_chaos")
    ensure_database(database_url)
    os.environ.update({
        **isolated_stores("chaos", redis_dbs=(10, 11)),
        "DJANGO_SETTINGS_MODULE": "llmops.settings",
        "DATABASE_URL": database_url,
        "KAFKA_CONSUMER_GROUP": "llmops-chaos",
    })
    django.setup()
    # The sampler's probes fail while a service is down, by design: no warning per probe.
    for noisy in ("urllib3", "clickhouse_connect"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    prepare_stores()


def new_org(label: str) -> tuple[int, str]:
    from django.db import connections

    from ingestion.models import ApiKey, Org

    connections.close_all()  # the previous fault may have restarted PostgreSQL
    org = Org.objects.create(slug=f"chaos-{label}-{uuid.uuid4().hex[:8]}",
                             ingest_rate_limit=10**9)
    return org.id, ApiKey.issue(org, name="chaos")[1]


def settle(org_id: int, timeout_s: float, platform) -> None:
    """Until every partition is committed with nothing in flight and the stored count holds
    still, or a process of the platform died (nothing more will come), or the timeout."""
    from chaos.measure import lag_now, stored_rows

    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline and not platform.anyone_dead():
        try:
            lag, in_flight = lag_now()
            stored = stored_rows(org_id, final=True)
        except Exception:  # noqa: BLE001 (a service still coming back)
            lag, in_flight, stored = 1, 1, None
        if lag == 0 and in_flight == 0 and stored == last:
            return
        last = stored
        time.sleep(1.0)


def run_fault(platform, fault, *, rate: int, seconds: float, down_s: float) -> dict:
    from chaos.load import SpanLoad
    from chaos.measure import (
        Timeline,
        recovery_seconds,
        stored_rows,
        stored_span_ids,
        worst_latency_ms,
    )

    org_id, key = new_org(fault.name)
    load = SpanLoad(key=key, run=f"chaos-{uuid.uuid4().hex[:10]}", rate=rate, seconds=seconds)
    started = time.monotonic()
    timeline = Timeline(org_id, started, SAMPLE_S)
    timeline.start()
    loader = threading.Thread(target=load.run)
    loader.start()
    time.sleep(max(0.0, started + seconds * FAULT_AT - time.monotonic()))
    print(f"{fault.name}: {fault.what}", flush=True)
    struck, back = fault.inject(platform, down_s)
    loader.join()
    settle(org_id, SETTLE_TIMEOUT_S, platform)
    timeline.stop()

    acknowledged = load.result.acknowledged
    stored, stored_final = stored_rows(org_id), stored_rows(org_id, final=True)
    stored_ids = stored_span_ids(org_id)
    fault_t, back_t = round(struck - started, 2), round(back - started, 2)
    lost = len(acknowledged - stored_ids)
    # A process that died of the fault is a finding; started again, does the rest arrive?
    died = platform.revive()
    if died:
        print(f"{fault.name}: died during the fault and started again: {', '.join(died)}",
              flush=True)
        settle(org_id, SETTLE_TIMEOUT_S, platform)
    return {
        "fault": fault.name,
        "what": fault.what,
        "acknowledged": len(acknowledged),
        "stored": stored,
        "stored_final": stored_final,
        "stored_distinct": len(stored_ids),
        "lost": lost,
        "duplicated": stored - stored_final,
        "died": died,
        "lost_after_restarting_the_dead": (len(acknowledged - stored_span_ids(org_id))
                                           if died else lost),
        "rto_s": recovery_seconds(timeline.samples, fault_t=fault_t, back_t=back_t),
        "worst_latency_ms": worst_latency_ms(org_id),
        "stored_not_acknowledged": len(stored_ids - acknowledged),
        "requests": load.result.requests,
        "attempts": load.result.attempts,
        "gave_up": load.result.gave_up,
        "answers": dict(load.result.statuses),
        "fault_t": fault_t,
        "back_t": back_t,
        "load_s": round(load.result.seconds, 1),
        "samples": [asdict(sample) for sample in timeline.samples],
    }


COLUMNS = [("fault", "fault", 14), ("acknowledged", "acked", 9), ("stored", "stored", 9),
           ("stored_final", "FINAL", 9), ("lost", "lost", 6), ("duplicated", "dup rows", 9),
           ("rto_s", "RTO s", 7), ("worst_latency_ms", "worst ms", 9)]


def table(rows: list[dict]) -> str:
    lines = ["".join(f"{title:>{width}}" for _, title, width in COLUMNS)]
    for row in rows:
        lines.append("".join(
            f"{'-' if row[name] is None else row[name]:>{width}}" for name, _, width in COLUMNS))
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(rows), 1, figsize=(10, 2.6 * len(rows)), squeeze=False)
    for ax, row in zip(axes[:, 0], rows, strict=True):
        samples = row["samples"]
        ax.plot([s["t"] for s in samples], [s["stored"] for s in samples], color="tab:blue",
                label="stored rows")
        ax.set_ylabel("stored rows", color="tab:blue")
        lag_axis = ax.twinx()
        lag_axis.plot([s["t"] for s in samples], [s["lag"] for s in samples],
                      color="tab:orange", label="lag")
        lag_axis.set_ylabel("lag (messages)", color="tab:orange")
        ax.axvline(row["fault_t"], color="red", label="fault")
        ax.axvline(row["back_t"], color="green", linestyle="--", label="back up")
        ax.set_title(f"{row['fault']}: acknowledged {row['acknowledged']:,}, lost "
                     f"{row['lost']}, duplicated {row['duplicated']}, RTO {row['rto_s']} s",
                     fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
    axes[-1, 0].set_xlabel("seconds since the load started")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", metavar="FAULT",
                        help="run this fault only (repeatable); default: all")
    parser.add_argument("--rate", type=int, default=RATE, help="spans/s (CHAOS_RATE)")
    parser.add_argument("--seconds", type=float, default=SECONDS,
                        help="load per fault (CHAOS_SECONDS)")
    parser.add_argument("--down-s", type=float, default=DOWN_S,
                        help="how long a killed Kafka or ClickHouse stays down (CHAOS_DOWN_S)")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "chaos",
                        help="where chaos.json and chaos.png go")
    args = parser.parse_args()
    setup()
    from bench.ingest import wait_until_stored
    from chaos.faults import FAULTS, Platform
    from ingestion.services.partitions import skip_to_end

    names = args.only or list(FAULTS)
    if unknown := set(names) - set(FAULTS):
        parser.error(f"unknown faults {sorted(unknown)}; choose from {list(FAULTS)}")
    (ROOT / "var" / "log").mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    skip_to_end()  # what an aborted run left behind is not this run's
    platform = Platform()
    rows = []
    try:
        wait_until_stored(new_org("warmup")[1], f"chaos-warmup-{uuid.uuid4().hex[:8]}")
        for name in names:
            rows.append(run_fault(platform, FAULTS[name], rate=args.rate,
                                  seconds=args.seconds, down_s=args.down_s))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        platform.close()
    print(f"\n{args.rate:,} spans/s for {args.seconds:g} s per fault, fault at "
          f"{args.seconds * FAULT_AT:.0f} s, Kafka/ClickHouse down {args.down_s:g} s\n"
          + table(rows), flush=True)
    for row in rows:
        if row["died"]:
            print(f"{row['fault']}: {', '.join(row['died'])} died and did not come back by "
                  f"itself; started again, lost {row['lost_after_restarting_the_dead']}")
    report = {"rate": args.rate, "seconds": args.seconds, "down_s": args.down_s,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "faults": rows}
    (args.out / "chaos.json").write_text(json.dumps(report, indent=1))
    plot(rows, args.out / "chaos.png")
    print(f"written: {args.out / 'chaos.json'}, {args.out / 'chaos.png'}")


if __name__ == "__main__":
    main()
