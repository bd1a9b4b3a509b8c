"""Helpers for the OTLP door's tests: real OpenTelemetry SDK spans, sent by the real OTLP/HTTP
exporter (protobuf) or encoded to OTLP JSON by the SDK's own encoder, and read back."""

import base64
import json
from collections.abc import Sequence

import orjson
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.ingest_helpers import client_for

RESOURCE = {"service.name": "support-bot", "deployment.environment.name": "staging",
            "service.version": "2.3.1"}


def recording_provider(resource: dict | None = None,
                       ) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A real SDK tracer provider that keeps its finished spans, to send them and then
    compare what was stored with what the client had."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def export_protobuf(base_url: str, key: str, spans: Sequence[ReadableSpan],
                    path: str = "/v1/traces",
                    compression: Compression = Compression.Gzip) -> SpanExportResult:
    """Through the SDK's own OTLP/HTTP exporter, as an application would send them."""
    exporter = OTLPSpanExporter(endpoint=f"{base_url}{path}", compression=compression,
                                headers={"Authorization": f"Bearer {key}"}, timeout=30)
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def otlp_json(spans: Sequence[ReadableSpan], ids: str = "hex") -> dict:
    """The SDK's ExportTraceServiceRequest in OTLP JSON. protobuf's MessageToDict writes bytes
    as base64 (what non-compliant exporters send: ids="base64"); the spec wants hex."""
    body = json_format.MessageToDict(encode_spans(spans))
    if ids == "hex":
        for resource_spans in body["resourceSpans"]:
            for scope_spans in resource_spans["scopeSpans"]:
                for span in scope_spans["spans"]:
                    for name in ("traceId", "spanId", "parentSpanId"):
                        if name in span:
                            span[name] = base64.b64decode(span[name]).hex()
    return body


def post_otlp(key: str, body: bytes, content_type: str = "application/json",
              path: str = "/v1/traces", **headers):
    return client_for(key).generic("POST", path, body, content_type=content_type, **headers)


def post_json(key: str, payload: dict, **kwargs):
    return post_otlp(key, orjson.dumps(payload), **kwargs)


def hex_ids(span: ReadableSpan) -> tuple[str, str, str | None]:
    parent = span.parent.span_id if span.parent else None
    return (format(span.context.trace_id, "032x"), format(span.context.span_id, "016x"),
            format(parent, "016x") if parent is not None else None)


def micros(nanos: int) -> int:
    return nanos // 1000


def epoch_us(moment) -> int:
    return round(moment.timestamp() * 1_000_000)


def content(row: dict, name: str):
    """A stored input or output as the client sent it (JSON parsed, text as text)."""
    text, fmt = row[f"{name}_content"], row[f"{name}_format"]
    if not fmt:
        return None
    return json.loads(text) if fmt == "json" else text
