"""One OTLP span -> one of our span dicts (what POST /api/v1/spans takes), by the alias table of
docs design/otel-and-langfuse-ingestion.md: Langfuse attributes > GenAI semantic conventions >
OpenInference > Traceloop, and a span's attribute over its resource's.

Pure: no I/O, no settings read unless a limit is left out. Both decoders (protobuf, JSON)
produce the same plain `OtlpSpan`, so the mapping is tested once for both.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Scalar = (str, int, float, bool)

# Metadata keys the door writes beside what the client set.
EVENTS_KEY = "otel.events"
SPAN_KIND_KEY = "otel.span_kind"
SCOPE_NAME_KEY = "otel.scope.name"
SCOPE_VERSION_KEY = "otel.scope.version"
RESOURCE_PREFIX = "resource."
ATTRIBUTE_PREFIX = "attributes."
# Langfuse names traces apart from their root span; kept for the trace-level reads.
TRACE_NAME_KEY = "trace_name"

OTEL_SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")


@dataclass(slots=True)
class OtlpEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(slots=True)
class OtlpSpan:
    """An OTLP span as both decoders leave it: ids in lowercase hex, attribute values as
    Python values (str, int, float, bool, bytes, list, dict)."""

    trace_id: str
    span_id: str
    name: str
    start_ns: int
    parent_span_id: str = ""
    kind: int = 0
    end_ns: int = 0
    status_code: int = 0
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[OtlpEvent] = field(default_factory=list)


@dataclass(slots=True)
class Scope:
    """What a span shares with the others of its resource and instrumentation scope."""

    resource: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    version: str = ""
    # The resource as metadata, made once per scope rather than once per span.
    resource_metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.resource_metadata:
            self.resource_metadata = {RESOURCE_PREFIX + key: scalar(value)
                                      for key, value in self.resource.items()}
            if self.name:
                self.resource_metadata[SCOPE_NAME_KEY] = self.name
            if self.version:
                self.resource_metadata[SCOPE_VERSION_KEY] = self.version


# -- the alias table -------------------------------------------------------------------------

LANGFUSE_TYPES = {"generation": "llm", "embedding": "embedding", "agent": "agent",
                  "tool": "tool", "chain": "chain", "retriever": "retrieval", "span": "other",
                  "event": "other", "guardrail": "other", "evaluator": "other"}
GENAI_OPERATIONS = {"chat": "llm", "text_completion": "llm", "generate_content": "llm",
                    "embeddings": "embedding", "execute_tool": "tool", "invoke_agent": "agent",
                    "create_agent": "agent", "retrieval": "retrieval",
                    "invoke_workflow": "chain"}
OPENINFERENCE_KINDS = {"LLM": "llm", "CHAIN": "chain", "TOOL": "tool",
                       "RETRIEVER": "retrieval", "EMBEDDING": "embedding", "AGENT": "agent"}
TRACELOOP_KINDS = {"workflow": "chain", "task": "chain", "agent": "agent", "tool": "tool"}

MODEL_KEYS = ("langfuse.observation.model.name", "gen_ai.response.model",
              "gen_ai.request.model", "llm.model_name", "llm.response.model_name",
              "llm.request.model_name", "embedding.model_name")
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
SESSION_KEYS = ("langfuse.session.id", "session.id", "gen_ai.conversation.id")
USER_KEYS = ("langfuse.user.id", "user.id")
TAG_KEYS = ("langfuse.trace.tags", "tag.tags")
ENVIRONMENT_KEYS = ("langfuse.environment", "deployment.environment.name",
                    "deployment.environment")
COST_KEYS = ("gen_ai.usage.cost", "llm.cost.total")

# usage: ours <- (GenAI semconv..., OpenInference...) after Langfuse's usage_details.
INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                    "llm.token_count.prompt")
OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                     "llm.token_count.completion")
CACHED_TOKEN_KEYS = ("gen_ai.usage.cache_read.input_tokens",
                     "gen_ai.usage.cache_read_input_tokens",
                     "llm.token_count.prompt_details.cache_read")
CACHE_WRITE_TOKEN_KEYS = ("gen_ai.usage.cache_creation.input_tokens",
                          "gen_ai.usage.cache_creation_input_tokens",
                          "llm.token_count.prompt_details.cache_write")
TOTAL_TOKEN_KEYS = ("gen_ai.usage.total_tokens", "llm.token_count.total")
# Langfuse's usage_details: `input` excludes the cache, `output` the reasoning tokens.
LANGFUSE_CACHE_READ = ("input_cached_tokens", "cache_read_input_tokens", "input_cache_read")
LANGFUSE_CACHE_WRITE = ("input_cache_creation", "cache_creation_input_tokens",
                        "input_cache_write")
LANGFUSE_REASONING = ("output_reasoning_tokens", "output_reasoning")

LEGACY_MESSAGE_EVENTS = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                         "gen_ai.assistant.message": "assistant",
                         "gen_ai.tool.message": "tool"}
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
CHOICE_EVENT = "gen_ai.choice"

# Span attributes read into fields (or content): not repeated in metadata.
CONSUMED_PREFIXES = ("gen_ai.prompt.", "gen_ai.completion.", "llm.input_messages.",
                     "llm.output_messages.", "langfuse.", "gen_ai.usage.",
                     "llm.token_count.", "traceloop.association.properties.",
                     "traceloop.entity.")
CONSUMED_KEYS = frozenset((
    *MODEL_KEYS, *PROVIDER_KEYS, *SESSION_KEYS, *USER_KEYS, *TAG_KEYS, *ENVIRONMENT_KEYS,
    *COST_KEYS, "gen_ai.operation.name", "openinference.span.kind", "traceloop.span.kind",
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "input.value", "output.value",
    "input.mime_type", "output.mime_type", "metadata", "error.type", "gen_ai.tool.name",
))


# -- value helpers ---------------------------------------------------------------------------

def scalar(value: Any) -> Any:
    """A metadata value: scalars as they are, anything else as its JSON text."""
    if value is None or isinstance(value, Scalar):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return orjson.dumps(value, default=str).decode()


def json_or_text(value: Any) -> Any:
    """A JSON string decoded (clients send structured content as JSON text); else as is."""
    if isinstance(value, str) and value[:1] in ("{", "[", '"'):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def as_int(value: Any) -> int | None:
    """Token counts arrive as ints, doubles or strings (OTLP JSON int64s are strings)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(float(value)) if isinstance(value, float | str) else None
    except ValueError:
        return None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def first(attributes: dict, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            return value
    return None


def time_of(nanos: int) -> datetime:
    # Integer arithmetic: a float of epoch seconds can be a microsecond off.
    return EPOCH + timedelta(microseconds=nanos // 1000)


def unflatten(attributes: dict, prefix: str, strip: str = "") -> list[dict] | None:
    """`gen_ai.prompt.0.role`, `gen_ai.prompt.0.content`, ... -> [{"role", "content"}, ...]
    in index order (`strip` removes a further prefix of each field: `message.`)."""
    messages: dict[int, dict] = {}
    for key, value in attributes.items():
        if not key.startswith(prefix):
            continue
        index, _, name = key[len(prefix):].partition(".")
        if not index.isdigit() or not name:
            continue
        if strip and name.startswith(strip):
            name = name[len(strip):]
        messages.setdefault(int(index), {})[name] = value
    if not messages:
        return None
    return [messages[index] for index in sorted(messages)]


def usage_details(attributes: dict) -> dict | None:
    details = json_or_text(attributes.get("langfuse.observation.usage_details"))
    return details if isinstance(details, dict) else None


def _sum_known(details: dict, keys: tuple[str, ...]) -> int | None:
    values = [as_int(details.get(key)) for key in keys if details.get(key) is not None]
    values = [value for value in values if value is not None]
    return sum(values) if values else None


def usage_of(attributes: dict) -> dict | None:
    details = usage_details(attributes) or {}
    cached = _sum_known(details, LANGFUSE_CACHE_READ)
    write = _sum_known(details, LANGFUSE_CACHE_WRITE)
    input_tokens = as_int(details.get("input"))
    if input_tokens is not None:
        # Langfuse's `input` leaves out the cache: ours counts every prompt token.
        input_tokens += (cached or 0) + (write or 0)
    output_tokens = as_int(details.get("output"))
    if output_tokens is not None:
        output_tokens += _sum_known(details, LANGFUSE_REASONING) or 0
    total = as_int(details.get("total"))

    if input_tokens is None:
        input_tokens = as_int(first(attributes, INPUT_TOKEN_KEYS))
    if output_tokens is None:
        output_tokens = as_int(first(attributes, OUTPUT_TOKEN_KEYS))
    if cached is None:
        cached = as_int(first(attributes, CACHED_TOKEN_KEYS))
    if write is None:
        write = as_int(first(attributes, CACHE_WRITE_TOKEN_KEYS))
    if total is None:
        total = as_int(first(attributes, TOTAL_TOKEN_KEYS))
    if input_tokens is None and (cached is not None or write is not None):
        input_tokens = (cached or 0) + (write or 0)  # the cache is part of the prompt
    if total is None and (input_tokens is not None or output_tokens is not None):
        total = (input_tokens or 0) + (output_tokens or 0)  # never a sum of unknown keys
    usage = {name: value for name, value in (
        ("input_tokens", input_tokens), ("output_tokens", output_tokens),
        ("cached_input_tokens", cached), ("cache_write_tokens", write),
        ("total_tokens", total)) if value is not None}
    return usage or None


def cost_of(attributes: dict) -> float | None:
    details = json_or_text(attributes.get("langfuse.observation.cost_details"))
    if isinstance(details, dict):
        total = as_float(details.get("total"))
        if total is None:
            parts = [as_float(details.get(key)) for key in ("input", "output")]
            parts = [part for part in parts if part is not None]
            total = sum(parts) if parts else None
        if total is not None:
            return total
    return as_float(first(attributes, COST_KEYS))


def kind_of(attributes: dict, model: str) -> str:
    for key, table in (("langfuse.observation.type", LANGFUSE_TYPES),
                       ("gen_ai.operation.name", GENAI_OPERATIONS)):
        value = attributes.get(key)
        if isinstance(value, str) and value.lower() in table:
            return table[value.lower()]
    value = attributes.get("openinference.span.kind")
    if isinstance(value, str) and value:
        return OPENINFERENCE_KINDS.get(value.upper(), "other")
    value = attributes.get("traceloop.span.kind")
    if isinstance(value, str) and value.lower() in TRACELOOP_KINDS:
        return TRACELOOP_KINDS[value.lower()]
    return "llm" if model else "other"


def _content_value(attributes: dict, key: str, mime_key: str) -> Any:
    value = attributes.get(key)
    if value is None:
        return None
    mime = attributes.get(mime_key)
    if isinstance(mime, str) and "json" in mime:
        return json_or_text(value)
    return value


def _genai_input(attributes: dict) -> Any:
    messages = json_or_text(attributes.get("gen_ai.input.messages"))
    if messages is None:
        return None
    instructions = json_or_text(attributes.get("gen_ai.system_instructions"))
    if instructions is not None and isinstance(messages, list):
        return [{"role": "system", "parts": instructions}
                if isinstance(instructions, list) else {"role": "system",
                                                        "content": instructions}, *messages]
    return messages


def _event_content(events: list[OtlpEvent]) -> tuple[Any, Any, set[int]]:
    """Input and output from GenAI events (the details event, or the legacy message and
    choice events), and the indexes of the events read."""
    inputs, outputs, used = [], [], set()
    details_in = details_out = None
    for index, event in enumerate(events):
        name = event.name
        if name == DETAILS_EVENT:
            used.add(index)
            details_in = _genai_input(event.attributes)
            details_out = json_or_text(event.attributes.get("gen_ai.output.messages"))
        elif name in LEGACY_MESSAGE_EVENTS:
            used.add(index)
            message = {key: json_or_text(value) for key, value in event.attributes.items()
                       if key != "gen_ai.system"}
            message.setdefault("role", LEGACY_MESSAGE_EVENTS[name])
            inputs.append(message)
        elif name == CHOICE_EVENT:
            used.add(index)
            outputs.append({key: json_or_text(value) for key, value in event.attributes.items()
                            if key != "gen_ai.system"})
    return (details_in if details_in is not None else inputs or None,
            details_out if details_out is not None else outputs or None, used)


def content_of(attributes: dict, events: list[OtlpEvent]) -> tuple[Any, Any, set[int]]:
    """(input, output, indexes of events read as messages), each by the table's order."""
    event_in, event_out, used = _event_content(events) if events else (None, None, set())
    candidates_in = (
        lambda: json_or_text(attributes.get("langfuse.observation.input")),
        lambda: _genai_input(attributes),
        lambda: json_or_text(attributes.get("gen_ai.tool.call.arguments")),
        lambda: event_in,
        lambda: unflatten(attributes, "gen_ai.prompt."),
        # OpenInference: the messages when it recorded them (an LLM span), else input.value.
        lambda: unflatten(attributes, "llm.input_messages.", "message."),
        lambda: _content_value(attributes, "input.value", "input.mime_type"),
        lambda: json_or_text(attributes.get("langfuse.trace.input")),
        lambda: json_or_text(attributes.get("traceloop.entity.input")),
    )
    candidates_out = (
        lambda: json_or_text(attributes.get("langfuse.observation.output")),
        lambda: json_or_text(attributes.get("gen_ai.output.messages")),
        lambda: json_or_text(attributes.get("gen_ai.tool.call.result")),
        lambda: event_out,
        lambda: unflatten(attributes, "gen_ai.completion."),
        lambda: unflatten(attributes, "llm.output_messages.", "message."),
        lambda: _content_value(attributes, "output.value", "output.mime_type"),
        lambda: json_or_text(attributes.get("langfuse.trace.output")),
        lambda: json_or_text(attributes.get("traceloop.entity.output")),
    )
    return _first_of(candidates_in), _first_of(candidates_out), used


def _first_of(candidates) -> Any:
    for candidate in candidates:
        value = candidate()
        if value is not None:
            return value
    return None


def tags_of(attributes: dict) -> list[str]:
    value = json_or_text(first(attributes, TAG_KEYS))
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(tag) for tag in value if tag is not None]
    return []


def _langfuse_metadata_value(value: Any) -> Any:
    # v5 JSON-encodes each value (`"\"v\""`, `"3"`); v3 sends the raw string.
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return scalar(value)


def metadata_of(attributes: dict) -> dict[str, Any]:
    """The client's own metadata, lowest precedence first so higher ones overwrite."""
    metadata: dict[str, Any] = {}
    traceloop = "traceloop.association.properties."
    trace_prefix, observation_prefix = "langfuse.trace.metadata.", "langfuse.observation.metadata."
    langfuse_trace, langfuse_observation = {}, {}
    for key, value in attributes.items():
        if key.startswith(traceloop):
            metadata[key[len(traceloop):]] = scalar(value)
        elif key.startswith(trace_prefix):
            langfuse_trace[key[len(trace_prefix):]] = _langfuse_metadata_value(value)
        elif key.startswith(observation_prefix):
            langfuse_observation[key[len(observation_prefix):]] = _langfuse_metadata_value(value)
    for key in ("metadata", "langfuse.trace.metadata", "langfuse.observation.metadata"):
        whole = json_or_text(attributes.get(key))
        if isinstance(whole, dict):
            metadata.update({name: scalar(value) for name, value in whole.items()})
    metadata.update(langfuse_trace)
    metadata.update(langfuse_observation)
    return metadata


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f" [truncated by llmops: {len(text)} characters]"


def events_json(events: list[OtlpEvent], skip: set[int], limit: int) -> str | None:
    kept = [{"name": event.name, "time": time_of(event.time_ns).isoformat()
             .replace("+00:00", "Z") if event.time_ns else None,
             "attributes": {key: value.hex() if isinstance(value, bytes) else value
                            for key, value in event.attributes.items()}}
            for index, event in enumerate(events) if index not in skip]
    if not kept:
        return None
    text = orjson.dumps(kept, default=str).decode()
    if len(text) > limit:
        text = text[:limit] + f" [truncated by llmops: {len(text)} characters of JSON]"
    return text


def _limits() -> tuple[int, int]:
    from django.conf import settings
    return settings.OTLP_MAX_EVENTS_BYTES, settings.OTLP_MAX_ATTRIBUTE_CHARS


def map_span(span: OtlpSpan, scope: Scope, *, max_events_bytes: int | None = None,
             max_attribute_chars: int | None = None) -> dict:
    """Our span (a dict for accept_spans) from an OTLP span and its resource and scope."""
    if max_events_bytes is None or max_attribute_chars is None:
        max_events_bytes, max_attribute_chars = _limits()
    own = span.attributes
    # A span's attribute beats its resource's; the table's order decides among aliases.
    attributes = {**scope.resource, **own} if scope.resource else own
    model = first(attributes, MODEL_KEYS)
    model = str(model) if model is not None else ""
    kind = kind_of(attributes, model)
    name = span.name
    if kind == "tool" and isinstance(attributes.get("gen_ai.tool.name"), str):
        name = attributes["gen_ai.tool.name"] or name

    status, status_message = "ok", ""
    error_type = attributes.get("error.type")
    if span.status_code == 2:
        status, status_message = "error", span.status_message or str(error_type or "")
    elif error_type:
        status, status_message = "error", str(error_type)
    level = attributes.get("langfuse.observation.level")
    if isinstance(level, str) and level.upper() == "ERROR":
        status = "error"
    langfuse_message = attributes.get("langfuse.observation.status_message")
    if langfuse_message:
        status_message = str(langfuse_message)

    content_in, content_out, used_events = content_of(attributes, span.events)

    metadata = dict(scope.resource_metadata)
    if span.kind:
        metadata[SPAN_KIND_KEY] = OTEL_SPAN_KINDS[span.kind] if 0 <= span.kind < 6 else span.kind
    for key, value in own.items():
        if key in CONSUMED_KEYS or key.startswith(CONSUMED_PREFIXES):
            continue
        value = scalar(value)
        metadata[ATTRIBUTE_PREFIX + key] = (_cut(value, max_attribute_chars)
                                            if isinstance(value, str) else value)
    if span.events:
        events = events_json(span.events, used_events, max_events_bytes)
        if events is not None:
            metadata[EVENTS_KEY] = events
    trace_name = attributes.get("langfuse.trace.name")
    if trace_name:
        metadata[TRACE_NAME_KEY] = str(trace_name)
    metadata.update(metadata_of(attributes))

    ours: dict[str, Any] = {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id or None,
        "name": name,
        "kind": kind,
        "start_time": time_of(span.start_ns),
        "end_time": time_of(span.end_ns) if span.end_ns else None,
        "status": status,
        "status_message": status_message,
        "model": model,
        "metadata": metadata,
    }
    provider = first(attributes, PROVIDER_KEYS)
    if provider is not None:
        ours["provider"] = str(provider)
    if content_in is not None:
        ours["input"] = content_in
    if content_out is not None:
        ours["output"] = content_out
    usage = usage_of(attributes)
    if usage:
        ours["usage"] = usage
    cost = cost_of(attributes)
    if cost is not None:
        ours["cost"] = cost
    for key, keys in (("session_id", SESSION_KEYS), ("user_id", USER_KEYS),
                      ("environment", ENVIRONMENT_KEYS)):
        value = first(attributes, keys)
        if value is not None:
            ours[key] = str(value)
    tags = tags_of(attributes)
    if tags:
        ours["tags"] = tags
    return ours
