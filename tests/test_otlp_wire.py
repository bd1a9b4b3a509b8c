"""The OTLP protobuf door's compiled reader (ingestion/otlp/_wire.pyx) against the Python
reference (decode.decode_protobuf + mapping.map_span): built from this source, and the same
span dicts, field by field, on requests from the real OpenTelemetry SDK, the benchmark's
bodies, generated ones with every AnyValue kind, and edge cases of the wire format."""

import struct
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.trace import SpanKind, Status, StatusCode

from bench.ingest import otlp_request_body
from ingestion.otlp import reader
from ingestion.otlp.decode import MalformedRequest, Refused, decode_protobuf
from ingestion.otlp.export import read_protobuf
from ingestion.otlp.mapping import EVENTS_KEY
from tests.otlp_helpers import recording_provider

NOW_NS = time.time_ns()
LIMITS = (2000, 100)  # max events bytes, max attribute characters: small, to cut


def any_value(value) -> AnyValue:
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, dict):
        return AnyValue(kvlist_value={"values": [KeyValue(key=k, value=any_value(v))
                                                 for k, v in value.items()]})
    return AnyValue(array_value=ArrayValue(values=[any_value(item) for item in value]))


def request_of(spans: list[dict], resource: dict | None = None, scope: str = "tests",
               ) -> bytes:
    """An ExportTraceServiceRequest of spans given as keyword dicts (attributes and events'
    attributes as Python values)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        KeyValue(key=k, value=any_value(v)) for k, v in (resource or {}).items())
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = scope
    for fields in spans:
        fields = dict(fields)
        attributes = fields.pop("attributes", {})
        events = fields.pop("events", ())
        status = fields.pop("status", None)
        span = scope_spans.spans.add(**{"trace_id": b"\xab" * 16, "span_id": b"\xcd" * 8,
                                        "name": "op", "start_time_unix_nano": NOW_NS,
                                        **fields})
        span.attributes.extend(KeyValue(key=k, value=any_value(v))
                               for k, v in attributes.items())
        for name, time_ns, event_attributes in events:
            span.events.add(name=name, time_unix_nano=time_ns).attributes.extend(
                KeyValue(key=k, value=any_value(v)) for k, v in event_attributes.items())
        if status:
            span.status.code, span.status.message = status
    return request.SerializeToString()


def assert_same(body: bytes, limits: tuple[int, int] = LIMITS) -> list[dict]:
    """The compiled reader reads `body` itself (no fallback) into the reference's spans."""
    compiled = reader.wire.read(body, *limits, Refused)
    reference = map_decoded_with(body, limits)
    assert compiled.count == reference.count
    assert compiled.refused == reference.refused
    assert len(compiled.spans) == len(reference.spans)
    for ours, theirs in zip(compiled.spans, reference.spans, strict=True):
        events = [span["metadata"].pop(EVENTS_KEY, None) for span in (ours, theirs)]
        if events[0] != events[1]:
            # The reference's attribute maps come out in protobuf's map order, ours in the
            # order sent: the same JSON, its keys in another order (of the same length when
            # cut at the limit).
            assert len(events[0]) == len(events[1])
            if "[truncated by llmops" not in events[0]:
                assert orjson.loads(events[0]) == orjson.loads(events[1])
        for name in sorted(set(ours) | set(theirs)):
            assert ours.get(name, "<absent>") == theirs.get(name, "<absent>"), name
            assert type(ours.get(name)) is type(theirs.get(name)), name
        assert list(ours) == list(theirs)  # the same fields in the same order
    return compiled.spans


def map_decoded_with(body: bytes, limits: tuple[int, int]):
    from ingestion.otlp import export
    from ingestion.otlp.mapping import map_span

    decoded = decode_protobuf(body)
    return export.MappedRequest(
        [map_span(span, scope, max_events_bytes=limits[0], max_attribute_chars=limits[1])
         for scope, group in decoded.groups for _, span in group],
        decoded.refused, decoded.count)


def test_the_compiled_reader_is_built_from_this_source():
    # A missing or stale build fails here (make ext), never silently slow.
    assert reader.PROBLEM == "", reader.PROBLEM
    assert reader.NAME == "compiled"
    assert reader.source_hash() == reader.wire.SOURCE_HASH


@pytest.mark.django_db
def test_metrics_say_which_reader_the_door_runs():
    from llmops import metrics

    text = metrics.render()[0].decode()
    assert 'llmops_otlp_reader{reader="compiled"} 1.0' in text


def test_the_benchmark_bodies_read_the_same():
    spans = assert_same(otlp_request_body("wire", 3), limits=(65536, 4096))
    assert len(spans) == 100 and spans[0]["usage"]["cached_input_tokens"] == 128


def test_the_real_sdk_export_reads_the_same():
    provider, memory = recording_provider()
    tracer = provider.get_tracer("wire-test", "1.2")
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER,
                                      attributes={"user.id": "u-1", "tag.tags": ["a", "b"]}):
        with tracer.start_as_current_span("chat", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 3,
                "gen_ai.input.messages": '[{"role": "user", "content": "hi"}]',
                "custom.flag": True, "custom.ratio": 0.25, "custom.list": [1, 2]}) as span:
            span.add_event("gen_ai.user.message", {"content": "hi"})
        with tracer.start_as_current_span("tool") as span:
            span.set_attributes({"openinference.span.kind": "TOOL", "input.value": '{"q": 1}',
                                 "input.mime_type": "application/json",
                                 "gen_ai.tool.name": "search"})
            span.set_status(Status(StatusCode.ERROR, "boom"))
    body = encode_spans(memory.get_finished_spans()).SerializeToString()
    spans = assert_same(body)
    assert {span["name"] for span in spans} == {"root", "chat", "search"}


EDGE_SPANS = [
    {"attributes": {"gen_ai.request.model": "m", "gen_ai.response.model": "better",
                    "llm.model_name": "oi", "gen_ai.system": "openai",
                    "gen_ai.usage.prompt_tokens": "12", "llm.token_count.completion": 2.9,
                    "gen_ai.usage.cost": "0.5", "session.id": "", "gen_ai.conversation.id": 7,
                    "tag.tags": '["x", null, 3]', "metadata": '{"a": [1], "b": null}'}},
    {"attributes": {"gen_ai.operation.name": "EXECUTE_TOOL", "gen_ai.tool.name": "t",
                    "error.type": "Timeout", "negative": -5, "big": 2**63 - 1,
                    "smallest": -(2**63), "raw": b"\x00\xff", "nested": [[1, [2, ["x"]]], {}],
                    "kv": {"a": {"b": [True, None]}}, "empty": None, "text": "é" * 150},
     "kind": 9, "status": (2, "")},
    {"attributes": {"traceloop.span.kind": "workflow", "gen_ai.output.messages": "not json",
                    "gen_ai.input.messages": "[1, 2]",
                    "gen_ai.system_instructions": '[{"type": "text"}]'}},
    {"attributes": {"openinference.span.kind": "retriever", "output.value": '{"x": 1}',
                    "output.mime_type": "text/plain", "gen_ai.usage.cache_read.input_tokens": 4,
                    "llm.token_count.prompt_details.cache_write": True}},
    # The slow way, through map_span: Langfuse keys, events, flattened messages.
    {"attributes": {"langfuse.observation.type": "generation",
                    "langfuse.observation.usage_details": '{"input": 5, "output": 2}',
                    "langfuse.observation.model.parameters": '{"temperature": 0.1}',
                    "langfuse.trace.metadata.k": '"v"'}},
    {"attributes": {"gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "q",
                    "gen_ai.completion.0.content": "a", "llm.request.model_name": "m"}},
    {"attributes": {"gen_ai.request.model": "m"},
     "events": [("gen_ai.user.message", NOW_NS, {"content": "hi"}),
                ("gen_ai.choice", 0, {"message": '{"content": "yo"}'}),
                ("exception", NOW_NS, {"exception.type": "E", "raw": b"\x01"})]},
    # A key set twice (the last wins), a key its resource sets too (the span's wins).
    {"attributes": {"user.id": "first", "deployment.environment.name": "dev"}},
    # Refused before mapping: no ids, zero ids, no start.
    {"trace_id": b"", "span_id": b""},
    {"trace_id": b"\x00" * 16},
    {"span_id": b"\x00" * 8, "attributes": {"k": "v"}},
    {"start_time_unix_nano": 0},
    {"trace_id": b"\x01" * 15},
]


@pytest.mark.parametrize("span", EDGE_SPANS, ids=lambda span: str(span)[:60])
def test_edge_cases_read_the_same(span):
    resource = {"service.name": "svc", "deployment.environment.name": "prod",
                "gen_ai.provider.name": "from-resource", "r.list": [1, "a"]}
    assert_same(request_of([span, {"parent_span_id": b"\x01" * 8}], resource))


def test_a_key_set_twice_reads_the_same():
    body = request_of([{"attributes": {"user.id": "first", "x": 1}}])
    request = ExportTraceServiceRequest.FromString(body)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.add(key="user.id", value=AnyValue(string_value="second"))
    span.attributes.add(key="x", value=AnyValue(int_value=2))
    spans = assert_same(request.SerializeToString())
    assert spans[0]["user_id"] == "second"
    assert spans[0]["metadata"]["attributes.x"] == 2


def _field(number: int, wire: int, payload: bytes) -> bytes:
    tag = (number << 3) | wire

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
            value >>= 7
            if not value:
                return bytes(out)
    return varint(tag) + (varint(len(payload)) + payload if wire == 2 else payload)


def test_unknown_fields_everywhere_are_skipped_alike():
    body = request_of([{"attributes": {"gen_ai.request.model": "m", "k": "v"}}])
    request = ExportTraceServiceRequest.FromString(body)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.trace_state = "vendor=1"
    span.flags = 257
    span.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    span.dropped_attributes_count = 3
    request.resource_spans[0].schema_url = "https://example/1"
    extra = (_field(99, 0, b"\x96\x01") + _field(98, 1, struct.pack("<d", 1.5))
             + _field(97, 5, b"abcd") + _field(96, 2, b"whatever"))
    assert_same(request.SerializeToString() + extra)


def test_malformed_protobuf_is_the_documented_400_and_never_half_read():
    good = request_of([{"attributes": {"k": "v" * 50}}])
    for bad in (good[:-3], b"\x0a\xff", b"\xff" * 12, good + b"\x0b", b"\x0a\x02\x12"):
        with pytest.raises(reader.wire.Fallback):
            reader.wire.read(bad, *LIMITS, Refused)
        with pytest.raises(MalformedRequest, match="not a valid ExportTraceServiceRequest"):
            read_protobuf(bad)


def test_what_the_reader_hands_back_is_read_by_the_reference():
    # Invalid UTF-8 in a long string: the reference decides (protobuf refuses it: a 400).
    body = request_of([{"attributes": {"k": "P" * 130}}]).replace(b"P" * 130, b"\xff" * 130)
    with pytest.raises(reader.wire.Fallback):
        reader.wire.read(body, *LIMITS, Refused)
    with pytest.raises(MalformedRequest):
        read_protobuf(body)


any_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=40) | st.binary(max_size=10),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8)
known_keys = st.sampled_from([
    "gen_ai.request.model", "gen_ai.provider.name", "user.id", "session.id", "tag.tags",
    "gen_ai.usage.input_tokens", "llm.token_count.total", "gen_ai.usage.cost",
    "gen_ai.input.messages", "input.value", "input.mime_type", "metadata", "error.type",
    "gen_ai.operation.name", "openinference.span.kind", "gen_ai.tool.name",
    "deployment.environment", "custom", "x.y", "langfuse.observation.type"])
attribute_values = any_values | st.sampled_from(['{"a": 1}', "[1, 2]", '"s"', "chat", "TOOL"])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(spans=st.lists(st.fixed_dictionaries(
           {"attributes": st.dictionaries(known_keys | st.text(max_size=12), attribute_values,
                                          max_size=8),
            "kind": st.integers(0, 7), "end_time_unix_nano": st.sampled_from([0, NOW_NS + 5]),
            "status": st.tuples(st.integers(0, 2), st.text(max_size=5))}),
           min_size=1, max_size=3),
       resource=st.dictionaries(st.sampled_from(["service.name", "deployment.environment.name",
                                                 "gen_ai.system", "user.id", "r"]),
                                attribute_values, max_size=3))
def test_generated_requests_read_the_same(spans, resource):
    assert_same(request_of(spans, resource))
