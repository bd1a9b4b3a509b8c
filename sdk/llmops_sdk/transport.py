"""The local buffer and the way out: the stock BatchSpanProcessor and OTLP/HTTP exporter, with
what they lack for us: counts of what was dropped, and retries that honour our `Retry-After`
and keep the batch through an API restart (the stock exporter gives up after 10 s)."""

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from .config import log

# What a client should retry (the OTLP specification): anything else is our refusal.
RETRYABLE = frozenset({429, 502, 503, 504})
MAX_BACKOFF_S = 30.0


@dataclass
class Stats:
    spans_ended: int = 0
    spans_exported: int = 0
    batches_exported: int = 0
    retries: int = 0
    # Dropped because the local buffer (max_queue_size) was full.
    spans_dropped_queue_full: int = 0
    # Given up: refused by the API (4xx) or still failing when the retry budget ran out.
    batches_dropped: int = 0
    spans_dropped_after_retries: int = 0
    scores_sent: int = 0
    scores_failed: int = 0
    # Errors of the SDK itself, logged and swallowed so they never reach the app.
    internal_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_lock = threading.Lock()


def count(stats: Stats, field: str, n: int = 1) -> None:
    with _lock:
        setattr(stats, field, getattr(stats, field) + n)


def retry_after_s(headers) -> float | None:
    """Seconds from a `Retry-After` in delay-seconds (what our API sends); None otherwise."""
    try:
        value = headers.get("retry-after")
        return max(float(value), 0.0) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


class RetryingSpanExporter(OTLPSpanExporter):
    """The stock exporter's encoding, gzip and HTTP transport; our retry loop around one
    attempt: a 429/503 waits its `Retry-After` (else exponential backoff up to MAX_BACKOFF_S),
    a refused connection or a timeout is retried too, all within `retry_budget_s` per batch.
    The batch processor's thread waits meanwhile; new spans queue in the bounded buffer."""

    def __init__(self, *, endpoint: str, api_key: str, request_timeout_s: float,
                 retry_budget_s: float, stats: Stats) -> None:
        super().__init__(endpoint=endpoint, headers={"Authorization": f"Bearer {api_key}"},
                         timeout=request_timeout_s, compression=Compression.Gzip)
        self._request_timeout_s = request_timeout_s
        self._retry_budget_s = retry_budget_s
        self._stats = stats
        self._stop = threading.Event()
        self.deadline: float | None = None  # at exit: no batch waits past it

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            ok = self._send(spans)
        except Exception:  # never into the app: the processor thread would only log it
            log.exception("llmops_sdk: exporting %d spans failed", len(spans))
            count(self._stats, "internal_errors")
            ok = False
        if ok:
            count(self._stats, "spans_exported", len(spans))
            count(self._stats, "batches_exported")
            return SpanExportResult.SUCCESS
        count(self._stats, "batches_dropped")
        count(self._stats, "spans_dropped_after_retries", len(spans))
        return SpanExportResult.FAILURE

    def _send(self, spans: Sequence[ReadableSpan]) -> bool:
        client = self._client
        body = client._compress(encode_spans(spans).SerializePartialToString())
        budget_ends = time.monotonic() + self._retry_budget_s
        attempt = 0
        while True:
            # Read each time: at exit a deadline arrives while a batch is being retried.
            give_up_at = min(budget_ends, self.deadline or budget_ends)
            timeout = max(min(self._request_timeout_s, give_up_at - time.monotonic()), 0.5)
            result = client._submit(body, timeout)
            status = result.status_code
            if status is not None and 200 <= status < 400:
                return True
            if status is not None and status not in RETRYABLE:
                log.error("llmops_sdk: %d spans refused: HTTP %s %s", len(spans), status,
                          _text(result))
                return False
            wait = retry_after_s(result.headers()) if status is not None else None
            if wait is None:
                wait = min(2 ** attempt, MAX_BACKOFF_S) * random.uniform(0.8, 1.2)
            attempt += 1
            if time.monotonic() + wait > give_up_at or self._stop.is_set():
                log.error("llmops_sdk: giving up %d spans after %d attempts (last: %s)",
                          len(spans), attempt, status or result.error)
                return False
            log.warning("llmops_sdk: export failed (%s), retrying in %.1fs",
                        status or result.error, wait)
            count(self._stats, "retries")
            if self._stop.wait(wait):
                return False

    def shutdown(self) -> None:
        self._stop.set()
        super().shutdown()


def _text(result) -> str:
    try:
        return result.text()[:300]
    except Exception:
        return ""


class BufferedSpanProcessor(BatchSpanProcessor):
    """The stock batch processor (its queue is the bounded local buffer), counting the spans
    it drops when that buffer is full: the stock one only logs a warning."""

    def __init__(self, exporter: RetryingSpanExporter, *, max_queue_size: int,
                 max_export_batch_size: int, schedule_delay_ms: int, stats: Stats) -> None:
        super().__init__(exporter, max_queue_size=max_queue_size,
                         schedule_delay_millis=schedule_delay_ms,
                         max_export_batch_size=min(max_export_batch_size, max_queue_size))
        self._stats = stats
        self._max_queue_size = max_queue_size

    def on_end(self, span: ReadableSpan) -> None:
        try:
            if span.context and span.context.trace_flags.sampled:
                count(self._stats, "spans_ended")
                queued = len(self._batch_processor._queue)
                if queued >= self._max_queue_size and not self._batch_processor._shutdown:
                    count(self._stats, "spans_dropped_queue_full")
            super().on_end(span)
        except Exception:
            log.exception("llmops_sdk: queueing a span failed")
            count(self._stats, "internal_errors")

    def shutdown_within(self, timeout_s: float) -> None:
        self._batch_processor.shutdown(timeout_millis=timeout_s * 1000)
