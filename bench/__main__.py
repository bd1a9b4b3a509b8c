"""Run the benchmarks: `python -m bench` runs every section, `python -m bench ingest` one.

Each section prints its figures beside the raw limit measured in the same run, with ratios.
Benchmarks use their own Kafka topic, ClickHouse database and Django DB (see bench/env.py),
so they never touch the data of `make run` or of the tests.
"""

import argparse
import importlib
import time

from bench import env, report

SECTIONS = {
    "ingest": "bench.ingest",  # API, drain and end-to-end figures (issue: span ingestion)
    "query": "bench.query",  # query API p50/p99 over 1M spans, uncached and cached (issue 4)
    "ui": "bench.ui",  # dashboard pages p50/p99 over the same 1M spans (issue 13)
    "scale": "bench.scale",  # drain throughput of 1 and 2 worker processes (issue 14)
}
# Run only when named: the README's screenshots of the dashboard (issue 13).
ON_REQUEST = {"screenshots": "bench.screenshots"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sections", nargs="*", choices=[[], *SECTIONS, *ON_REQUEST], default=[])
    args = parser.parse_args()
    env.setup()
    for name in args.sections or SECTIONS:
        started = time.monotonic()
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module({**SECTIONS, **ON_REQUEST}[name]).run()
        print(f"({name}: {time.monotonic() - started:.0f}s)", flush=True)
    # Each figure beside its target, and the run kept in var/bench/ to compare with the next.
    report.finish(args.sections or list(SECTIONS))


if __name__ == "__main__":
    main()
