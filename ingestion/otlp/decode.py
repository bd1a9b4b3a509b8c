"""OTLP trace export requests, protobuf or JSON, -> OtlpSpans grouped by resource and scope.

A span that cannot be read (no ids, no start) is refused alone, with its reason; the rest of
the request goes on. JSON ids are decoded here, not by protobuf's json_format (which reads the
spec's hex ids as base64).
"""

import base64
import binascii
import struct
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

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

def _shadow_request_class():
    """A message class wire-compatible with ExportTraceServiceRequest that declares only what
    the door reads, and each attribute list as map<string, bytes>: protobuf encodes a KeyValue
    exactly as a map entry, so upb hands over {key: serialized AnyValue} without building a
    message object per attribute (the protobuf path's cost, measured: 0.65 us an attribute
    through KeyValue/AnyValue objects)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf.descriptor_pb2 import FieldDescriptorProto as Field

    package = "llmops.otlp.shadow"
    proto = descriptor_pb2.FileDescriptorProto(name="llmops/otlp_shadow.proto",
                                               package=package, syntax="proto3")
    optional, repeated = Field.LABEL_OPTIONAL, Field.LABEL_REPEATED

    def message(name: str, fields: tuple = (), attributes: int | None = None) -> None:
        declared = proto.message_type.add(name=name)
        for field_name, number, field_type, label, type_name in fields:
            field = declared.field.add(name=field_name, number=number, type=field_type,
                                       label=label)
            if type_name:
                field.type_name = f".{package}.{type_name}"
        if attributes is not None:
            entry = declared.nested_type.add(name="AttributesEntry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=Field.TYPE_STRING, label=optional)
            entry.field.add(name="value", number=2, type=Field.TYPE_BYTES, label=optional)
            declared.field.add(name="attributes", number=attributes, label=repeated,
                               type=Field.TYPE_MESSAGE,
                               type_name=f".{package}.{name}.AttributesEntry")

    message_type = Field.TYPE_MESSAGE
    # Field numbers as in opentelemetry/proto/{collector/trace,trace,resource,common}/v1.
    message("Request", (("resource_spans", 1, message_type, repeated, "ResourceSpans"),))
    message("ResourceSpans", (("resource", 1, message_type, optional, "Resource"),
                              ("scope_spans", 2, message_type, repeated, "ScopeSpans")))
    message("Resource", attributes=1)
    message("ScopeSpans", (("scope", 1, message_type, optional, "Scope"),
                           ("spans", 2, message_type, repeated, "Span")))
    message("Scope", (("name", 1, Field.TYPE_STRING, optional, None),
                      ("version", 2, Field.TYPE_STRING, optional, None)))
    message("Span", (("trace_id", 1, Field.TYPE_BYTES, optional, None),
                     ("span_id", 2, Field.TYPE_BYTES, optional, None),
                     ("parent_span_id", 4, Field.TYPE_BYTES, optional, None),
                     ("name", 5, Field.TYPE_STRING, optional, None),
                     ("kind", 6, Field.TYPE_INT32, optional, None),
                     ("start_time_unix_nano", 7, Field.TYPE_FIXED64, optional, None),
                     ("end_time_unix_nano", 8, Field.TYPE_FIXED64, optional, None),
                     ("events", 11, message_type, repeated, "Event"),
                     ("status", 15, message_type, optional, "Status")), attributes=9)
    message("Event", (("time_unix_nano", 1, Field.TYPE_FIXED64, optional, None),
                      ("name", 2, Field.TYPE_STRING, optional, None)), attributes=3)
    message("Status", (("message", 2, Field.TYPE_STRING, optional, None),
                       ("code", 3, Field.TYPE_INT32, optional, None)))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Request"))


ShadowRequest = _shadow_request_class()
_unpack_double = struct.Struct("<d").unpack_from


def _pb_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {item.key: _pb_value(item.value) for item in value.kvlist_value.values}
    return getattr(value, which)


def _varint(data: bytes, index: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[index]
        index += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, index
        shift += 7


def _array(data: bytes, index: int) -> list:
    """An ArrayValue (`values` = 1, each an AnyValue) from `index` to the end of `data`."""
    items = []
    end = len(data)
    while index < end:
        if data[index] != 0x0A:
            raise IndexError  # another field: let protobuf read the whole value
        length, index = _varint(data, index + 1)
        if index + length > end:
            raise IndexError
        items.append(any_value(data[index:index + length]))
        index += length
    return items


def any_value(data: bytes) -> Any:
    """A serialized AnyValue as a Python value: strings, ints, bools, doubles and arrays of
    them read here (their encoding is one tag and a payload), anything else through the real
    message."""
    if not data:
        return None
    tag = data[0]
    try:
        if tag == 0x0A:  # string_value: field 1, length-delimited
            length, start = (data[1], 2) if data[1] < 0x80 else _varint(data, 1)
            if len(data) == start + length:
                return data[start:].decode()
        elif tag == 0x18:  # int_value: field 3, varint (two's complement)
            number, end = _varint(data, 1)
            if end == len(data):
                return number - (1 << 64) if number >= 1 << 63 else number
        elif tag == 0x10 and len(data) == 2:  # bool_value
            return data[1] != 0
        elif tag == 0x21 and len(data) == 9:  # double_value: fixed64
            return _unpack_double(data, 1)[0]
        elif tag == 0x2A:  # array_value: field 5, length-delimited ArrayValue
            length, start = (data[1], 2) if data[1] < 0x80 else _varint(data, 1)
            if len(data) == start + length:
                return _array(data, start)
    except (IndexError, UnicodeDecodeError):
        pass
    return _pb_value(AnyValue.FromString(data))


def _pb_attributes(attributes) -> dict[str, Any]:
    read = {}
    for key, data in attributes.items():
        size = len(data)
        # The commonest values without a call: a string under 128 bytes (tag, length, text),
        # an int under 128 (tag, value).
        if size > 1 and data[1] < 0x80:
            tag = data[0]
            if tag == 0x0A and size == data[1] + 2:
                read[key] = data[2:].decode(errors="replace")
                continue
            if tag == 0x18 and size == 2:
                read[key] = data[1]
                continue
        read[key] = any_value(data)
    return read


def decode_protobuf(body: bytes) -> DecodedRequest:
    try:
        request = ShadowRequest.FromString(body)
    except DecodeError as exc:
        raise MalformedRequest(f"body is not a valid ExportTraceServiceRequest: {exc}") from exc
    decoded = DecodedRequest()
    position = 0
    try:
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
                        status = span.status
                        spans.append((position, OtlpSpan(
                            trace_id, span_id, span.name, span.start_time_unix_nano,
                            span.parent_span_id.hex(), span.kind, span.end_time_unix_nano,
                            status.code, status.message, _pb_attributes(span.attributes),
                            [OtlpEvent(event.name, event.time_unix_nano,
                                       _pb_attributes(event.attributes))
                             for event in span.events] if span.events else [])))
                    position += 1
                if spans:
                    decoded.groups.append((scope, spans))
    except DecodeError as exc:  # an attribute's AnyValue that does not parse
        raise MalformedRequest(f"body is not a valid ExportTraceServiceRequest: {exc}") from exc
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
        return int(value) if value == value and abs(value) != float("inf") else 0
    if isinstance(value, str) and value:
        try:
            return int(value)
        except ValueError:
            try:
                return int(float(value))
            except (ValueError, OverflowError):  # "1e999" is infinity
                return 0
    return 0


MAX_FIXED64 = 2**64 - 1


def _nanos(value: Any) -> int:
    """A time in Unix nanoseconds, 0 (absent) unless it fits the protobuf's fixed64."""
    nanos = json_int(value)
    return nanos if 0 < nanos <= MAX_FIXED64 else 0


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
    start = _nanos(_get(span, "startTimeUnixNano", "start_time_unix_nano"))
    if problem is None and not start:
        problem = "startTimeUnixNano missing"
    if problem:
        return None, span_id or None, problem
    status = span.get("status") if isinstance(span.get("status"), dict) else {}
    events = []
    for event in span.get("events") or ():
        if isinstance(event, dict):
            events.append(OtlpEvent(str(event.get("name") or ""),
                                    _nanos(_get(event, "timeUnixNano", "time_unix_nano")),
                                    _json_attributes(event.get("attributes"))))
    name = span.get("name")
    return OtlpSpan(
        trace_id, span_id, name if isinstance(name, str) else "", start,
        json_id(_get(span, "parentSpanId", "parent_span_id"), 8),
        _enum(span.get("kind"), _SPAN_KINDS),
        _nanos(_get(span, "endTimeUnixNano", "end_time_unix_nano")),
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
    try:
        return _decode_json(payload)
    except RecursionError as exc:
        raise MalformedRequest("attribute values nested too deeply") from exc


def _decode_json(payload: Any) -> DecodedRequest:
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
