"""The bench's report writer (figures beside targets, JSON and PNG under var/bench, the change
against the previous run) and its process CPU sampler, on a real child process."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from bench import measure, report

# Burns `cpu_s` of CPU in itself, then as much again in a grandchild it waits for (so that
# one's time is counted only through children_user/children_system), after a "go" line.
BURNER = """
import subprocess, sys, time
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
sys.stdin.readline()
burn({cpu_s})
subprocess.run([sys.executable, "-c", "import time\\nend = time.process_time() + {cpu_s}\\n"
                "while time.process_time() < end: pass"], check=True)
print("done", flush=True)
sys.stdin.readline()
"""


def _run(values: dict[str, float], now: datetime, out_dir) -> dict:
    report.reset()
    report.record("e2e.accepted_per_s", values["accepted"], label="end to end, accepted",
                  unit="spans/s", target=20_000)
    report.record("e2e.cpu_us_total", values["cpu"], label="CPU per stored span",
                  unit="us/span", target=100, op="<=")
    report.record("drain.bare", 40_000, label="raw limit", unit="spans/s")
    report.record_series("accepted", [0, 1, 2], [19_000, 20_500, 20_100], "spans/s")
    report.record_series("stored", [0, 1, 2, 3], [15_000, 21_000, 20_000, 4_000], "spans/s")
    report.record_series("p99_latency", [0, 1, 2], [900, 1_400, 2_300], "ms")
    path = report.finish(["ingest"], out_dir=out_dir, now=now)
    return json.loads(path.read_text())


def test_report_writes_json_and_png_and_compares_with_the_previous_run(tmp_path, capsys):
    first_at = datetime.now(UTC) - timedelta(minutes=5)
    first = _run({"accepted": 18_000, "cpu": 80}, first_at, tmp_path)
    out = capsys.readouterr().out
    assert first["figures"]["e2e.accepted_per_s"] == {
        "label": "end to end, accepted", "value": 18_000.0, "unit": "spans/s",
        "target": 20_000, "op": ">=", "mark": "MISS"}
    assert first["figures"]["e2e.cpu_us_total"]["mark"] == "pass"
    assert first["figures"]["drain.bare"]["mark"] == ""
    assert first["series"]["stored"]["values"] == [15_000, 21_000, 20_000, 4_000]
    assert first["finished_at"] == first_at.isoformat(timespec="seconds")
    assert first["sections"] == ["ingest"] and first["cpus"] >= 1
    assert "previous" in out and "change against" not in out  # nothing to compare with yet
    stem = first_at.strftime("%Y%m%dT%H%M%SZ")
    png = (tmp_path / f"{stem}.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert (tmp_path / "latest.png").read_bytes() == png
    assert json.loads((tmp_path / "latest.json").read_text()) == first

    second = _run({"accepted": 22_500, "cpu": 120}, datetime.now(UTC), tmp_path)
    out = capsys.readouterr().out
    assert second["figures"]["e2e.accepted_per_s"]["mark"] == "pass"
    assert second["figures"]["e2e.cpu_us_total"]["mark"] == "MISS"
    assert f"change against the run of {first['finished_at']}" in out
    accepted = next(line for line in out.splitlines() if line.startswith("end to end, acc"))
    assert accepted.split()[-6:] == ["22,500", ">=", "20,000", "pass", "18,000", "+25%"]
    cpu = next(line for line in out.splitlines() if line.startswith("CPU per stored span"))
    assert "<= 100" in cpu and "MISS" in cpu and "+50%" in cpu
    assert len(list(tmp_path.glob("2*.json"))) == 2 and len(list(tmp_path.glob("2*.png"))) == 2


def test_cpu_sampler_counts_a_child_and_its_waited_for_grandchild(tmp_path):
    cpu_s = 0.3
    child = subprocess.Popen([sys.executable, "-c", BURNER.format(cpu_s=cpu_s)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    idle = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                            stdin=subprocess.PIPE, text=True)
    try:
        # Found by pid file and command line, as the services of scripts/services.py are.
        (tmp_path / "burner.pid").write_text(f"{child.pid}\n")
        (tmp_path / "burner-2.pid").write_text(f"{idle.pid}\n")  # alive, another command
        (tmp_path / "burner-3.pid").write_text("999999999\n")  # stale
        assert measure.service_pids(tmp_path, "burner", "process_time") == [child.pid]

        sampler = measure.CpuSampler([measure.ProcessGroup("burner", [child.pid]),
                                      measure.ProcessGroup("idle", [idle.pid])])
        sampler.begin()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        sampler.add_load_seconds(0.05)
        sampler.end()
    finally:
        for process in (child, idle):
            process.stdin.close()
            process.wait(timeout=10)
    burner, quiet = sampler.groups
    # Both halves of the burn, the grandchild's only through the child's children_* times.
    assert 2 * cpu_s * 0.95 <= burner.seconds < 2 * cpu_s + 1.0, burner.seconds
    assert quiet.seconds < 0.1, quiet.seconds
    table, total_us = sampler.table(stored=1_000, target_us=100)
    # us per stored span, the load generator and the bench's probes left out of the total.
    assert abs(total_us - (burner.seconds + quiet.seconds) * 1e3) < 1e-6
    assert "load generator (bench threads)" in table and "(not counted)" in table
    assert ("MISS" if total_us > 100 else "pass") in table.splitlines()[-1]
