"""Keep one platform process running: start it again whenever it exits on its own.

    python -m llmops.supervise COMMAND [ARG ...]

A Celery worker exits for good on some broker failures: with kombu 5.7 a Redis restart ends
it with "Unrecoverable error: AttributeError: 'NoneType' object has no attribute 'hostname'"
while it hands its unacknowledged tasks back. Nothing is lost (spans wait in Kafka, drains
replay their in-flight ranges), but nothing drains until the worker runs again. Kubernetes
and compose restart a container whose process exits; on one machine this does the same.

SIGTERM or SIGINT is passed on to the command, and then the supervisor ends with it.
Standard library only.
"""

import os
import signal
import subprocess
import sys
import time

# Backoff between restarts, doubling while the command keeps dying young.
FIRST_BACKOFF_S = float(os.environ.get("SUPERVISE_FIRST_BACKOFF_S", "0.5"))
MAX_BACKOFF_S = float(os.environ.get("SUPERVISE_MAX_BACKOFF_S", "10"))
# A run that lasted this long was healthy: the next restart starts from the first backoff.
HEALTHY_AFTER_S = float(os.environ.get("SUPERVISE_HEALTHY_AFTER_S", "30"))


def supervise(command: list[str]) -> int:
    stopping = False
    child: subprocess.Popen | None = None

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    delay = FIRST_BACKOFF_S
    while True:
        started = time.monotonic()
        child = subprocess.Popen(command)
        code = child.wait()
        if stopping:
            return code
        lived = time.monotonic() - started
        if lived >= HEALTHY_AFTER_S:
            delay = FIRST_BACKOFF_S
        print(f"supervise: {command[0]} exited with {code} after {lived:.1f}s; "
              f"starting it again in {delay:.1f}s", file=sys.stderr, flush=True)
        time.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF_S)
        if stopping:
            return code


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(supervise(sys.argv[1:]))
