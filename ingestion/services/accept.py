"""Accepting a batch of spans: degradation gate, rate limit, validation, sampling, publish."""

import logging
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
from django.conf import settings
from django.db import DatabaseError

from costs.services.pricing import cached_prices, price_table
from costs.services.tokens import ESTIMATED_USAGE_KEY, has_reported_usage, usage_of_span
from ingestion.schema import (
    MESSAGE_VERSION,
    SpanIn,
    SpanLimits,
    SpansMessage,
    Usage,
    validate_span,
)
from ingestion.services.publish import publish
from ingestion.services.tenancy import OrgContext
from llmops import changes, metrics
from llmops.redis import get_redis
from operations.models import DegradationLevel, TtlChange
from operations.services.degradation import current_level
from operations.services.flags import flag_for
from operations.services.retention import RETENTION_TOPIC

logger = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
# librdkafka counts a message's record framing against `message.max.bytes` too (seen here:
# key + value up to the limit less ~40 bytes pass).
MESSAGE_FRAMING_BYTES = 64
# Where a truncated input or output records its size (bytes of its JSON) before truncation.
ORIGINAL_BYTES_KEY = "llmops.{name}.original_bytes"


class IngestionPaused(Exception):
    """Degradation level 4: the platform is read-only."""


class RateLimited(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"ingestion rate limit exceeded; retry after {retry_after}s")
        self.retry_after = retry_after


@dataclass
class AcceptResult:
    accepted: int = 0
    sampled_out: int = 0
    rejected: list[dict] = field(default_factory=list)
    # Accepted with content cut to INGEST_MAX_CONTENT_BYTES: {index, span_id, fields}.
    truncated: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def is_sampled(trace_id: str, rate: float) -> bool:
    """Deterministic on the trace id, so a trace is kept or dropped whole, in every process."""
    if rate >= 1.0:
        return True
    return zlib.crc32(trace_id.encode()) / 0x1_0000_0000 < rate


def reserve_quota(org: OrgContext, count: int) -> str:
    """Count `count` spans against the org's window; over the limit nothing is counted.
    Returns the window's key, to release the reservation if the request fails."""
    window = settings.RATE_LIMIT_WINDOW_S
    key = f"ratelimit:ingest:{org.org_id}:{int(time.time()) // window}"
    pipe = get_redis().pipeline()
    pipe.incrby(key, count)
    pipe.expire(key, window + 1, nx=True)
    pipe.ttl(key)
    used, _, ttl = pipe.execute()
    if used > org.rate_limit:
        get_redis().decrby(key, count)
        raise RateLimited(retry_after=max(1, int(ttl)))
    return key


def release_quota(key: str, count: int) -> None:
    """Give back a reservation: the request that made it stored nothing."""
    pipe = get_redis().pipeline()
    pipe.decrby(key, count)
    # Had the window's key expired meanwhile, DECRBY made a new one: it must expire too.
    pipe.expire(key, settings.RATE_LIMIT_WINDOW_S + 1, nx=True)
    pipe.execute()


def _read_retention() -> int:
    days = settings.CLICKHOUSE_SPANS_TTL_DAYS
    emergency = TtlChange.objects.filter(table="spans").values_list("days", flat=True).first()
    return min(days, emergency or days)


cached_retention = changes.AnnouncedCache(RETENTION_TOPIC, _read_retention,
                                          ttl_setting="INGEST_RETENTION_CACHE_TTL_S")


def retention_days() -> int:
    """How long stored spans live: CLICKHOUSE_SPANS_TTL_DAYS, or an emergency TTL in force
    if shorter (operations.TtlChange), read at most every INGEST_RETENTION_CACHE_TTL_S."""
    try:
        return cached_retention.get()
    except DatabaseError:
        # PostgreSQL away: ingestion goes on (keys are cached too) with what was last read.
        logger.warning("emergency TTL unreadable; keeping the last one read", exc_info=True)
        last = cached_retention.last()
        return settings.CLICKHOUSE_SPANS_TTL_DAYS if last is None else last


def forget_cached_retention() -> None:
    cached_retention.forget()


def highest_prices() -> tuple[int, int]:
    """The price table's highest input-side and output prices; the last known ones while
    PostgreSQL is away."""
    try:
        return price_table().highest
    except DatabaseError:
        logger.warning("prices unreadable; keeping the last ones read", exc_info=True)
        table = cached_prices.last()
        return (0, 0) if table is None else table.highest


def span_limits(now: datetime | None = None) -> SpanLimits:
    """The limits a span of a request received `now` must keep to."""
    now = now or datetime.now(UTC)
    days = retention_days()
    earliest = now - timedelta(days=days)
    latest = now + timedelta(seconds=settings.INGEST_MAX_FUTURE_S)
    window = (f"{earliest:%Y-%m-%dT%H:%M:%SZ} and {latest:%Y-%m-%dT%H:%M:%SZ}: spans are kept "
              f"{days} days (CLICKHOUSE_SPANS_TTL_DAYS, or an emergency TTL) and may start at "
              f"most {settings.INGEST_MAX_FUTURE_S} s ahead (INGEST_MAX_FUTURE_S)")
    input_price, output_price = highest_prices()
    max_cost = float(settings.INGEST_MAX_COST_USD)
    return SpanLimits(earliest=earliest, latest=latest, window=window,
                      max_tokens=settings.INGEST_MAX_TOKENS, max_cost=max_cost,
                      input_price=input_price, output_price=output_price,
                      max_cost_e12=int(max_cost * 10**12))


def truncated(content, size: int, limit: int) -> str:
    """Content whose JSON is `size` bytes, as a string whose JSON fits in `limit` bytes: the
    start of its text (a string's own text, else its JSON), then a marker that says so."""
    marker = f" [truncated by llmops: {size} bytes of JSON, over the limit of {limit}]"
    text = (content if isinstance(content, str) else _encode(content).decode()).encode()
    budget = cut = limit - len(marker) - 2  # 2: the quotes around a JSON string
    while True:
        value = text[:max(cut, 0)].decode(errors="ignore") + marker
        encoded = len(_encode(value))
        if encoded <= limit or cut <= 0:
            return value
        # Escapes (quotes, control characters) made it longer than its UTF-8: cut more.
        cut = cut * budget // encoded - 1


def fit_message(span: SpanIn, encode_message, encoded: bytes, key: bytes,
                ) -> tuple[bytes | None, dict[str, str]]:
    """The span's message with oversized content truncated, or the error that it is still
    too large for Kafka. Only called for messages over a limit: the common path measures the
    encoded message once and never looks at the content."""
    limit = settings.INGEST_MAX_CONTENT_BYTES
    for name in ("input", "output"):
        content = getattr(span, name)
        if content is None:
            continue
        size = len(_encode(content))
        if size > limit:
            setattr(span, name, truncated(content, size, limit))
            span.metadata = {**span.metadata, ORIGINAL_BYTES_KEY.format(name=name): size}
            encoded = encode_message(span)
    kafka_limit = settings.KAFKA_MESSAGE_MAX_BYTES - MESSAGE_FRAMING_BYTES
    if len(key) + len(encoded) > kafka_limit:
        return None, {"span": (
            f"span is {len(encoded)} bytes encoded (content over {limit} bytes truncated), "
            f"over the {kafka_limit} bytes a message may hold (KAFKA_MESSAGE_MAX_BYTES less "
            f"framing): shorten its metadata, tags or other fields")}
    return encoded, {}


def sample_rate_for(org: OrgContext, level: DegradationLevel) -> float:
    """The org's rate (or the operator's `sample-rate` flag for it), capped at level 2+."""
    override = flag_for("sample-rate", org.org_id)
    rate = org.sample_rate if override is None else min(max(float(override), 0.0), 1.0)
    if level >= DegradationLevel.REDUCED_SAMPLING:
        return min(rate, settings.INGEST_DEGRADED_SAMPLE_RATE)
    return rate


def drop_content(span: SpanIn) -> None:
    """Drop the span's input and output. A span with a model and content but no usage is
    priced by tokens counted from that content: count them now, before they are gone, so the
    drain prices the span as it would have (never a silent $0 'computed')."""
    if not has_reported_usage(span.usage):
        usage = usage_of_span(span)
        if usage.source == "estimated":
            span.usage = Usage(input_tokens=usage.input_tokens,
                               output_tokens=usage.output_tokens,
                               total_tokens=usage.total_tokens)
            span.metadata = {**span.metadata, ESTIMATED_USAGE_KEY: True}
    span.input = span.output = None


def accept_spans(*, org: OrgContext, spans: list) -> AcceptResult:
    """Validate, sample and publish; returns once Kafka has acknowledged what was accepted."""
    level = current_level()
    if level >= DegradationLevel.READ_ONLY:
        raise IngestionPaused("ingestion is paused: the platform is read-only (level 4)")
    quota_key = reserve_quota(org, len(spans))
    try:
        return _accept(org=org, spans=spans, level=level)
    except BaseException:
        release_quota(quota_key, len(spans))  # nothing was stored: nothing is charged
        raise


def _reject(result: AcceptResult, index: int, raw, errors: dict[str, str]) -> None:
    span_id = raw.get("span_id") if isinstance(raw, dict) else None
    if not isinstance(span_id, str):
        span_id = None  # echo an id, never whatever the client sent in its place
    result.rejected.append({"index": index, "span_id": span_id, "errors": errors})


def encode_message_head(org_id: int, received_at_us: int, count: int) -> bytes:
    """What precedes the spans in a SpansMessage (as msgspec writes it); `]]` follows them."""
    return b"[%d,%d,%d,%d,[" % (MESSAGE_VERSION, org_id, received_at_us, count)


def spans_messages(org_id: int, received_at_us: int, by_key: dict[bytes, list[bytes]],
                   ) -> list[tuple[bytes, bytes]]:
    """(key, SpansMessage) pairs: each key's spans (their JSON) in as few messages as fit
    in KAFKA_MESSAGE_MAX_BYTES, in the order they came."""
    limit = settings.KAFKA_MESSAGE_MAX_BYTES - MESSAGE_FRAMING_BYTES
    messages = []

    def add(key: bytes, chunk: list[bytes]) -> None:
        head = encode_message_head(org_id, received_at_us, len(chunk))
        messages.append((key, head + b",".join(chunk) + b"]]"))

    for key, spans in by_key.items():
        # The head's count may grow by a digit or two; 24 bytes leave room for it.
        size, chunk = len(key) + len(encode_message_head(org_id, received_at_us, 1)) + 24, []
        for span in spans:
            if chunk and size + len(span) + 1 > limit:
                add(key, chunk)
                size, chunk = size - sum(len(s) + 1 for s in chunk), []
            chunk.append(span)
            size += len(span) + 1
        add(key, chunk)
    return messages


def _accept(*, org: OrgContext, spans: list, level: DegradationLevel) -> AcceptResult:
    rate = sample_rate_for(org, level)
    without_content = (level >= DegradationLevel.ESSENTIAL_ONLY
                       or not flag_for("content-storage-enabled", org.org_id))
    received_at_us = time.time_ns() // 1000
    limits = span_limits()
    # Past this, a message may hold oversized content or be too large for Kafka.
    size_check = min(settings.INGEST_MAX_CONTENT_BYTES,
                     settings.KAFKA_MESSAGE_MAX_BYTES - MESSAGE_FRAMING_BYTES)
    result = AcceptResult()
    unknown: set[str] = set()
    by_key: dict[bytes, list[bytes]] = {}  # each span's JSON, grouped by its message key

    def encode_message(span: SpanIn) -> bytes:
        # The span as a message of its own: what is checked against Kafka's limit.
        return _encode(SpansMessage(MESSAGE_VERSION, org.org_id, received_at_us, 1, [span]))

    head = len(encode_message_head(org.org_id, received_at_us, 1))

    for index, raw in enumerate(spans):
        span, errors, extra = validate_span(raw, limits)
        unknown.update(extra)
        if span is None:
            _reject(result, index, raw, errors)
            continue
        if not is_sampled(span.trace_id, rate):
            result.sampled_out += 1
            continue
        if without_content:
            drop_content(span)
        key = f"{org.org_id}:{span.trace_id}".encode()
        message = encode_message(span)
        if len(key) + len(message) > size_check:
            message, errors = fit_message(span, encode_message, message, key)
            if message is None:
                _reject(result, index, raw, errors)
                continue
            cut = [name for name in ("input", "output")
                   if ORIGINAL_BYTES_KEY.format(name=name) in span.metadata]
            if cut:
                result.truncated.append({"index": index, "span_id": span.span_id,
                                         "fields": cut})
        by_key.setdefault(key, []).append(message[head:-2])
    messages = spans_messages(org.org_id, received_at_us, by_key)
    # Only now, every message known to fit: produce() refuses an oversized one at once, after
    # the request's earlier messages were queued.
    if messages:
        publish(settings.KAFKA_SPANS_TOPIC, messages)
    published = sum(len(spans) for spans in by_key.values())
    result.accepted = published + result.sampled_out
    metrics.SPANS_ACCEPTED.inc(published)
    metrics.SPANS_SAMPLED_OUT.inc(result.sampled_out)
    metrics.SPANS_REJECTED.inc(len(result.rejected))
    result.warnings = [f"unknown field ignored: {name}" for name in sorted(unknown)]
    return result
