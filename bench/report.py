"""The figures of a bench run, each beside its target, kept so runs can be compared.

Every section records through `record` (a figure, its unit, and the target it is held to)
and `record_series` (values over the run); `finish` prints the summary with a pass/miss mark
and the change against the previous run, and writes var/bench/<UTC time>.json and .png
(throughput accepted and stored per second, p99 latency over the run) plus latest.json and
latest.png."""

import json
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "var" / "bench"


@dataclass
class Figure:
    label: str
    value: float
    unit: str
    target: float | None = None
    # ">=": higher is better and the target is a floor; "<=": a ceiling.
    op: str = ">="

    @property
    def mark(self) -> str:
        if self.target is None:
            return ""
        met = self.value >= self.target if self.op == ">=" else self.value <= self.target
        return "pass" if met else "MISS"


_figures: dict[str, Figure] = {}
_series: dict[str, dict[str, list[float]]] = {}
_notes: dict[str, object] = {}


def slug(name: str) -> str:
    """A figure's key from its name: "metrics, 30 days" -> "metrics_30_days"."""
    return re.sub(r"\W+", "_", name.lower()).strip("_")


def record(key: str, value: float, *, label: str, unit: str, target: float | None = None,
           op: str = ">=") -> None:
    """One figure of this run under a stable key (`section.name`), so runs compare."""
    assert op in (">=", "<="), op
    _figures[key] = Figure(label, float(value), unit, target, op)


def record_series(name: str, seconds: list[float], values: list[float], unit: str) -> None:
    """Values over the run (`seconds` since its start), drawn in the PNG."""
    _series[name] = {"seconds": list(seconds), "values": list(values), "unit": [unit]}


def note(key: str, value: object) -> None:
    """Anything else worth keeping with the run (JSON-serialisable): tables, settings."""
    _notes[key] = value


def reset() -> None:
    _figures.clear()
    _series.clear()
    _notes.clear()


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=OUT_DIR.parent.parent, timeout=5).stdout.strip()
    except OSError:
        return ""


def _format(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def summary(previous: dict | None) -> str:
    """Each figure beside its target, its mark, and the change from the previous run."""
    before = (previous or {}).get("figures", {})
    lines = [f"{'figure':66} {'value':>10} {'target':>12}  {'mark':4}  {'previous':>10} "
             f"{'change':>7}"]
    for key, figure in _figures.items():
        target = f"{figure.op} {_format(figure.target)}" if figure.target is not None else ""
        old = before.get(key, {}).get("value")
        change = (f"{(figure.value - old) / abs(old):+.0%}" if old else "") if old is not None \
            else ""
        label = f"{figure.label} ({figure.unit})"
        label = label if len(label) <= 66 else label[:63] + "..."
        lines.append(f"{label:66} {_format(figure.value):>10} "
                     f"{target:>12}  {figure.mark:4}  "
                     f"{_format(old) if old is not None else '':>10} {change:>7}")
    return "\n".join(lines)


def plot(path: Path) -> None:
    """Throughput (spans/s accepted and stored) and p99 latency over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate, latency) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name in ("accepted", "stored"):
        if name in _series:
            rate.plot(_series[name]["seconds"], _series[name]["values"], label=name)
    rate.set_ylabel("spans/s")
    rate.legend(loc="upper right")
    rate.set_title("end to end: throughput and latency over the run")
    if "p99_latency" in _series:
        latency.plot(_series["p99_latency"]["seconds"], _series["p99_latency"]["values"],
                     color="tab:red", marker=".", label="p99 accepted to stored")
        latency.legend(loc="upper right")
    latency.set_ylabel("ms")
    latency.set_xlabel("seconds since the load started")
    if not _series:
        rate.text(0.5, 0.5, "no end-to-end run in this bench run", ha="center",
                  transform=rate.transAxes)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def finish(sections: list[str], out_dir: Path = OUT_DIR, now: datetime | None = None) -> Path:
    """Print the summary and write this run's JSON and PNG; returns the JSON's path."""
    now = now or datetime.now(UTC)
    out_dir.mkdir(parents=True, exist_ok=True)
    latest = out_dir / "latest.json"
    previous = json.loads(latest.read_text()) if latest.exists() else None
    print("\n=== summary ===")
    if previous:
        print(f"(change against the run of {previous.get('finished_at')}, "
              f"commit {previous.get('commit')})")
    print(summary(previous), flush=True)
    stem = now.strftime("%Y%m%dT%H%M%SZ")
    document = {
        "finished_at": now.isoformat(timespec="seconds"), "commit": _git_commit(),
        "sections": sections, "host": platform.node(), "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "figures": {key: {**asdict(f), "mark": f.mark} for key, f in _figures.items()},
        "series": _series, "notes": _notes,
    }
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(document, indent=1))
    plot(out_dir / f"{stem}.png")
    shutil.copyfile(path, latest)
    shutil.copyfile(out_dir / f"{stem}.png", out_dir / "latest.png")
    print(f"written: {path} and {out_dir / (stem + '.png')} (and latest.json, latest.png)")
    return path
