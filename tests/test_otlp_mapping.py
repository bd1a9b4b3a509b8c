"""The mapping table of design/otel-and-langfuse-ingestion.md, alias by alias with its
precedence (Langfuse > GenAI semconv > OpenInference > Traceloop; span over resource), on the
pure function both OTLP encodings go through (ingestion.otlp.mapping.map_span)."""

import json

import orjson
import pytest

from ingestion.otlp.mapping import (
    EVENTS_KEY,
    TRACE_NAME_KEY,
    OtlpEvent,
    OtlpSpan,
    Scope,
    map_span,
)
from tests.test_otlp_wire import NOW_NS, assert_same, request_of


def mapped(attributes: dict, resource: dict | None = None, events=(), **span) -> dict:
    otlp = OtlpSpan("ab" * 16, "cd" * 8, span.pop("name", "op"), NOW_NS,
                    attributes=attributes, events=list(events), **span)
    ours = map_span(otlp, Scope(resource or {}), max_events_bytes=2000,
                    max_attribute_chars=100)
    # The compiled reader maps the same span, sent in protobuf, to the same dict.
    fields = {"attributes": attributes, "kind": otlp.kind, "name": otlp.name,
              "events": [(event.name, event.time_ns, event.attributes) for event in events],
              "status": (otlp.status_code, otlp.status_message)}
    assert_same(request_of([fields], resource, scope=""))
    return ours


def chain_cases(field_of, chain: list[tuple[str, object, object]]):
    """Each alias of `chain` (highest first) wins over every lower one, and is read alone."""
    for index, (key, sent, expected) in enumerate(chain):
        attributes = {k: v for k, v, _ in chain[index:]}
        assert field_of(mapped(attributes)) == expected, (key, attributes)
        assert field_of(mapped({key: sent})) == expected, key


def test_model_aliases_in_order():
    chain_cases(lambda span: span["model"], [
        ("langfuse.observation.model.name", "lf-model", "lf-model"),
        ("gen_ai.response.model", "resp-model", "resp-model"),
        ("gen_ai.request.model", "req-model", "req-model"),
        ("llm.model_name", "oi-model", "oi-model"),
        ("llm.response.model_name", "oi-resp", "oi-resp"),
        ("llm.request.model_name", "oi-req", "oi-req"),
        ("embedding.model_name", "emb", "emb"),
    ])


def test_provider_aliases_in_order():
    chain_cases(lambda span: span["provider"], [
        ("gen_ai.provider.name", "openai", "openai"),
        ("gen_ai.system", "az.ai.openai", "az.ai.openai"),
        ("llm.provider", "anthropic", "anthropic"),
        ("llm.system", "mistralai", "mistralai"),
    ])


@pytest.mark.parametrize(("usage_field", "chain"), [
    ("input_tokens", ["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                      "llm.token_count.prompt"]),
    ("output_tokens", ["gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                       "llm.token_count.completion"]),
    ("total_tokens", ["gen_ai.usage.total_tokens", "llm.token_count.total"]),
])
def test_token_aliases_in_order(usage_field, chain):
    # Values as ints, strings and doubles: OTLP JSON sends int64s as strings.
    values = [700, "600", 500.0]
    cases = [(key, values[index], int(values[index])) for index, key in enumerate(chain)]
    chain_cases(lambda span: span["usage"][usage_field], cases)


@pytest.mark.parametrize(("usage_field", "chain"), [
    ("cached_input_tokens", ["gen_ai.usage.cache_read.input_tokens",
                             "gen_ai.usage.cache_read_input_tokens",
                             "llm.token_count.prompt_details.cache_read"]),
    ("cache_write_tokens", ["gen_ai.usage.cache_creation.input_tokens",
                            "gen_ai.usage.cache_creation_input_tokens",
                            "llm.token_count.prompt_details.cache_write"]),
])
def test_cache_token_aliases_in_order(usage_field, chain):
    cases = [(key, 30 - index, 30 - index) for index, key in enumerate(chain)]
    chain_cases(lambda span: span["usage"][usage_field], cases)
    # Part of the prompt: with input_tokens they stay apart, input as sent.
    usage = mapped({chain[0]: 30, "gen_ai.usage.input_tokens": 100})["usage"]
    assert (usage["input_tokens"], usage[usage_field]) == (100, 30)


def test_total_is_input_plus_output_never_a_sum_of_unknown_keys():
    usage = mapped({"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5,
                    "gen_ai.usage.reasoning_tokens": 3,
                    "gen_ai.usage.mystery_tokens": 1000})["usage"]
    assert usage == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    details = {"input": 10, "output": 5, "foo_tokens": 1000, "audio": 7}
    usage = mapped({"langfuse.observation.usage_details": json.dumps(details)})["usage"]
    assert usage == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}


def test_langfuse_usage_details_add_back_cache_and_reasoning_and_win():
    details = {"input": 100, "input_cached_tokens": 50, "cache_creation_input_tokens": 10,
               "output": 20, "output_reasoning_tokens": 5, "total": 185}
    span = mapped({"langfuse.observation.usage_details": json.dumps(details),
                   "gen_ai.usage.input_tokens": 1, "gen_ai.usage.output_tokens": 1})
    assert span["usage"] == {"input_tokens": 160, "output_tokens": 25,
                             "cached_input_tokens": 50, "cache_write_tokens": 10,
                             "total_tokens": 185}
    for read, write in (("cache_read_input_tokens", "input_cache_creation"),
                        ("input_cache_read", "input_cache_write")):
        usage = mapped({"langfuse.observation.usage_details": json.dumps(
            {"input": 1, read: 2, write: 3, "output": 4})})["usage"]
        assert usage == {"input_tokens": 6, "output_tokens": 4, "cached_input_tokens": 2,
                         "cache_write_tokens": 3, "total_tokens": 10}


def test_cost_aliases_in_order():
    chain_cases(lambda span: span["cost"], [
        ("langfuse.observation.cost_details", json.dumps({"input": 0.1, "total": 0.25}), 0.25),
        ("gen_ai.usage.cost", "0.5", 0.5),
        ("llm.cost.total", 0.75, 0.75),
    ])
    assert mapped({"langfuse.observation.cost_details": '{"input": 0.1, "output": 0.2}'})[
        "cost"] == pytest.approx(0.3)
    assert "cost" not in mapped({"gen_ai.usage.input_tokens": 3})  # priced by the table


@pytest.mark.parametrize(("attributes", "kind"), [
    *[({"langfuse.observation.type": value}, kind) for value, kind in (
        ("generation", "llm"), ("embedding", "embedding"), ("agent", "agent"),
        ("tool", "tool"), ("chain", "chain"), ("retriever", "retrieval"), ("span", "other"),
        ("event", "other"), ("guardrail", "other"), ("evaluator", "other"))],
    *[({"gen_ai.operation.name": value}, kind) for value, kind in (
        ("chat", "llm"), ("text_completion", "llm"), ("generate_content", "llm"),
        ("embeddings", "embedding"), ("execute_tool", "tool"), ("invoke_agent", "agent"),
        ("create_agent", "agent"), ("retrieval", "retrieval"), ("invoke_workflow", "chain"))],
    *[({"openinference.span.kind": value}, kind) for value, kind in (
        ("LLM", "llm"), ("CHAIN", "chain"), ("TOOL", "tool"), ("RETRIEVER", "retrieval"),
        ("EMBEDDING", "embedding"), ("AGENT", "agent"), ("RERANKER", "other"),
        ("GUARDRAIL", "other"))],
    ({"traceloop.span.kind": "workflow"}, "chain"),
    ({"traceloop.span.kind": "task"}, "chain"),
    ({"gen_ai.request.model": "gpt-4o"}, "llm"),
    ({}, "other"),
    # Precedence: Langfuse > GenAI > OpenInference > Traceloop > a model.
    ({"langfuse.observation.type": "tool", "gen_ai.operation.name": "chat",
      "openinference.span.kind": "LLM"}, "tool"),
    ({"gen_ai.operation.name": "embeddings", "openinference.span.kind": "LLM"}, "embedding"),
    ({"openinference.span.kind": "CHAIN", "traceloop.span.kind": "task",
      "gen_ai.request.model": "x"}, "chain"),
    ({"traceloop.span.kind": "workflow", "gen_ai.request.model": "x"}, "chain"),
])
def test_kind(attributes, kind):
    assert mapped(attributes)["kind"] == kind


def test_tool_spans_are_named_by_the_tool():
    span = mapped({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
                  name="execute_tool search")
    assert span["name"] == "search"


def test_status_from_otlp_error_type_and_langfuse_level():
    assert (lambda s: (s["status"], s["status_message"]))(
        mapped({}, status_code=2, status_message="boom")) == ("error", "boom")
    span = mapped({"error.type": "TimeoutError"})
    assert (span["status"], span["status_message"]) == ("error", "TimeoutError")
    span = mapped({"langfuse.observation.level": "ERROR",
                   "langfuse.observation.status_message": "refused by guardrail"})
    assert (span["status"], span["status_message"]) == ("error", "refused by guardrail")
    assert mapped({"langfuse.observation.level": "WARNING"})["status"] == "ok"
    assert mapped({}, status_code=1)["status"] == "ok"


def test_input_and_output_aliases_in_order():
    messages = [{"role": "user", "content": "q"}]
    chain_cases(lambda span: span.get("input"), [
        ("langfuse.observation.input", json.dumps({"lf": 1}), {"lf": 1}),
        ("gen_ai.input.messages", json.dumps(messages), messages),
        ("gen_ai.tool.call.arguments", '{"a": 1}', {"a": 1}),
        ("llm.input_messages.0.message.role", "user", [{"role": "user"}]),
        ("langfuse.trace.input", '"trace in"', "trace in"),
        ("traceloop.entity.input", json.dumps({"inputs": {"x": 1}}), {"inputs": {"x": 1}}),
    ])
    chain_cases(lambda span: span.get("output"), [
        ("langfuse.observation.output", "plain text answer", "plain text answer"),
        ("gen_ai.output.messages", json.dumps(messages), messages),
        ("gen_ai.tool.call.result", '{"r": 2}', {"r": 2}),
        ("llm.output_messages.0.message.content", "a", [{"content": "a"}]),
        ("langfuse.trace.output", '{"t": 1}', {"t": 1}),
        ("traceloop.entity.output", '"done"', "done"),
    ])


def test_openinference_values_by_mime_type_and_messages_first():
    span = mapped({"input.value": '{"q": 1}', "input.mime_type": "application/json",
                   "output.value": '{"not": "parsed"}', "output.mime_type": "text/plain"})
    assert (span["input"], span["output"]) == ({"q": 1}, '{"not": "parsed"}')
    span = mapped({"input.value": "raw", "llm.input_messages.0.message.role": "user",
                   "llm.input_messages.0.message.content": "hi",
                   "llm.input_messages.1.message.role": "assistant",
                   "llm.input_messages.1.message.content": "yo"})
    assert span["input"] == [{"role": "user", "content": "hi"},
                             {"role": "assistant", "content": "yo"}]


def test_flattened_prompt_and_completion_in_index_order():
    span = mapped({"gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "second",
                   "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "first",
                   "gen_ai.prompt.10.role": "user", "gen_ai.prompt.10.content": "eleventh",
                   "gen_ai.completion.0.role": "assistant",
                   "gen_ai.completion.0.tool_calls.0.name": "lookup",
                   "gen_ai.completion.0.finish_reason": "tool_calls"})
    assert [message["content"] for message in span["input"]] == ["first", "second", "eleventh"]
    assert span["output"] == [{"role": "assistant", "tool_calls.0.name": "lookup",
                               "finish_reason": "tool_calls"}]
    # The GenAI messages attribute beats the flattened form.
    assert mapped({"gen_ai.prompt.0.content": "old",
                   "gen_ai.input.messages": '[{"role": "user"}]'})["input"] == [{"role": "user"}]


def test_genai_events_become_messages_and_other_events_are_kept():
    events = [
        OtlpEvent("gen_ai.system.message", NOW_NS, {"content": "be brief",
                                                    "gen_ai.system": "openai"}),
        OtlpEvent("gen_ai.user.message", NOW_NS, {"content": "hello"}),
        OtlpEvent("gen_ai.choice", NOW_NS, {"index": 0, "finish_reason": "stop",
                                            "message": '{"content": "hi"}'}),
        OtlpEvent("cache.miss", NOW_NS + 1000, {"key": "k1"}),
    ]
    span = mapped({}, events=events)
    assert span["input"] == [{"content": "be brief", "role": "system"},
                             {"content": "hello", "role": "user"}]
    assert span["output"] == [{"index": 0, "finish_reason": "stop",
                               "message": {"content": "hi"}}]
    kept = orjson.loads(span["metadata"][EVENTS_KEY])
    assert [(event["name"], event["attributes"]) for event in kept] == [("cache.miss",
                                                                        {"key": "k1"})]
    details = OtlpEvent("gen_ai.client.inference.operation.details", NOW_NS, {
        "gen_ai.input.messages": '[{"role": "user", "parts": []}]',
        "gen_ai.output.messages": '[{"role": "assistant", "parts": []}]'})
    span = mapped({}, events=[details])
    assert span["input"] == [{"role": "user", "parts": []}]
    assert span["output"] == [{"role": "assistant", "parts": []}]
    assert EVENTS_KEY not in span["metadata"]


def test_events_are_cut_at_the_limit_with_a_marker():
    span = mapped({}, events=[OtlpEvent("exception", NOW_NS, {"exception.stacktrace":
                                                              "frame\n" * 1000})])
    kept = span["metadata"][EVENTS_KEY]
    assert kept.startswith('[{"name":"exception"') and "[truncated by llmops:" in kept
    assert len(kept) < 2100


def test_session_user_tags_environment_in_order():
    chain_cases(lambda span: span.get("session_id"), [
        ("langfuse.session.id", "lf-s", "lf-s"), ("session.id", "oi-s", "oi-s"),
        ("gen_ai.conversation.id", "conv", "conv")])
    chain_cases(lambda span: span.get("user_id"), [
        ("langfuse.user.id", "lf-u", "lf-u"), ("user.id", "u", "u")])
    chain_cases(lambda span: span.get("tags"), [
        ("langfuse.trace.tags", '["a", "b"]', ["a", "b"]), ("tag.tags", ("x",), ["x"])])
    assert mapped({"langfuse.trace.tags": ["c", "d"]})["tags"] == ["c", "d"]
    chain_cases(lambda span: span.get("environment"), [
        ("langfuse.environment", "lf-env", "lf-env"),
        ("deployment.environment.name", "new", "new"),
        ("deployment.environment", "old", "old")])
    assert "environment" not in mapped({})  # the schema's default


def test_a_span_attribute_beats_its_resource_and_the_resource_is_kept():
    resource = {"service.name": "api", "deployment.environment.name": "prod",
                "session.id": "from-resource", "telemetry.sdk.version": "1.45.2"}
    span = mapped({"session.id": "from-span"}, resource)
    assert (span["session_id"], span["environment"]) == ("from-span", "prod")
    assert span["metadata"]["resource.service.name"] == "api"
    assert span["metadata"]["resource.telemetry.sdk.version"] == "1.45.2"
    assert mapped({}, resource)["session_id"] == "from-resource"


def test_metadata_from_every_source_with_langfuse_v5_and_v3_values():
    span = mapped({
        "traceloop.association.properties.team": "tl-team",
        "traceloop.association.properties.only_tl": "x",
        "metadata": json.dumps({"team": "oi-team", "only_oi": 1, "nested": {"a": 1}}),
        "langfuse.trace.metadata.team": '"lf-trace-team"',  # v5: JSON-encoded
        "langfuse.trace.metadata.count": "3",
        "langfuse.observation.metadata.step": "raw v3 string",  # v3: raw
        "langfuse.trace.name": "checkout",
        "langfuse.observation.model.parameters": '{"temperature": 0.2, "stop": ["x"]}',
        "langfuse.release": "v1.2",
        "custom.attr": "y" * 150,
    })
    metadata = span["metadata"]
    assert metadata["team"] == "lf-trace-team"
    assert (metadata["only_tl"], metadata["only_oi"], metadata["nested"]) == ("x", 1,
                                                                              '{"a":1}')
    assert (metadata["count"], metadata["step"]) == (3, "raw v3 string")
    assert metadata[TRACE_NAME_KEY] == "checkout"
    # Model parameters as the legacy door keeps modelParameters: one key each.
    assert (metadata["model_parameters.temperature"], metadata["model_parameters.stop"],
            metadata["release"]) == (0.2, '["x"]', "v1.2")
    assert "model_parameters" not in metadata
    assert metadata["attributes.custom.attr"].startswith("y" * 100 + " [truncated by llmops")
    # What the mapping read is not repeated as attributes.
    assert not any(key.startswith("attributes.langfuse") or key == "attributes.metadata"
                   for key in metadata)


def test_a_langfuse_v5_generation_maps_whole():
    span = mapped({
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": "gpt-4o",
        "langfuse.observation.input": json.dumps([{"role": "user", "content": "hi"}]),
        "langfuse.observation.output": json.dumps({"role": "assistant", "content": "yo"}),
        "langfuse.observation.usage_details": json.dumps({"input": 5, "output": 2,
                                                          "total": 7}),
        "langfuse.observation.cost_details": json.dumps({"total": 0.001}),
        "langfuse.user.id": "user-1", "user.id": "user-1", "langfuse.session.id": "s-1",
        "session.id": "s-1", "langfuse.trace.tags": ["t1"], "langfuse.environment": "dev",
    }, name="llm-call")
    assert {key: span[key] for key in ("name", "kind", "model", "input", "output", "usage",
                                       "cost", "user_id", "session_id", "tags",
                                       "environment")} == {
        "name": "llm-call", "kind": "llm", "model": "gpt-4o",
        "input": [{"role": "user", "content": "hi"}],
        "output": {"role": "assistant", "content": "yo"},
        "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}, "cost": 0.001,
        "user_id": "user-1", "session_id": "s-1", "tags": ["t1"], "environment": "dev"}
