"""Turning span messages into ClickHouse rows: the spans table and content stored once."""

import hashlib
from datetime import UTC, datetime

import msgspec
import orjson

from costs.services.pricing import cost_of_span
from costs.services.tokens import has_reported_usage
from ingestion.schema import SpanMessage, StoredSpanMessage

SPAN_COLUMNS = [
    "org_id", "trace_id", "span_id", "parent_span_id", "name", "kind", "status",
    "status_message", "start_time", "end_time", "model", "provider", "input_hash",
    "output_hash", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
    "total_tokens", "usage_source", "cost", "cost_source", "price_id", "session_id", "user_id",
    "tags", "metadata", "environment", "received_at", "version",
]
CONTENT_COLUMNS = ["org_id", "content_hash", "format", "content"]


def content_of(value) -> tuple[str, str] | None:
    """(format, text): strings stay text, anything else is kept as its JSON (raw JSON from
    the wire as it is, compact as msgspec wrote it)."""
    if isinstance(value, msgspec.Raw):
        if not value:
            return None
        raw = bytes(value)
        return ("text", msgspec.json.decode(raw)) if raw[:1] == b'"' else ("json", raw.decode())
    if value is None:
        return None
    if isinstance(value, str):
        return "text", value
    return "json", orjson.dumps(value).decode()


def _value(raw: msgspec.Raw):
    return msgspec.json.decode(raw) if raw else None


def for_costing(span):
    """The span as the costs app reads it: raw content is parsed only when the tokens must
    be counted from it (no usage reported), which is rare."""
    if not isinstance(span.input, msgspec.Raw) or has_reported_usage(span.usage):
        return span
    return msgspec.structs.replace(span, input=_value(span.input), output=_value(span.output))


def content_hash(fmt: str, text: str) -> str:
    return hashlib.blake2b(f"{fmt}\0{text}".encode(), digest_size=16).hexdigest()


def metadata_text(value) -> str:
    # ClickHouse maps hold one value type: strings stay as sent, other scalars as JSON.
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def from_epoch_us(value: int) -> datetime:
    # Integer arithmetic: a float of epoch seconds can be a microsecond off.
    seconds, micros = divmod(value, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


class RowBuilder:
    """Accumulates the rows of one batch; each distinct body appears once."""

    def __init__(self) -> None:
        self.spans: list[list] = []
        self.messages: list = []  # the Kafka message behind each span row
        self.content: dict[tuple[int, str], list] = {}
        self.org_ids: set[int] = set()

    def _content_ref(self, org_id: int, value) -> str:
        body = content_of(value)
        if body is None:
            return ""
        digest = content_hash(*body)
        self.content.setdefault((org_id, digest), [org_id, digest, body[0], body[1]])
        return digest

    def add(self, message: SpanMessage | StoredSpanMessage, source=None) -> None:
        span, org_id = message.span, message.org_id
        self.messages.append(source)
        self.org_ids.add(org_id)
        # Cost at drain time: from the price in force at the span's start (costs app).
        cost = cost_of_span(for_costing(span))
        usage = cost.usage
        self.spans.append([
            org_id, span.trace_id, span.span_id, span.parent_span_id or "", span.name,
            span.kind, span.status, span.status_message,
            span.start_time.astimezone(UTC), span.end_time and span.end_time.astimezone(UTC),
            span.model, span.provider,
            self._content_ref(org_id, span.input), self._content_ref(org_id, span.output),
            usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
            usage.cache_write_tokens, usage.total_tokens, usage.source,
            cost.cost, cost.source, cost.price_id, span.session_id, span.user_id, span.tags,
            {key: metadata_text(value) for key, value in span.metadata.items()},
            span.environment,
            from_epoch_us(message.received_at_us),
            message.received_at_us,
        ])

    @property
    def content_rows(self) -> list[list]:
        return list(self.content.values())
