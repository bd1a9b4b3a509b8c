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
# Langfuse names traces apart from their root span; kept for the trace-level reads, under
# the metadata key they read (ingestion.query.selectors.TRACE_NAME_KEY).
TRACE_NAME_KEY = "trace.name"

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
    except (ValueError, OverflowError):  # not a number, or infinity
        return None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# Every simple alias: key -> (our field, rank); the lowest rank present wins. Content has
# sources that are not one attribute (events, flattened messages): they hold the missing
# ranks and are only looked at when no better-ranked attribute is there.
CONTENT_IN = {"langfuse.observation.input": 0, "gen_ai.input.messages": 1,
              "gen_ai.tool.call.arguments": 2,  # 3: events, 4: gen_ai.prompt.N.*
              # 5: llm.input_messages.N.* (OpenInference's messages before its input.value)
              "input.value": 6, "langfuse.trace.input": 7, "traceloop.entity.input": 8}
CONTENT_OUT = {"langfuse.observation.output": 0, "gen_ai.output.messages": 1,
               "gen_ai.tool.call.result": 2, "output.value": 6, "langfuse.trace.output": 7,
               "traceloop.entity.output": 8}
ALIASES: dict[str, tuple[str, int]] = {
    key: (name, rank)
    for name, keys in (("model", MODEL_KEYS), ("provider", PROVIDER_KEYS),
                       ("session_id", SESSION_KEYS), ("user_id", USER_KEYS),
                       ("tags", TAG_KEYS), ("environment", ENVIRONMENT_KEYS),
                       ("cost", COST_KEYS), ("input_tokens", INPUT_TOKEN_KEYS),
                       ("output_tokens", OUTPUT_TOKEN_KEYS),
                       ("cached_input_tokens", CACHED_TOKEN_KEYS),
                       ("cache_write_tokens", CACHE_WRITE_TOKEN_KEYS),
                       ("total_tokens", TOTAL_TOKEN_KEYS))
    for rank, key in enumerate(keys)
}
ALIASES.update({key: ("input", rank) for key, rank in CONTENT_IN.items()})
ALIASES.update({key: ("output", rank) for key, rank in CONTENT_OUT.items()})
ALIAS_KEYS = frozenset(ALIASES)
NOTHING = (99, None, "")


def pick_aliases(attributes: dict) -> dict[str, tuple[int, Any, str]]:
    """{field: (rank, value, key)} of the best-ranked alias present for each field: one pass
    over the aliases the span has, not a look-up of every alias of every field."""
    picked: dict[str, tuple[int, Any, str]] = {}
    for key in ALIAS_KEYS.intersection(attributes):
        value = attributes[key]
        if value is None or value == "":
            continue
        name, rank = ALIASES[key]
        held = picked.get(name)
        if held is None or rank < held[0]:
            picked[name] = (rank, value, key)
    return picked


def time_of(nanos: int) -> datetime:
    # Integer arithmetic: a float of epoch seconds can be a microsecond off.
    return EPOCH + timedelta(0, 0, nanos // 1000)  # positional: a third faster per span


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


def _sum_known(details: dict, keys: tuple[str, ...]) -> int | None:
    values = [as_int(details.get(key)) for key in keys if details.get(key) is not None]
    values = [value for value in values if value is not None]
    return sum(values) if values else None


def _picked_int(picked: dict, name: str) -> int | None:
    held = picked.get(name)
    return as_int(held[1]) if held else None


def usage_of(attributes: dict, picked: dict) -> dict | None:
    """Langfuse's usage_details first (its `input` leaves out the cache and its `output` the
    reasoning tokens: added back), then the GenAI and OpenInference counts; a total only from
    a total sent or input + output, never a sum of keys we do not know."""
    details = json_or_text(attributes.get("langfuse.observation.usage_details"))
    input_tokens = output_tokens = cached = write = total = None
    if isinstance(details, dict):
        cached = _sum_known(details, LANGFUSE_CACHE_READ)
        write = _sum_known(details, LANGFUSE_CACHE_WRITE)
        input_tokens = as_int(details.get("input"))
        if input_tokens is not None:
            input_tokens += (cached or 0) + (write or 0)
        output_tokens = as_int(details.get("output"))
        if output_tokens is not None:
            output_tokens += _sum_known(details, LANGFUSE_REASONING) or 0
        total = as_int(details.get("total"))
    if input_tokens is None:
        input_tokens = _picked_int(picked, "input_tokens")
    if output_tokens is None:
        output_tokens = _picked_int(picked, "output_tokens")
    if cached is None:
        cached = _picked_int(picked, "cached_input_tokens")
    if write is None:
        write = _picked_int(picked, "cache_write_tokens")
    if total is None:
        total = _picked_int(picked, "total_tokens")
    if input_tokens is None and (cached is not None or write is not None):
        input_tokens = (cached or 0) + (write or 0)  # the cache is part of the prompt
    if total is None and (input_tokens is not None or output_tokens is not None):
        total = (input_tokens or 0) + (output_tokens or 0)
    usage = {name: value for name, value in (
        ("input_tokens", input_tokens), ("output_tokens", output_tokens),
        ("cached_input_tokens", cached), ("cache_write_tokens", write),
        ("total_tokens", total)) if value is not None}
    return usage or None


def cost_of(attributes: dict, picked: dict) -> float | None:
    details = json_or_text(attributes.get("langfuse.observation.cost_details"))
    if isinstance(details, dict):
        total = as_float(details.get("total"))
        if total is None:
            parts = [as_float(details.get(key)) for key in ("input", "output")]
            parts = [part for part in parts if part is not None]
            total = sum(parts) if parts else None
        if total is not None:
            return total
    held = picked.get("cost")
    return as_float(held[1]) if held else None


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


def _attribute_content(attributes: dict, key: str, value: Any) -> Any:
    if key == "gen_ai.input.messages":
        return _genai_input(attributes)
    if key in ("input.value", "output.value"):
        mime = attributes.get(key[:-len("value")] + "mime_type")
        # OpenInference says when its value is JSON; anything else stays text.
        return json_or_text(value) if isinstance(mime, str) and "json" in mime else value
    return json_or_text(value)


def _content(attributes: dict, held: tuple, from_events: Any, flat: tuple[str, str, str],
             has_flat: tuple[bool, bool]) -> Any:
    """The best-ranked content: an attribute alias, else (by rank) events, the flattened GenAI
    messages, OpenInference's messages."""
    rank, value, key = held
    value = _attribute_content(attributes, key, value) if key else None
    if rank > 3 and from_events is not None:
        return from_events
    if rank > 4 and has_flat[0]:
        messages = unflatten(attributes, flat[0])
        if messages is not None:
            return messages
    if rank > 5 and has_flat[1]:
        messages = unflatten(attributes, flat[1], flat[2])
        if messages is not None:
            return messages
    return value


def tags_of(value: Any) -> list[str]:
    value = json_or_text(value)
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


TRACELOOP_PROPERTIES = "traceloop.association.properties."
LANGFUSE_TRACE_METADATA = "langfuse.trace.metadata."
LANGFUSE_OBSERVATION_METADATA = "langfuse.observation.metadata."
# Langfuse attributes no field holds, kept in metadata under these names.
LANGFUSE_KEPT = {"langfuse.observation.completion_start_time": "completion_start_time",
                 "langfuse.observation.prompt.name": "prompt_name",
                 "langfuse.observation.prompt.version": "prompt_version",
                 "langfuse.version": "version", "langfuse.release": "release"}
LANGFUSE_MODEL_PARAMETERS = "langfuse.observation.model.parameters"
WHOLE_METADATA_KEYS = ("metadata", "langfuse.trace.metadata", "langfuse.observation.metadata")


def model_parameters(value: Any, metadata: dict) -> None:
    """Langfuse's model parameters (v5 sends them as JSON text) as the legacy door keeps
    `modelParameters` (ingestion.langfuse.mapping): one `model_parameters.<name>` per
    parameter, or `model_parameters` whole when they are not an object."""
    parameters = json_or_text(value)
    if isinstance(parameters, dict):
        metadata.update({f"model_parameters.{name}": scalar(parameter)
                         for name, parameter in parameters.items()})
    elif parameters is not None:
        metadata["model_parameters"] = scalar(value)


def _own_attributes(own: dict, metadata: dict, max_chars: int) -> tuple[dict, dict, dict, set]:
    """One pass over the span's own attributes: the ones no field reads go into `metadata` as
    `attributes.<key>`; returns the client's metadata by source (Traceloop, Langfuse trace,
    Langfuse observation) and which flattened-message prefixes are present."""
    traceloop: dict = {}
    langfuse_trace: dict = {}
    langfuse_observation: dict = {}
    flat: set[str] = set()
    for key, value in own.items():
        if key in CONSUMED_KEYS:
            continue
        if key.startswith(CONSUMED_PREFIXES):
            if key.startswith(TRACELOOP_PROPERTIES):
                traceloop[key[len(TRACELOOP_PROPERTIES):]] = scalar(value)
            elif key.startswith(LANGFUSE_TRACE_METADATA):
                langfuse_trace[key[len(LANGFUSE_TRACE_METADATA):]] = \
                    _langfuse_metadata_value(value)
            elif key.startswith(LANGFUSE_OBSERVATION_METADATA):
                langfuse_observation[key[len(LANGFUSE_OBSERVATION_METADATA):]] = \
                    _langfuse_metadata_value(value)
            elif key in LANGFUSE_KEPT:
                metadata[LANGFUSE_KEPT[key]] = scalar(value)
            elif key == LANGFUSE_MODEL_PARAMETERS:
                model_parameters(value, metadata)
            elif key.startswith(("gen_ai.prompt.", "gen_ai.completion.",
                                 "llm.input_messages.", "llm.output_messages.")):
                flat.add(key[:key.index(".", key.index(".") + 1) + 1])
            continue
        value = scalar(value)
        metadata[ATTRIBUTE_PREFIX + key] = (_cut(value, max_chars) if isinstance(value, str)
                                            else value)
    return traceloop, langfuse_trace, langfuse_observation, flat


def map_span(span: OtlpSpan, scope: Scope, *, max_events_bytes: int | None = None,
             max_attribute_chars: int | None = None) -> dict:
    """Our span (a dict for accept_spans) from an OTLP span and its resource and scope."""
    if max_events_bytes is None or max_attribute_chars is None:
        max_events_bytes, max_attribute_chars = _limits()
    own = span.attributes
    # A span's attribute beats its resource's; the table's order decides among aliases.
    attributes = {**scope.resource, **own} if scope.resource else own
    picked = pick_aliases(attributes)
    model = picked.get("model", NOTHING)[1]
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

    metadata = dict(scope.resource_metadata)
    if span.kind:
        metadata[SPAN_KIND_KEY] = OTEL_SPAN_KINDS[span.kind] if 0 <= span.kind < 6 else span.kind
    traceloop, langfuse_trace, langfuse_observation, flat = _own_attributes(
        own, metadata, max_attribute_chars)

    event_in = event_out = None
    if span.events:
        event_in, event_out, used_events = _event_content(span.events)
        events = events_json(span.events, used_events, max_events_bytes)
        if events is not None:
            metadata[EVENTS_KEY] = events
    content_in = _content(attributes, picked.get("input", NOTHING), event_in,
                          ("gen_ai.prompt.", "llm.input_messages.", "message."),
                          ("gen_ai.prompt." in flat, "llm.input_messages." in flat))
    content_out = _content(attributes, picked.get("output", NOTHING), event_out,
                           ("gen_ai.completion.", "llm.output_messages.", "message."),
                           ("gen_ai.completion." in flat, "llm.output_messages." in flat))

    trace_name = attributes.get("langfuse.trace.name")
    if trace_name:
        metadata[TRACE_NAME_KEY] = str(trace_name)
    # The client's own metadata, lowest precedence first so higher ones overwrite.
    metadata.update(traceloop)
    for key in WHOLE_METADATA_KEYS:
        whole = attributes.get(key)
        if whole is not None:
            whole = json_or_text(whole)
            if isinstance(whole, dict):
                metadata.update({name: scalar(value) for name, value in whole.items()})
    metadata.update(langfuse_trace)
    metadata.update(langfuse_observation)

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
    for key in ("provider", "session_id", "user_id", "environment"):
        held = picked.get(key)
        if held is not None:
            ours[key] = str(held[1])
    if content_in is not None:
        ours["input"] = content_in
    if content_out is not None:
        ours["output"] = content_out
    usage = usage_of(attributes, picked)
    if usage:
        ours["usage"] = usage
    cost = cost_of(attributes, picked)
    if cost is not None:
        ours["cost"] = cost
    if "tags" in picked:
        tags = tags_of(picked["tags"][1])
        if tags:
            ours["tags"] = tags
    return ours
