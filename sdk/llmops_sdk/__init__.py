"""llmops SDK: trace an LLM app to the llmops platform over OpenTelemetry (OTLP/HTTP, protobuf,
gzip), with a bounded local buffer flushed every 5 s.

    import llmops_sdk
    llmops_sdk.init(api_key="...", endpoint="https://llmops.example.com")

    @llmops_sdk.observe()
    def answer(question): ...
"""

from .client import SDK_VERSION as __version__
from .client import flush, init, instrumented, score, shutdown, stats
from .tracing import SpanHandle, current_ids, observe, set_trace, span

__all__ = ["SpanHandle", "__version__", "current_ids", "flush", "init", "instrumented",
           "observe", "score", "set_trace", "shutdown", "span", "stats"]
