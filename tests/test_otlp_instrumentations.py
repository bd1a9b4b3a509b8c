"""The two OpenAI instrumentations from PyPI (OpenInference and Traceloop's OpenLLMetry), each
wrapping the real `openai` client against a fake OpenAI server on loopback, exported by the
OTLP/HTTP exporter to a live API: the stored span has the model, provider, messages, usage
with cached tokens and a computed cost, each compared with what the client sent."""

import sys
from decimal import Decimal

import openai
import pytest
import wrapt
from openinference.instrumentation import using_attributes
from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInferenceOpenAI
from opentelemetry.instrumentation.openai import OpenAIInstrumentor as TraceloopOpenAI
from opentelemetry.sdk.trace.export import SpanExportResult

from costs.models import Price
from tests import fake_openai
from tests.fake_openai import FakeOpenAI
from tests.ingest_helpers import client_for, drain_everything, new_org, stored_spans
from tests.otlp_helpers import (
    RESOURCE,
    content,
    epoch_us,
    export_protobuf,
    hex_ids,
    micros,
    recording_provider,
)

# The live server and the drain's threads read the org, its key and the prices: committed.
pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "system", "content": "You are a terse billing assistant."},
            {"role": "user", "content": "Why is there a charge of 49 EUR on my invoice?"}]


@pytest.fixture
def mini_price():
    return Price.objects.create(
        provider="openai", model_name="gpt-4o-mini", model_pattern=r"gpt-4o-mini(-.*)?",
        input_price=Decimal("0.15"), output_price=Decimal("0.6"),
        cached_input_price=Decimal("0.075"))


def expected_cost() -> Decimal:
    uncached = fake_openai.PROMPT_TOKENS - fake_openai.CACHED_TOKENS
    return (uncached * Decimal("0.15") + fake_openai.CACHED_TOKENS * Decimal("0.075")
            + fake_openai.COMPLETION_TOKENS * Decimal("0.6")) / 10**6


def unwrap_openai() -> None:
    """Undo what uninstrument() leaves behind: opentelemetry-instrumentation-openai 0.62.4
    keeps its wrapt wrappers on the openai resource classes, and a later test's instrumentor
    (our SDK's) would then nest its spans under spans of this test's dead provider."""
    for name, module in list(sys.modules.items()):
        if not name.startswith("openai.resources"):
            continue
        for cls in vars(module).values():
            if not isinstance(cls, type):
                continue
            for attr, value in list(vars(cls).items()):
                while isinstance(value, wrapt.FunctionWrapper):
                    value = value.__wrapped__
                    setattr(cls, attr, value)


def call_openai(instrumentor, **context) -> list:
    """One chat completion through the instrumented client; the spans it recorded."""
    provider, memory = recording_provider()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with FakeOpenAI() as fake:
            client = openai.OpenAI(base_url=fake.url, api_key="sk-fake", max_retries=0)
            if context:
                with using_attributes(**context):
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            else:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert len(fake.requests) == 1
    finally:
        instrumentor.uninstrument()
        unwrap_openai()
    spans = memory.get_finished_spans()
    assert len(spans) == 1, [span.name for span in spans]
    return list(spans)


def stored_and_read(live_server, key: str, org_id: int, spans: list) -> tuple[dict, dict]:
    assert export_protobuf(live_server.url, key, spans) == SpanExportResult.SUCCESS
    drain_everything()
    rows = stored_spans(org_id)
    assert len(rows) == 1
    trace_id = hex_ids(spans[0])[0]
    answer = client_for(key).get(f"/api/v1/traces/{trace_id}")
    assert answer.status_code == 200, answer.content
    return rows[0], answer.json()["spans"][0]


def assert_common(row: dict, read: dict, sent) -> None:
    trace_id, span_id, parent = hex_ids(sent)
    assert (row["trace_id"], row["span_id"], row["parent_span_id"]) == (trace_id, span_id, "")
    assert row["name"] == sent.name
    assert epoch_us(row["start_time"]) == micros(sent.start_time)
    assert epoch_us(row["end_time"]) == micros(sent.end_time)
    assert row["kind"] == "llm"
    assert row["model"] == fake_openai.RESPONSE_MODEL
    assert row["provider"] == "openai"
    assert (row["input_tokens"], row["output_tokens"], row["cached_input_tokens"],
            row["total_tokens"]) == (
        fake_openai.PROMPT_TOKENS, fake_openai.COMPLETION_TOKENS, fake_openai.CACHED_TOKENS,
        fake_openai.PROMPT_TOKENS + fake_openai.COMPLETION_TOKENS)
    assert row["usage_source"] == "provided"
    assert (row["cost"], row["cost_source"]) == (expected_cost(), "computed")
    assert row["environment"] == RESOURCE["deployment.environment.name"]
    assert row["metadata"]["resource.service.name"] == RESOURCE["service.name"]
    assert row["metadata"]["resource.telemetry.sdk.name"] == "opentelemetry"
    assert row["metadata"]["otel.scope.name"] == sent.instrumentation_scope.name
    # The query API answers the same span.
    assert (read["span_id"], read["model"], read["provider"]) == (
        span_id, fake_openai.RESPONSE_MODEL, "openai")
    assert (read["input_tokens"], read["cached_input_tokens"]) == (
        fake_openai.PROMPT_TOKENS, fake_openai.CACHED_TOKENS)
    assert Decimal(read["cost"]) == expected_cost()
    assert read["input"] == content(row, "input") and read["output"] == content(row, "output")


def test_openinference_openai_span_is_stored_with_messages_usage_and_cost(live_server,
                                                                           mini_price):
    org, key = new_org()
    spans = call_openai(OpenInferenceOpenAI(), session_id="sess-42", user_id="ana",
                        tags=["billing", "prod"], metadata={"plan": "pro", "seats": 3})
    sent = spans[0]
    assert sent.attributes["openinference.span.kind"] == "LLM"  # what the client really sent
    row, read = stored_and_read(live_server, key, org.id, spans)
    assert_common(row, read, sent)
    # OpenInference's messages (llm.input_messages.N / llm.output_messages.N), as sent.
    assert content(row, "input") == MESSAGES
    assert content(row, "output") == [{"role": "assistant", "content": fake_openai.ANSWER}]
    assert (row["session_id"], row["user_id"], row["tags"]) == ("sess-42", "ana",
                                                               ["billing", "prod"])
    assert row["metadata"]["plan"] == "pro" and row["metadata"]["seats"] == "3"
    assert row["metadata"]["attributes.llm.invocation_parameters"] == sent.attributes[
        "llm.invocation_parameters"]


def test_traceloop_openai_span_is_stored_with_messages_usage_and_cost(live_server, mini_price):
    org, key = new_org()
    spans = call_openai(TraceloopOpenAI())
    sent = spans[0]
    assert sent.attributes["gen_ai.operation.name"] == "chat"  # what the client really sent
    row, read = stored_and_read(live_server, key, org.id, spans)
    assert_common(row, read, sent)
    # GenAI semantic conventions' "parts" messages, parsed from their JSON strings.
    stored_input = content(row, "input")
    assert [message["role"] for message in stored_input] == ["system", "user"]
    assert [message["parts"][0]["content"] for message in stored_input] == [
        message["content"] for message in MESSAGES]
    stored_output = content(row, "output")
    assert stored_output[0]["parts"][0]["content"] == fake_openai.ANSWER
    assert stored_output[0]["finish_reason"] == "stop"
    assert row["metadata"]["otel.span_kind"] == "client"
    assert row["metadata"]["attributes.gen_ai.response.id"] == "chatcmpl-fake-1"
