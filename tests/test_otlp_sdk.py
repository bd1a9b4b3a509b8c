"""The OpenTelemetry SDK from PyPI, spans with GenAI semantic-convention attributes, sent by its
OTLP/HTTP exporter (protobuf, gzip and deflate) to a live API and encoded to OTLP JSON by its
own encoder: every stored field compared with what the client had."""

import json
import time
from decimal import Decimal

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from costs.models import Price
from tests.ingest_helpers import client_for, drain_everything, new_org, stored_spans
from tests.otlp_helpers import (
    RESOURCE,
    content,
    epoch_us,
    export_protobuf,
    hex_ids,
    micros,
    otlp_json,
    post_json,
    post_otlp,
    recording_provider,
)

pytestmark = pytest.mark.django_db(transaction=True)

INPUT_MESSAGES = [{"role": "user", "parts": [{"type": "text", "content": "Refund order 7?"}]}]
OUTPUT_MESSAGES = [{"role": "assistant", "finish_reason": "stop",
                    "parts": [{"type": "text", "content": "Refunded."}]}]


def agent_trace() -> list:
    """An agent run: a chat call with usage and cache tokens, a tool call, a failing step."""
    provider, memory = recording_provider()
    tracer = provider.get_tracer("shop.agent", "1.4.0")
    with tracer.start_as_current_span("invoke_agent refunds", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "conv-9",
            "user.id": "u-77", "tag.tags": ("vip", "refunds")}):
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as chat:
            chat.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.system_instructions": json.dumps([{"type": "text",
                                                           "content": "Be kind."}]),
                "gen_ai.input.messages": json.dumps(INPUT_MESSAGES),
                "gen_ai.output.messages": json.dumps(OUTPUT_MESSAGES),
                "gen_ai.usage.input_tokens": 900, "gen_ai.usage.output_tokens": 60,
                "gen_ai.usage.cache_read.input_tokens": 512,
                "gen_ai.usage.cache_creation.input_tokens": 128,
                "gen_ai.conversation.id": "conv-9", "user.id": "u-77",
                "http.status_code": 200,
            })
            chat.add_event("retry", {"attempt": 1, "reason": "timeout"})
        with tracer.start_as_current_span("execute_tool", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "refund_order",
                "gen_ai.tool.call.arguments": '{"order": 7}',
                "gen_ai.tool.call.result": '{"ok": true}'}):
            pass
        with tracer.start_as_current_span("lookup", attributes={
                "deployment.environment.name": "canary"}) as failing:
            try:
                raise ValueError("order 8 not found")
            except ValueError as exc:
                failing.record_exception(exc)
                failing.set_status(Status(StatusCode.ERROR, "order 8 not found"))
    return list(memory.get_finished_spans())


@pytest.fixture
def mini_price():
    return Price.objects.create(
        provider="openai", model_name="gpt-4o-mini", model_pattern=r"gpt-4o-mini(-.*)?",
        input_price=Decimal("0.15"), output_price=Decimal("0.6"),
        cached_input_price=Decimal("0.075"), cache_write_price=Decimal("0.1875"))


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def assert_stored_as_sent(rows: list[dict], spans: list) -> None:
    sent = {hex_ids(span)[1]: span for span in spans}
    assert {row["span_id"] for row in rows} == set(sent)
    for row in rows:
        span = sent[row["span_id"]]
        trace_id, _, parent = hex_ids(span)
        assert (row["trace_id"], row["parent_span_id"] or None) == (trace_id, parent)
        assert epoch_us(row["start_time"]) == micros(span.start_time)
        assert epoch_us(row["end_time"]) == micros(span.end_time)
        assert row["metadata"]["resource.service.name"] == RESOURCE["service.name"]
        assert row["metadata"]["resource.service.version"] == RESOURCE["service.version"]
        assert row["metadata"]["resource.telemetry.sdk.language"] == "python"
        assert row["metadata"]["otel.scope.name"] == "shop.agent"
        assert row["metadata"]["otel.scope.version"] == "1.4.0"
    rows = by_name(rows)
    agent, tool, failing = rows["invoke_agent refunds"], rows["refund_order"], rows["lookup"]
    chat = rows["chat gpt-4o-mini"]
    assert (agent["kind"], agent["session_id"], agent["user_id"], agent["tags"]) == (
        "agent", "conv-9", "u-77", ["vip", "refunds"])
    assert agent["environment"] == "staging"  # the resource's
    assert (chat["kind"], chat["model"], chat["provider"]) == (
        "llm", "gpt-4o-mini-2024-07-18", "openai")
    assert content(chat, "input") == [{"role": "system", "parts": [{"type": "text",
                                                                    "content": "Be kind."}]},
                                      *INPUT_MESSAGES]
    assert content(chat, "output") == OUTPUT_MESSAGES
    assert (chat["input_tokens"], chat["output_tokens"], chat["cached_input_tokens"],
            chat["cache_write_tokens"], chat["total_tokens"]) == (900, 60, 512, 128, 960)
    assert chat["cost_source"] == "computed"
    assert chat["cost"] == (260 * Decimal("0.15") + 512 * Decimal("0.075")
                            + 128 * Decimal("0.1875") + 60 * Decimal("0.6")) / 10**6
    assert chat["metadata"]["otel.span_kind"] == "client"
    assert chat["metadata"]["attributes.http.status_code"] == "200"
    events = json.loads(chat["metadata"]["otel.events"])
    assert [(event["name"], event["attributes"]) for event in events] == [
        ("retry", {"attempt": 1, "reason": "timeout"})]
    assert (tool["kind"], content(tool, "input"), content(tool, "output")) == (
        "tool", {"order": 7}, {"ok": True})
    assert (failing["status"], failing["status_message"]) == ("error", "order 8 not found")
    assert failing["environment"] == "canary"  # the span's own beats the resource's
    exception = json.loads(failing["metadata"]["otel.events"])[0]
    assert exception["name"] == "exception"
    assert exception["attributes"]["exception.type"] == "ValueError"
    assert "order 8 not found" in exception["attributes"]["exception.stacktrace"]


@pytest.mark.parametrize(("path", "compression"), [
    ("/v1/traces", Compression.Gzip),
    ("/api/public/otel/v1/traces", Compression.Deflate),
    ("/v1/traces", Compression.NoCompression),
])
def test_sdk_exporter_protobuf_spans_are_stored_field_for_field(live_server, mini_price, path,
                                                                 compression):
    org, key = new_org()
    spans = agent_trace()
    assert export_protobuf(live_server.url, key, spans, path, compression) == \
        SpanExportResult.SUCCESS
    drain_everything()
    rows = stored_spans(org.id)
    assert_stored_as_sent(rows, spans)
    # The query API reads the same trace.
    trace = client_for(key).get(f"/api/v1/traces/{hex_ids(spans[0])[0]}").json()
    assert trace["span_count"] == 4 and trace["status"] == "error"


def test_otlp_json_from_the_sdk_encoder_hex_ids_answers_json(mini_price):
    org, key = new_org()
    spans = agent_trace()
    response = post_json(key, otlp_json(spans, ids="hex"))
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {}  # full success: no partialSuccess
    drain_everything()
    assert_stored_as_sent(stored_spans(org.id), spans)


def test_otlp_json_with_base64_ids_from_a_non_compliant_exporter(mini_price):
    org, key = new_org()
    spans = agent_trace()
    payload = otlp_json(spans, ids="base64")  # protobuf's own JSON: ids in base64
    first_id = payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"]
    assert len(first_id) == 12
    assert post_json(key, payload, path="/api/public/otel/v1/traces").status_code == 200
    drain_everything()
    assert_stored_as_sent(stored_spans(org.id), spans)


def test_hand_written_json_quirks_numbers_strings_and_unknown_fields(mini_price):
    """What other exporters send: int64s as numbers (the JS exporter), ints and doubles as
    strings, enums by name, unknown fields everywhere (must be ignored)."""
    org, key = new_org()
    start = time.time_ns() - 3_600_000_000_000  # an hour ago, in nanoseconds
    payload = {"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "js-app"}},
            {"key": "deployment.environment", "value": {"stringValue": "prod"}}],
            "droppedAttributesCount": 0, "futureField": {"x": 1}},
        "schemaUrl": "https://opentelemetry.io/schemas/1.30.0",
        "scopeSpans": [{"scope": {"name": "js-scope", "version": "0.1"}, "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C",  # upper-case hex
            "spanId": "EEE19B7EC3C1B174",
            "name": "chat", "kind": "SPAN_KIND_CLIENT",
            "startTimeUnixNano": start,  # a number
            "endTimeUnixNano": str(start + 1_500_000_000),  # a string
            "status": {"code": "STATUS_CODE_ERROR", "message": "rate limited upstream"},
            "attributes": [
                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                {"key": "gen_ai.system", "value": {"stringValue": "openai"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "300"}},
                {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 20}},
                {"key": "gen_ai.usage.cost", "value": {"doubleValue": "0.0125"}},
                {"key": "gen_ai.prompt.0.role", "value": {"stringValue": "user"}},
                {"key": "gen_ai.prompt.0.content", "value": {"stringValue": "hi"}},
                {"key": "gen_ai.completion.0.role", "value": {"stringValue": "assistant"}},
                {"key": "gen_ai.completion.0.content", "value": {"stringValue": "hello"}},
                {"key": "flags", "value": {"arrayValue": {"values": [
                    {"boolValue": True}, {"intValue": "2"}]}}},
                {"key": "no.value"},
            ],
            "events": [{"timeUnixNano": str(start + 1000), "name": "gen_ai.content.filter",
                        "attributes": [{"key": "blocked", "value": {"boolValue": False}}],
                        "somethingNew": True}],
            "links": [], "droppedEventsCount": 0, "traceState": "", "flags": 257,
            "brandNewField": {"nested": [1, 2]},
        }]}],
    }], "anotherUnknownTopLevel": 1}
    response = post_json(key, payload)
    assert response.status_code == 200, response.content
    drain_everything()
    [row] = stored_spans(org.id)
    assert (row["trace_id"], row["span_id"]) == ("5b8efff798038103d269b633813fc60c",
                                                 "eee19b7ec3c1b174")
    assert epoch_us(row["start_time"]) == start // 1000
    assert epoch_us(row["end_time"]) == (start + 1_500_000_000) // 1000
    assert (row["status"], row["status_message"]) == ("error", "rate limited upstream")
    assert (row["model"], row["provider"], row["kind"]) == ("gpt-4o-mini", "openai", "llm")
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (300, 20, 320)
    assert (row["cost"], row["cost_source"]) == (Decimal("0.0125"), "provided")
    assert content(row, "input") == [{"role": "user", "content": "hi"}]
    assert content(row, "output") == [{"role": "assistant", "content": "hello"}]
    assert row["environment"] == "prod"
    assert row["metadata"]["attributes.flags"] == "[true,2]"
    assert row["metadata"]["otel.span_kind"] == "client"
    assert orjson.loads(row["metadata"]["otel.events"])[0]["attributes"] == {"blocked": False}


def test_protobuf_request_gets_a_protobuf_answer(mini_price):
    _, key = new_org()
    body = encode_spans(agent_trace()).SerializeToString()
    response = post_otlp(key, body, content_type="application/x-protobuf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert not answer.HasField("partial_success")
