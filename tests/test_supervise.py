"""llmops.supervise: a platform process that exits on its own is started again; a stop
request ends the process and its supervisor."""

import signal
import subprocess
import sys
import time

from django.conf import settings

# Each run leaves a line, then dies as a Celery worker does when Redis restarts.
DYING = "import sys; open(sys.argv[1], 'a').write('run\\n'); sys.exit(1)"
# Runs until told to stop, then says so.
LASTING = ("import signal, sys, time\n"
           "def bye(*_):\n"
           "    open(sys.argv[1], 'a').write('stopped\\n'); sys.exit(0)\n"
           "signal.signal(signal.SIGTERM, bye)\n"
           "open(sys.argv[1], 'a').write('run\\n')\n"
           "time.sleep(60)\n")


def supervise(script: str, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "llmops.supervise", sys.executable, "-c", script, str(log)],
        cwd=settings.BASE_DIR, env={"SUPERVISE_FIRST_BACKOFF_S": "0.1",
                                    "PATH": "/usr/bin:/bin"},
        stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def lines(path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_process_that_exits_on_its_own_is_started_again(tmp_path):
    log = tmp_path / "runs"
    supervisor = supervise(DYING, log)
    try:
        assert wait_for(lambda: len(lines(log)) >= 3), lines(log)
        assert supervisor.poll() is None  # the supervisor itself stays
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=10)
    assert "exited with 1" in supervisor.stderr.read()


def test_sigterm_stops_the_process_and_its_supervisor(tmp_path):
    log = tmp_path / "runs"
    supervisor = supervise(LASTING, log)
    assert wait_for(lambda: lines(log) == ["run"])
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=10) == 0
    assert lines(log) == ["run", "stopped"]  # passed on, and not started again
