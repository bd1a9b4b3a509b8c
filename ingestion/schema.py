"""The span as clients send it and as it travels on Kafka (msgspec: fast, exact errors)."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
OptionalId = Annotated[str, msgspec.Meta(max_length=128)]
Tokens = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Scalar = str | int | float | bool | None

SpanKind = Literal["llm", "chain", "tool", "retrieval", "embedding", "agent", "other"]
SpanStatus = Literal["ok", "error"]

# Times outside these years are a client bug (a unit mix-up, a zero date), not a span.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC)

# Message format on Kafka; bump when a field's meaning changes, and keep decoding the old.
# 1: one span a message, [1, org_id, received_at_us, span]. 2: the spans of one key (org and
# trace) in one request, [2, org_id, received_at_us, count, [span, ...]]: ~10-100x fewer
# messages for the producer, the broker and the drain to handle. The drain reads both.
MESSAGE_VERSION = 2
SINGLE_SPAN_VERSION = 1


class Usage(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True):
    """OpenAI's convention: input_tokens counts every prompt token, the cached ones read
    (cached_input_tokens) and written (cache_write_tokens) included."""

    input_tokens: Tokens | None = None
    output_tokens: Tokens | None = None
    cached_input_tokens: Tokens | None = None
    cache_write_tokens: Tokens | None = None
    total_tokens: Tokens | None = None


class SpanIn(msgspec.Struct, omit_defaults=True):
    trace_id: Id
    span_id: Id
    name: Annotated[str, msgspec.Meta(max_length=1024)]
    start_time: datetime
    parent_span_id: OptionalId | None = None
    kind: SpanKind = "other"
    end_time: datetime | None = None
    status: SpanStatus = "ok"
    status_message: str = ""
    model: Annotated[str, msgspec.Meta(max_length=256)] = ""
    provider: Annotated[str, msgspec.Meta(max_length=128)] = ""
    input: Any = None
    output: Any = None
    usage: Usage | None = None
    cost: Annotated[float, msgspec.Meta(ge=0)] | None = None
    session_id: OptionalId = ""
    user_id: Annotated[str, msgspec.Meta(max_length=256)] = ""
    tags: list[Annotated[str, msgspec.Meta(max_length=256)]] = []
    metadata: dict[str, Scalar] = {}
    environment: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = "default"


KNOWN_FIELDS = frozenset(SpanIn.__struct_fields__)


class SpanMessage(msgspec.Struct, array_like=True):
    """One accepted span: who sent it, when, and the span itself (SINGLE_SPAN_VERSION on
    the spans topic, as producers before MESSAGE_VERSION 2 wrote it)."""

    v: int
    org_id: int
    received_at_us: int
    span: SpanIn


class SpansMessage(msgspec.Struct, array_like=True):
    """The accepted spans of one key (org and trace) of one request (MESSAGE_VERSION 2).
    `count` comes first so the drain can size its batches without parsing the spans."""

    v: int
    org_id: int
    received_at_us: int
    count: int
    spans: list[SpanIn]


class StoredSpan(SpanIn):
    """The span as the drain reads it: its content stays the raw JSON it travelled as, so
    bodies are neither parsed nor serialised again on their way into ClickHouse."""

    input: msgspec.Raw = msgspec.Raw()
    output: msgspec.Raw = msgspec.Raw()


class StoredSpanMessage(msgspec.Struct, array_like=True):
    """SpanMessage, read by the drain (same wire format)."""

    v: int
    org_id: int
    received_at_us: int
    span: StoredSpan


class StoredSpansMessage(msgspec.Struct, array_like=True):
    """SpansMessage, read by the drain (same wire format)."""

    v: int
    org_id: int
    received_at_us: int
    count: int
    spans: list[StoredSpan]


_ERROR_PATH = re.compile(r"^(?P<message>.*?) - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>\w+)`")


def field_error(error: msgspec.ValidationError) -> dict[str, str]:
    """msgspec's message as {field: message}, the field dotted (`usage.input_tokens`)."""
    text = str(error)
    missing = _MISSING.match(text)
    if missing:
        return {missing.group("field"): "this field is required"}
    match = _ERROR_PATH.match(text)
    if match and match.group("path"):
        path = re.sub(r"\[[^\]]*\]", "", match.group("path"))
        return {path: match.group("message")}
    return {"span": text}


@dataclass(frozen=True, slots=True)
class SpanLimits:
    """What a span may hold beyond its types, fixed once per request (the time window moves
    with the clock): past these a span would be lost after its 202 (deleted by the TTL, or
    failing its insert)."""

    earliest: datetime  # the retention: ClickHouse's TTL deletes older spans at once
    latest: datetime
    window: str  # says which window, in the rejection
    max_tokens: int
    max_cost: float
    # Highest price of any row (1e-6 USD per million tokens) on the input side (input, cached
    # read, cache write) and on the output: what a span's tokens can cost at most, in 1e-12 USD.
    input_price: int = 0
    output_price: int = 0
    max_cost_e12: int = 0


USAGE_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
                "total_tokens")


def _limit_errors(span: SpanIn, limits: SpanLimits) -> dict[str, str]:
    # Per span on the accept path: the common case is a few comparisons, no loop.
    errors = {}
    if not limits.earliest <= span.start_time <= limits.latest:
        errors["start_time"] = f"start_time must be between {limits.window}"
    end = span.end_time
    if end is not None and not limits.earliest <= end <= limits.latest:
        errors["end_time"] = f"end_time must be between {limits.window}"
    # `not <=` also refuses NaN; JSON has no infinity, but a huge literal parses as one.
    if span.cost is not None and not span.cost <= limits.max_cost:
        errors["cost"] = (f"cost must be a finite number of USD at most {limits.max_cost:g} "
                          "(INGEST_MAX_COST_USD)")
    usage = span.usage
    if usage is None:
        return errors
    input_tokens, output_tokens = usage.input_tokens or 0, usage.output_tokens or 0
    if max(input_tokens, output_tokens, usage.cached_input_tokens or 0,
           usage.cache_write_tokens or 0, usage.total_tokens or 0) > limits.max_tokens:
        for name in USAGE_FIELDS:
            if (getattr(usage, name) or 0) > limits.max_tokens:
                errors[f"usage.{name}"] = (f"{name} must be at most {limits.max_tokens} "
                                           "(INGEST_MAX_TOKENS)")
    elif span.cost is None and (input_tokens * limits.input_price
                                + output_tokens * limits.output_price > limits.max_cost_e12):
        errors["usage"] = (f"these tokens could cost over {limits.max_cost:g} USD "
                           "(INGEST_MAX_COST_USD) at the highest price in the price table; "
                           "send fewer tokens or the span's `cost`")
    return errors


def validate_span(raw: Any, limits: SpanLimits | None = None,
                  ) -> tuple[SpanIn | None, dict[str, str], list[str]]:
    """(span, errors, unknown field names) for one element of the request's `spans` list.
    Without `limits`, only the span's shape is checked (what the drain can decode)."""
    if not isinstance(raw, dict):
        return None, {"span": "expected a JSON object"}, []
    try:
        span = msgspec.convert(raw, SpanIn)
    except msgspec.ValidationError as exc:
        return None, field_error(exc), []
    errors = {}
    # RFC 3339 times carry an offset; a bare one is read as UTC rather than refused.
    if span.start_time.tzinfo is None:
        span.start_time = span.start_time.replace(tzinfo=UTC)
    if span.end_time is not None:
        if span.end_time.tzinfo is None:
            span.end_time = span.end_time.replace(tzinfo=UTC)
        if span.end_time < span.start_time:
            errors["end_time"] = "end_time is before start_time"
    if limits is not None:
        errors.update(_limit_errors(span, limits))
    else:
        for name in ("start_time", "end_time"):
            value = getattr(span, name)
            if value is not None and not EARLIEST <= value <= LATEST:
                errors[name] = f"{name} must be between {EARLIEST:%Y} and {LATEST:%Y}"
    usage = span.usage
    if usage is not None and (usage.cached_input_tokens or 0) + (usage.cache_write_tokens or 0) > (
            usage.input_tokens or 0):
        errors["usage.cached_input_tokens"] = (
            "cached_input_tokens and cache_write_tokens are part of input_tokens, so together "
            "they cannot exceed it")
    unknown = [name for name in raw if name not in KNOWN_FIELDS]
    return (None if errors else span), errors, unknown
