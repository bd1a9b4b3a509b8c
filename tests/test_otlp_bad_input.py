"""Bad input at the OTLP door gets the documented answer (a google.rpc.Status in the request's
encoding, or a partial success naming each refused or truncated span), and nothing valid in
the same request is lost."""

import gzip
import json
import time
import zlib

import orjson
import pytest
from django.test import override_settings
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ingestion.services.accept import ORIGINAL_BYTES_KEY
from llmops import kafka
from operations.models import DegradationLevel
from operations.services.degradation import set_manual_level
from tests.ingest_helpers import drain_everything, new_org, stored_spans
from tests.otlp_helpers import hex_ids, otlp_json, post_json, post_otlp, recording_provider

pytestmark = pytest.mark.django_db

PROTOBUF = "application/x-protobuf"


def sdk_spans(count: int = 2, **attributes) -> list:
    provider, memory = recording_provider()
    tracer = provider.get_tracer("bad-input")
    with tracer.start_as_current_span("root"):
        for index in range(count - 1):
            with tracer.start_as_current_span(f"child {index}", attributes=attributes):
                pass
    return list(memory.get_finished_spans())


def json_span(trace_id: str | None, span_id: str | None, name: str, **extra) -> dict:
    span = {"name": name, "startTimeUnixNano": str(time.time_ns() - 60_000_000_000),
            "endTimeUnixNano": str(time.time_ns() - 59_000_000_000), **extra}
    if trace_id is not None:
        span["traceId"] = trace_id
    if span_id is not None:
        span["spanId"] = span_id
    return span


def request_of(*spans: dict) -> dict:
    return {"resourceSpans": [{"resource": {"attributes": []},
                               "scopeSpans": [{"scope": {"name": "t"}, "spans": list(spans)}]}]}


def status_of(response) -> status_pb2.Status:
    if response["Content-Type"] == PROTOBUF:
        return status_pb2.Status.FromString(response.content)
    body = response.json()
    return status_pb2.Status(code=body["code"], message=body["message"])


TRACE = "0af7651916cd43dd8448eb211c80319c"


def test_spans_without_ids_are_refused_by_name_and_the_valid_one_is_stored():
    org, key = new_org()
    payload = request_of(
        json_span(None, "b7ad6b7169203331", "no trace id"),
        json_span(TRACE, None, "no span id"),
        json_span(TRACE, "00000000000000ff", "valid"),
        json_span(TRACE, "zz", "bad hex"),
        json_span("0" * 32, "00000000000000aa", "zero trace id"),
    )
    response = post_json(key, payload)
    assert response.status_code == 200, response.content
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "4"
    message = partial["errorMessage"]
    assert "span b7ad6b7169203331 refused: traceId missing" in message
    assert "span #1 refused: spanId missing" in message
    assert "span #3 refused: spanId missing" in message
    assert "span 00000000000000aa refused: traceId missing" in message
    drain_everything()
    assert [row["name"] for row in stored_spans(org.id)] == ["valid"]


def test_span_our_validation_refuses_is_named_with_its_field_in_protobuf():
    org, key = new_org()
    spans = sdk_spans(3)
    request = encode_spans(spans)
    old = request.resource_spans[0].scope_spans[0].spans[0]
    old.start_time_unix_nano = 1_000_000_000  # 1970: far outside the retention
    old.end_time_unix_nano = 2_000_000_000
    old_id = old.span_id.hex()
    response = post_otlp(key, request.SerializeToString(), content_type=PROTOBUF)
    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert f"span {old_id} refused: start_time: start_time must be between" in \
        answer.partial_success.error_message
    drain_everything()
    stored = {row["span_id"] for row in stored_spans(org.id)}
    assert stored == {hex_ids(span)[1] for span in spans} - {old_id}


def test_malformed_protobuf_is_400_with_a_status_and_nothing_stored():
    org, key = new_org()
    body = encode_spans(sdk_spans()).SerializeToString()
    response = post_otlp(key, body[:-7] + b"\xff\xff\xff", content_type=PROTOBUF)
    assert response.status_code == 400
    assert response["Content-Type"] == PROTOBUF
    status = status_of(response)
    assert status.code == 3  # INVALID_ARGUMENT
    assert "not a valid ExportTraceServiceRequest" in status.message
    drain_everything()
    assert stored_spans(org.id) == []


def test_malformed_json_is_400_in_json():
    _, key = new_org()
    response = post_otlp(key, b'{"resourceSpans": [', content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]
    response = post_json(key, {"resourceSpans": {"not": "a list"}})
    assert response.status_code == 400
    assert "`resourceSpans` must be a list" in response.json()["message"]


def test_unknown_content_type_is_415_naming_the_accepted_ones():
    _, key = new_org()
    response = post_otlp(key, b"hello", content_type="text/plain")
    assert response.status_code == 415
    message = response.json()["message"]
    assert "text/plain" in message and "application/x-protobuf" in message \
        and "application/json" in message
    response = post_otlp(key, b"x", content_type="application/json",
                         HTTP_CONTENT_ENCODING="br")
    assert response.status_code == 415
    assert "Content-Encoding 'br'" in response.json()["message"]


def test_a_wrong_key_is_401_with_a_status():
    response = post_otlp("llm_not-a-key", b"{}", content_type=PROTOBUF)
    assert response.status_code == 401
    assert status_of(response).code == 16  # UNAUTHENTICATED
    assert "invalid or revoked API key" in status_of(response).message


@override_settings(OTLP_MAX_BODY_BYTES=50_000)
def test_oversized_body_is_413_before_and_after_inflating():
    org, key = new_org()
    payload = otlp_json(sdk_spans(2, padding="p" * 60_000))
    body = orjson.dumps(payload)
    response = post_otlp(key, body)
    assert response.status_code == 413
    assert "OTLP_MAX_BODY_BYTES" in response.json()["message"]
    # Compressed it is small; inflated it is not.
    compressed = gzip.compress(body)
    assert len(compressed) < 50_000
    response = post_otlp(key, compressed, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    # Under the limit once inflated: stored.
    small = gzip.compress(orjson.dumps(otlp_json(sdk_spans(2))))
    assert post_otlp(key, small, HTTP_CONTENT_ENCODING="gzip").status_code == 200


@override_settings(OTLP_MAX_BODY_BYTES=1024 * 1024)
def test_a_gzip_bomb_is_413_without_being_inflated_whole():
    _, key = new_org()
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)  # 200 MB of zeros
    assert len(bomb) < 1024 * 1024
    started = time.perf_counter()
    response = post_otlp(key, bomb, content_type=PROTOBUF, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    assert status_of(response).code == 8  # RESOURCE_EXHAUSTED
    assert time.perf_counter() - started < 2  # stopped at the limit, not inflated to 200 MB
    deflated = zlib.compress(b"\0" * (50 * 1024 * 1024))
    response = post_otlp(key, deflated, content_type=PROTOBUF, HTTP_CONTENT_ENCODING="deflate")
    assert response.status_code == 413


def test_not_gzip_is_400():
    _, key = new_org()
    response = post_otlp(key, b"plain bytes", content_type=PROTOBUF,
                         HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 400
    assert "not valid gzip" in status_of(response).message


def test_a_span_with_1_5_mb_input_is_stored_truncated_and_named():
    org, key = new_org()
    big = "a long document " * 100_000  # 1.6 MB
    spans = sdk_spans(2, **{"gen_ai.operation.name": "chat",
                            "gen_ai.request.model": "gpt-4o-mini",
                            "gen_ai.input.messages": json.dumps([{"role": "user",
                                                                  "content": big}]),
                            "gen_ai.output.messages": json.dumps([{"role": "assistant",
                                                                   "content": "short"}])})
    child = next(span for span in spans if span.name == "child 0")
    child_id = hex_ids(child)[1]
    response = post_otlp(key, encode_spans(spans).SerializeToString(), content_type=PROTOBUF)
    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 0  # stored, not refused
    assert (f"span {child_id} stored with input truncated to 1048576 bytes"
            in answer.partial_success.error_message)
    drain_everything()
    rows = {row["span_id"]: row for row in stored_spans(org.id)}
    assert len(rows) == 2
    row = rows[child_id]
    assert row["input_format"] == "text"
    assert row["input_content"].startswith('[{"role":"user","content":"a long document')
    assert "[truncated by llmops:" in row["input_content"]
    assert len(row["input_content"]) <= 1024 * 1024
    assert int(row["metadata"][ORIGINAL_BYTES_KEY.format(name="input")]) > 1_500_000
    assert json.loads(row["output_content"]) == [{"role": "assistant", "content": "short"}]


def test_rate_limit_is_429_with_retry_after_and_nothing_stored():
    org, key = new_org(ingest_rate_limit=3)
    response = post_json(key, otlp_json(sdk_spans(5)))
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["code"] == 8
    drain_everything()
    assert stored_spans(org.id) == []


def test_read_only_is_503_with_retry_after_in_protobuf():
    _, key = new_org()
    set_manual_level(DegradationLevel.READ_ONLY, reason="test", changed_by="pytest")
    response = post_otlp(key, encode_spans(sdk_spans()).SerializeToString(),
                         content_type=PROTOBUF)
    assert response.status_code == 503
    assert response["Retry-After"]
    status = status_of(response)
    assert status.code == 14 and "read-only" in status.message


def test_kafka_unreachable_is_503_never_a_silent_200():
    _, key = new_org()
    kafka.get_producer.cache_clear()
    try:
        with override_settings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
                               KAFKA_PUBLISH_TIMEOUT_S=1.0):
            response = post_json(key, otlp_json(sdk_spans()))
    finally:
        kafka.get_producer.cache_clear()
    assert response.status_code == 503
    assert response["Retry-After"]
    assert "not stored" in response.json()["message"]


@override_settings(OTLP_MAX_SPANS_PER_REQUEST=3)
def test_too_many_spans_in_one_request_is_413():
    _, key = new_org()
    request = ExportTraceServiceRequest()
    request.CopyFrom(encode_spans(sdk_spans(4)))
    response = post_otlp(key, request.SerializeToString(), content_type=PROTOBUF)
    assert response.status_code == 413
    assert "OTLP_MAX_SPANS_PER_REQUEST" in status_of(response).message
