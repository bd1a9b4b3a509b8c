"""`init()`: one tracer provider whose batch processor is the local buffer, the instrumentors
of the LLM clients that are installed, a flush at exit; and `score()`, `flush()`,
`shutdown()`, `stats()`. None of them raises into the app: they log and count instead."""

import atexit
import importlib
import importlib.util
import json
import threading
import time
import urllib.error
import urllib.request
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from . import tracing
from .config import Config, load, log
from .transport import BufferedSpanProcessor, RetryingSpanExporter, Stats, count

# (the client library, its OpenInference instrumentor): turned on when both are installed.
INSTRUMENTORS = [
    ("openai", "openinference.instrumentation.openai", "OpenAIInstrumentor"),
    ("anthropic", "openinference.instrumentation.anthropic", "AnthropicInstrumentor"),
    ("litellm", "openinference.instrumentation.litellm", "LiteLLMInstrumentor"),
    ("langchain_core", "openinference.instrumentation.langchain", "LangChainInstrumentor"),
    ("llama_index", "openinference.instrumentation.llama_index", "LlamaIndexInstrumentor"),
    ("groq", "openinference.instrumentation.groq", "GroqInstrumentor"),
    ("mistralai", "openinference.instrumentation.mistralai", "MistralAIInstrumentor"),
]

try:
    SDK_VERSION = version("llmops-sdk")
except PackageNotFoundError:
    SDK_VERSION = "0.0.0"

_lock = threading.Lock()
_stats = Stats()
_active: dict[str, Any] = {"config": None, "provider": None, "processor": None,
                           "exporter": None, "instrumentors": []}
_atexit_registered = False


def _internal_error() -> None:
    count(_stats, "internal_errors")


tracing._state["on_error"] = _internal_error


def init(api_key: str | None = None, endpoint: str | None = None, *,
         service_name: str | None = None, environment: str | None = None,
         max_queue_size: int | None = None, max_export_batch_size: int | None = None,
         schedule_delay_ms: int | None = None, request_timeout_s: float | None = None,
         retry_budget_s: float | None = None, exit_timeout_s: float | None = None,
         instrument: bool | None = None) -> bool:
    """Start sending traces to `endpoint` (LLMOPS_ENDPOINT) with `api_key` (LLMOPS_API_KEY).
    Every other argument has an LLMOPS_<NAME> environment variable too. Calling it again
    replaces the previous set-up (after flushing it). True when tracing is on."""
    global _atexit_registered
    try:
        config = load(api_key=api_key, endpoint=endpoint, service_name=service_name,
                      environment=environment, max_queue_size=max_queue_size,
                      max_export_batch_size=max_export_batch_size,
                      schedule_delay_ms=schedule_delay_ms,
                      request_timeout_s=request_timeout_s, retry_budget_s=retry_budget_s,
                      exit_timeout_s=exit_timeout_s, instrument=instrument)
        if not config.api_key:
            log.warning("llmops_sdk: no api_key (argument or LLMOPS_API_KEY): tracing is off")
            return False
        with _lock:
            _stop_locked()
            resource = Resource.create({
                "service.name": config.service_name,
                "deployment.environment.name": config.environment,
                "telemetry.sdk.name": "llmops-sdk",
                "telemetry.sdk.language": "python",
                "telemetry.sdk.version": SDK_VERSION,
            })
            # Our own atexit hook (below) bounds the last flush; the provider's would not.
            provider = TracerProvider(resource=resource, shutdown_on_exit=False)
            exporter = RetryingSpanExporter(
                endpoint=config.traces_url, api_key=config.api_key,
                request_timeout_s=config.request_timeout_s,
                retry_budget_s=config.retry_budget_s, stats=_stats)
            processor = BufferedSpanProcessor(
                exporter, max_queue_size=config.max_queue_size,
                max_export_batch_size=config.max_export_batch_size,
                schedule_delay_ms=config.schedule_delay_ms, stats=_stats)
            provider.add_span_processor(tracing.trace_fields)
            provider.add_span_processor(processor)
            _active.update(config=config, provider=provider, processor=processor,
                           exporter=exporter)
            tracing._state["tracer"] = provider.get_tracer("llmops_sdk", SDK_VERSION)
            _set_global(provider)
            if config.instrument:
                _active["instrumentors"] = _instrument(provider)
            if not _atexit_registered:
                atexit.register(_at_exit)
                _atexit_registered = True
        return True
    except Exception:
        log.exception("llmops_sdk: init() failed; tracing is off")
        _internal_error()
        return False


def _set_global(provider: TracerProvider) -> None:
    # The OpenTelemetry API lets the global provider be set once per process; a later init()
    # still sends through its own provider (our tracer and the instrumentors are bound to it).
    current = trace.get_tracer_provider()
    if isinstance(current, trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)


def _instrument(provider: TracerProvider) -> list:
    turned_on = []
    for library, module, name in INSTRUMENTORS:
        try:
            if importlib.util.find_spec(library) is None:
                continue
            instrumentor = getattr(importlib.import_module(module), name)()
        except ImportError:
            log.info("llmops_sdk: %s is installed but not %s; its calls are not traced",
                     library, module)
            continue
        except Exception:
            log.exception("llmops_sdk: loading %s failed", module)
            continue
        try:
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
            instrumentor.instrument(tracer_provider=provider)
            turned_on.append(instrumentor)
        except Exception:
            log.exception("llmops_sdk: turning on %s failed", name)
            _internal_error()
    return turned_on


def instrumented() -> list[str]:
    """The instrumentors init() turned on (class names)."""
    return [type(instrumentor).__name__ for instrumentor in _active["instrumentors"]]


def flush(timeout_s: float | None = None) -> bool:
    """Send what the buffer holds now (waits while the API asks us to: see retry_budget_s)."""
    try:
        provider = _active["provider"]
        if provider is None:
            return True
        return provider.force_flush(int((timeout_s or 30) * 1000))
    except Exception:
        log.exception("llmops_sdk: flush() failed")
        _internal_error()
        return False


def shutdown(timeout_s: float | None = None) -> None:
    """Flush, stop the exporter and the instrumentors: for a process that ends its own way."""
    try:
        with _lock:
            _stop_locked(timeout_s)
    except Exception:
        log.exception("llmops_sdk: shutdown() failed")
        _internal_error()


def _stop_locked(timeout_s: float | None = None) -> None:
    config: Config | None = _active["config"]
    if config is None:
        return
    timeout = config.exit_timeout_s if timeout_s is None else timeout_s
    for instrumentor in _active["instrumentors"]:
        try:
            instrumentor.uninstrument()
        except Exception:
            log.exception("llmops_sdk: turning off %s failed", type(instrumentor).__name__)
    # No batch may wait on retries past the deadline; then the exporter is stopped.
    _active["exporter"].deadline = time.monotonic() + timeout
    _active["processor"].shutdown_within(timeout)
    tracing._state["tracer"] = None
    _active.update(config=None, provider=None, processor=None, exporter=None, instrumentors=[])


def _at_exit() -> None:
    shutdown()


def stats() -> dict[str, int]:
    """Counters since the process started: what was sent, retried, and dropped (the buffer
    full: spans_dropped_queue_full; given up after retries: batches_dropped and
    spans_dropped_after_retries)."""
    return _stats.as_dict()


def score(name: str, value: float | bool | str, *, trace_id: str | None = None,
          span_id: str | None = None, comment: str | None = None,
          score_id: str | None = None) -> str | None:
    """Send a score for a trace (default: the current one) or one of its spans to the
    platform's `POST /api/v1/scores`. Returns the score's id, or None when it was not stored
    (logged and counted in stats()['scores_failed'])."""
    try:
        config: Config | None = _active["config"]
        if config is None:
            log.warning("llmops_sdk: score() before init(): not sent")
            count(_stats, "scores_failed")
            return None
        current_trace, current_span = tracing.current_ids()
        if trace_id is None:
            trace_id, span_id = current_trace, current_span if span_id is None else span_id
        if not trace_id:
            log.warning("llmops_sdk: score(%r) outside a trace and without trace_id", name)
            count(_stats, "scores_failed")
            return None
        entry = {"trace_id": trace_id, "span_id": span_id or "", "name": name,
                 "value": value, "comment": comment or "", "source": "client"}
        if score_id:
            entry["id"] = score_id
        request = urllib.request.Request(
            config.scores_url, data=json.dumps({"scores": [entry]}).encode(), method="POST",
            headers={"Authorization": f"Bearer {config.api_key}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=config.request_timeout_s) as response:
            ids = json.loads(response.read()).get("ids") or [None]
        count(_stats, "scores_sent")
        return ids[0]
    except urllib.error.HTTPError as error:
        log.error("llmops_sdk: score %r refused: HTTP %s %s", name, error.code,
                  error.read()[:300])
    except Exception:
        log.exception("llmops_sdk: score %r not sent", name)
    count(_stats, "scores_failed")
    return None
