"""OTLP trace export requests, protobuf or JSON, -> OtlpSpans grouped by resource and scope.

A span that cannot be read (no ids, no start) is refused alone, with its reason; the rest of
the request goes on. JSON ids are decoded here, not by protobuf's json_format (which reads the
spec's hex ids as base64).
"""

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ingestion.otlp.mapping import OtlpEvent, OtlpSpan, Scope


class MalformedRequest(ValueError):
    """The request as a whole cannot be read: 400."""


@dataclass(slots=True)
class Refused:
    """A span refused before mapping: its position in the request, its id if it had one."""

    position: int
    span_id: str | None
    reason: str


@dataclass
class DecodedRequest:
    groups: list[tuple[Scope, list[tuple[int, OtlpSpan]]]] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    count: int = 0  # every span of the request, refused ones included


ZERO_TRACE, ZERO_SPAN = "0" * 32, "0" * 16


def _id_problem(trace_id: str, span_id: str) -> str | None:
    if len(trace_id) != 32 or trace_id == ZERO_TRACE:
        return "traceId missing or invalid: 16 bytes (32 hex characters), not all zero"
    if len(span_id) != 16 or span_id == ZERO_SPAN:
        return "spanId missing or invalid: 8 bytes (16 hex characters), not all zero"
    return None


# -- protobuf -------------------------------------------------------------------------------

def _pb_value(value) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {item.key: _pb_value(item.value) for item in value.kvlist_value.values}
    return getattr(value, which)


def _pb_attributes(attributes) -> dict[str, Any]:
    return {item.key: _pb_value(item.value) for item in attributes}


def decode_protobuf(body: bytes) -> DecodedRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise MalformedRequest(f"body is not a valid ExportTraceServiceRequest: {exc}") from exc
    decoded = DecodedRequest()
    position = 0
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = Scope(resource, scope_spans.scope.name, scope_spans.scope.version)
            spans = []
            for span in scope_spans.spans:
                trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
                problem = _id_problem(trace_id, span_id)
                if problem is None and not span.start_time_unix_nano:
                    problem = "startTimeUnixNano missing"
                if problem:
                    decoded.refused.append(Refused(position, span_id or None, problem))
                else:
                    spans.append((position, OtlpSpan(
                        trace_id, span_id, span.name, span.start_time_unix_nano,
                        span.parent_span_id.hex(), span.kind, span.end_time_unix_nano,
                        span.status.code, span.status.message,
                        _pb_attributes(span.attributes),
                        [OtlpEvent(event.name, event.time_unix_nano,
                                   _pb_attributes(event.attributes))
                         for event in span.events])))
                position += 1
            if spans:
                decoded.groups.append((scope, spans))
    decoded.count = position
    return decoded


# -- JSON -------------------------------------------------------------------------------------

def _get(obj: dict, camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def json_id(value: Any, size: int) -> str:
    """`size` bytes as lowercase hex, from the spec's hex or a non-compliant base64 id; ""
    when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return ""
    if len(value) == size * 2:
        try:
            return bytes.fromhex(value).hex()
        except ValueError:
            pass
    if len(value) == (size + 2) // 3 * 4:  # 24 characters for 16 bytes, 12 for 8
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            try:
                raw = base64.urlsafe_b64decode(value)
            except (binascii.Error, ValueError):
                return ""
        if len(raw) == size:
            return raw.hex()
    return ""


def json_int(value: Any) -> int:
    """int64 and fixed64 fields: decimal strings per the spec, numbers from some exporters."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value:
        try:
            return int(value)
        except ValueError:
            try:
                return int(float(value))
            except ValueError:
                return 0
    return 0


def _json_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return None
    for key, read in _JSON_VALUE_READERS:
        if key in value:
            return read(value[key])
    return None


def _double(value: Any) -> float | None:
    try:
        return float(value)  # numbers, or strings such as "1.5", "NaN", "Infinity"
    except (TypeError, ValueError):
        return None


def _bytes(value: Any) -> bytes | None:
    try:
        return base64.b64decode(value)
    except (binascii.Error, TypeError, ValueError):
        return None


def _int_value(value: Any) -> int | None:
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        number = json_int(value)
        return number if number or str(value).strip() in ("0", "0.0") else None
    return None


_JSON_VALUE_READERS = (
    ("stringValue", lambda v: v if isinstance(v, str) else str(v)),
    ("intValue", _int_value),
    ("doubleValue", _double),
    ("boolValue", lambda v: v if isinstance(v, bool) else str(v).lower() == "true"),
    ("arrayValue", lambda v: [_json_value(item) for item in (v or {}).get("values") or []]
     if isinstance(v, dict) else None),
    ("kvlistValue", lambda v: _json_attributes((v or {}).get("values"))
     if isinstance(v, dict) else None),
    ("bytesValue", _bytes),
    ("string_value", lambda v: v if isinstance(v, str) else str(v)),
    ("int_value", _int_value),
    ("double_value", _double),
    ("bool_value", lambda v: v if isinstance(v, bool) else str(v).lower() == "true"),
)


def _json_attributes(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {item["key"]: _json_value(item.get("value")) for item in items
            if isinstance(item, dict) and isinstance(item.get("key"), str)}


_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_SPAN_KINDS = {"SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2,
               "SPAN_KIND_CLIENT": 3, "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5}


def _enum(value: Any, names: dict[str, int]) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    return json_int(value)


def _json_span(span: dict) -> tuple[OtlpSpan | None, str | None, str]:
    trace_id = json_id(_get(span, "traceId", "trace_id"), 16)
    span_id = json_id(_get(span, "spanId", "span_id"), 8)
    problem = _id_problem(trace_id, span_id)
    start = json_int(_get(span, "startTimeUnixNano", "start_time_unix_nano"))
    if problem is None and not start:
        problem = "startTimeUnixNano missing"
    if problem:
        return None, span_id or None, problem
    status = span.get("status") if isinstance(span.get("status"), dict) else {}
    events = []
    for event in span.get("events") or ():
        if isinstance(event, dict):
            events.append(OtlpEvent(str(event.get("name") or ""),
                                    json_int(_get(event, "timeUnixNano", "time_unix_nano")),
                                    _json_attributes(event.get("attributes"))))
    name = span.get("name")
    return OtlpSpan(
        trace_id, span_id, name if isinstance(name, str) else "", start,
        json_id(_get(span, "parentSpanId", "parent_span_id"), 8),
        _enum(span.get("kind"), _SPAN_KINDS),
        json_int(_get(span, "endTimeUnixNano", "end_time_unix_nano")),
        _enum(status.get("code"), _STATUS_CODES), str(status.get("message") or ""),
        _json_attributes(span.get("attributes")), events), span_id, ""


def _list(obj: Any, camel: str, snake: str, where: str) -> list:
    value = _get(obj, camel, snake) if isinstance(obj, dict) else None
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedRequest(f"`{where}{camel}` must be a list")
    return value


def decode_json(body: bytes) -> DecodedRequest:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise MalformedRequest("expected a JSON object (ExportTraceServiceRequest)")
    decoded = DecodedRequest()
    position = 0
    for resource_spans in _list(payload, "resourceSpans", "resource_spans", ""):
        if not isinstance(resource_spans, dict):
            raise MalformedRequest("each of `resourceSpans` must be an object")
        resource_obj = resource_spans.get("resource")
        resource = _json_attributes(resource_obj.get("attributes")
                                    if isinstance(resource_obj, dict) else None)
        scopes = (_list(resource_spans, "scopeSpans", "scope_spans", "resourceSpans[].")
                  or _list(resource_spans, "instrumentationLibrarySpans",
                           "instrumentation_library_spans", "resourceSpans[]."))
        for scope_spans in scopes:
            if not isinstance(scope_spans, dict):
                raise MalformedRequest("each of `scopeSpans` must be an object")
            scope_obj = scope_spans.get("scope") or scope_spans.get("instrumentationLibrary")
            scope_obj = scope_obj if isinstance(scope_obj, dict) else {}
            scope = Scope(resource, str(scope_obj.get("name") or ""),
                          str(scope_obj.get("version") or ""))
            spans = []
            for span in _list(scope_spans, "spans", "spans", "scopeSpans[]."):
                if not isinstance(span, dict):
                    decoded.refused.append(Refused(position, None, "a span must be an object"))
                else:
                    otlp_span, span_id, problem = _json_span(span)
                    if otlp_span is None:
                        decoded.refused.append(Refused(position, span_id, problem))
                    else:
                        spans.append((position, otlp_span))
                position += 1
            if spans:
                decoded.groups.append((scope, spans))
    decoded.count = position
    return decoded
