"""Turning span messages into ClickHouse rows: the spans table and content stored once."""

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import orjson

from costs.services.pricing import cost_of_span
from costs.services.tokens import has_reported_usage
from ingestion.schema import SpanMessage, StoredSpanMessage


class StoredSpan(msgspec.Struct, frozen=True):
    """A span as stored in the `spans` table, field for column: what the drain inserts and
    hands to the apps listening for stored batches (they read fields by name)."""

    org_id: int
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    status: str
    status_message: str
    start_time: datetime
    end_time: datetime | None
    model: str
    provider: str
    input_hash: str
    output_hash: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    total_tokens: int
    usage_source: str
    cost: Decimal
    cost_source: str
    price_id: int
    session_id: str
    user_id: str
    tags: list[str]
    metadata: dict[str, str]
    environment: str
    received_at: datetime
    version: int

    def row(self) -> tuple:
        return msgspec.structs.astuple(self)


SPAN_COLUMNS = list(StoredSpan.__struct_fields__)
# What the drain inserts into spans: a span (is_deleted 0) or a tombstone (1, see
# ingestion.clickhouse.span_is_deleted).
SPAN_INSERT_COLUMNS = [*SPAN_COLUMNS, "is_deleted"]
KEY_COLUMNS = ["org_id", "trace_id", "span_id", "start_time", "version"]
CONTENT_COLUMNS = ["org_id", "content_hash", "format", "content"]
# cost is a Decimal64(12): an Int64 of 10^-12 dollars, so about $9.2M at most.
MAX_COST = Decimal(2**63 - 1).scaleb(-12)


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


@functools.lru_cache(maxsize=256)  # the spans of a message share their received_at
def from_epoch_us(value: int) -> datetime:
    # Integer arithmetic: a float of epoch seconds can be a microsecond off.
    seconds, micros = divmod(value, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


class UnbuildableSpan(Exception):
    """A message whose span cannot become a row (a cost out of range, say): parked, not
    retried, since no replay will build it either."""


@dataclass
class SpanEntry:
    """One message of a batch: its stored span and the content rows it points to."""

    message: object
    span: StoredSpan
    content: list[list] = field(default_factory=list)
    # The start of the previous version, when it was stored on another day: a tombstone
    # with this span's version goes there.
    moved_from: datetime | None = None

    def span_rows(self) -> list[tuple]:
        rows = [(*self.span.row(), 0)]
        if self.moved_from is not None:
            rows.append(tombstone_row(self.span, self.moved_from))
        return rows

    def key_row(self) -> tuple:
        span = self.span
        return span.org_id, span.trace_id, span.span_id, span.start_time, span.version


_TOMBSTONE_DEFAULTS = {
    name: value for name, value in zip(SPAN_COLUMNS, StoredSpan(
        0, "", "", "", "", "", "", "", datetime(1970, 1, 1, tzinfo=UTC), None, "", "", "",
        "", 0, 0, 0, 0, 0, "", Decimal(0), "", 0, "", "", [], {}, "",
        datetime(1970, 1, 1, tzinfo=UTC), 0).row(), strict=True)}


def tombstone_row(span: StoredSpan, start_time: datetime) -> tuple:
    """A row that supersedes, at `start_time`'s key, every older version of `span`; its
    other fields are empty (readers never show it; the cost rollups count it as a second
    row of that span, so reports read that day from spans)."""
    values = {**_TOMBSTONE_DEFAULTS, "org_id": span.org_id, "trace_id": span.trace_id,
              "span_id": span.span_id, "start_time": start_time,
              "received_at": span.received_at, "version": span.version}
    return (*values.values(), 1)


def content_rows(entries: list[SpanEntry]) -> list[list]:
    """The content rows of these entries, each distinct body once."""
    unique: dict[tuple[int, str], list] = {}
    for entry in entries:
        for row in entry.content:
            unique.setdefault((row[0], row[1]), row)
    return list(unique.values())


class RowBuilder:
    """Accumulates the rows of one batch; each distinct body appears once."""

    def __init__(self) -> None:
        self.entries: list[SpanEntry] = []

    @staticmethod
    def _content_ref(org_id: int, value, content: list[list]) -> str:
        body = content_of(value)
        if body is None:
            return ""
        digest = content_hash(*body)
        content.append([org_id, digest, body[0], body[1]])
        return digest

    def add(self, message: SpanMessage | StoredSpanMessage, source=None) -> SpanEntry:
        """Build the span's rows; raises UnbuildableSpan (nothing added) if they cannot be."""
        try:
            entry = self._build(message, source)
        except Exception as exc:
            raise UnbuildableSpan(f"{type(exc).__name__}: {exc}") from exc
        self.entries.append(entry)
        return entry

    def _build(self, message: SpanMessage | StoredSpanMessage, source) -> SpanEntry:
        span, org_id = message.span, message.org_id
        content: list[list] = []
        # Cost at drain time: from the price in force at the span's start (costs app).
        cost = cost_of_span(for_costing(span))
        if abs(cost.cost) > MAX_COST:
            raise ValueError(f"cost {cost.cost} is outside the stored range (+-{MAX_COST})")
        usage = cost.usage
        stored = StoredSpan(
            org_id, span.trace_id, span.span_id, span.parent_span_id or "", span.name,
            span.kind, span.status, span.status_message,
            span.start_time.astimezone(UTC), span.end_time and span.end_time.astimezone(UTC),
            span.model, span.provider,
            self._content_ref(org_id, span.input, content),
            self._content_ref(org_id, span.output, content),
            usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
            usage.cache_write_tokens, usage.total_tokens, usage.source,
            cost.cost, cost.source, cost.price_id, span.session_id, span.user_id, span.tags,
            {key: metadata_text(value) for key, value in span.metadata.items()},
            span.environment,
            from_epoch_us(message.received_at_us),
            message.received_at_us,
        )
        return SpanEntry(source, stored, content)

    @property
    def spans(self) -> list[StoredSpan]:
        return [entry.span for entry in self.entries]

    @property
    def messages(self) -> list:
        return [entry.message for entry in self.entries]

    @property
    def span_rows(self) -> list[tuple]:
        return [entry.span.row() for entry in self.entries]

    @property
    def content_rows(self) -> list[list]:
        return content_rows(self.entries)
