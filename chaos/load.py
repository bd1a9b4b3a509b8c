"""A steady, bounded load on the span API, retried as a careful client retries.

Every span id is new (the run's name is in it), so what was acknowledged can be matched
span for span with what ClickHouse holds. A request that fails without an answer the client
can trust (a 5xx, a 429, a broken connection) is sent again, the same body, as an SDK does:
the API may have queued some of its spans already, so a retry can store a span twice, which
FINAL must hide. Every loop is bounded in requests and in time, and only 127.0.0.1 is hit.
"""

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from bench.ingest import SPANS_PER_REQUEST, post_spans, request_body

PLACEHOLDER = "@@REQUEST@@"


@dataclass
class LoadResult:
    acknowledged: set[str] = field(default_factory=set)  # span ids answered 202 / 207-accepted
    requests: int = 0  # requests tried (a retried request counts once)
    attempts: int = 0
    gave_up: int = 0  # requests never acknowledged within the retry bounds
    statuses: Counter = field(default_factory=Counter)  # "202", "503", "connection error"...
    seconds: float = 0.0


class SpanLoad:
    """`rate` spans/s for `seconds`, in requests of 100 spans from `threads` threads."""

    def __init__(self, *, key: str, run: str, rate: int, seconds: float, threads: int = 8,
                 retry_window_s: float = 60.0, max_attempts: int = 60):
        self.key = key
        self.rate = rate
        self.seconds = seconds
        self.threads = threads
        # No retry starts after the load's end plus this window; none goes on past it.
        self.retry_window_s = retry_window_s
        self.max_attempts = max_attempts
        # One body made once; each request swaps in its number (bench.ingest does the same).
        self.template = request_body(f"{run}-r{PLACEHOLDER}", 0)
        self.span_ids = [span["span_id"] for span in orjson.loads(self.template)["spans"]]
        self.result = LoadResult()
        self._lock = threading.Lock()
        self.started = 0.0

    def run(self) -> LoadResult:
        self.started = time.monotonic()
        workers = [threading.Thread(target=self._loop, args=(slot,), daemon=True)
                   for slot in range(self.threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        self.result.seconds = time.monotonic() - self.started
        return self.result

    def _loop(self, slot: int) -> None:
        interval = self.threads * SPANS_PER_REQUEST / self.rate
        next_at = self.started + slot * interval / self.threads
        request_no = slot
        while time.monotonic() < self.started + self.seconds:
            time.sleep(max(0.0, next_at - time.monotonic()))
            # A thread held up by retries goes on from now: a steady rate, never a burst.
            next_at = max(next_at + interval, time.monotonic())
            self._deliver(request_no)
            request_no += self.threads

    def _deliver(self, request_no: int) -> None:
        number = str(request_no)
        body = self.template.replace(PLACEHOLDER.encode(), number.encode())
        hard_stop = self.started + self.seconds + self.retry_window_s
        with self._lock:
            self.result.requests += 1
        for attempt in range(self.max_attempts):
            try:
                status, answer = post_spans(self.key, body)
                outcome = str(status)
            except OSError as exc:
                status, answer, outcome = None, b"", f"connection error ({type(exc).__name__})"
            with self._lock:
                self.result.attempts += 1
                self.result.statuses[outcome] += 1
            if status in (202, 207):
                rejected = ({r["span_id"] for r in orjson.loads(answer).get("rejected", [])}
                            if status == 207 else set())
                ids = {i.replace(PLACEHOLDER, number) for i in self.span_ids}
                with self._lock:
                    self.result.acknowledged |= ids - rejected
                return
            if status is not None and status < 500 and status != 429:
                break  # the request itself is wrong: sending it again changes nothing
            if time.monotonic() > hard_stop:
                break
            time.sleep(min(0.2 * 2**attempt, 2.0))
        with self._lock:
            self.result.gave_up += 1
