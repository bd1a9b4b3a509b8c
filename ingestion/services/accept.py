"""Accepting a batch of spans: degradation gate, rate limit, validation, sampling, publish."""

import time
import zlib
from dataclasses import dataclass, field

import msgspec
from django.conf import settings

from ingestion.schema import MESSAGE_VERSION, SpanMessage, validate_span
from ingestion.services.publish import publish
from ingestion.services.tenancy import OrgContext
from llmops import metrics
from llmops.redis import get_redis
from operations.models import DegradationLevel
from operations.services.degradation import current_level

_encode = msgspec.json.Encoder().encode


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
    warnings: list[str] = field(default_factory=list)


def is_sampled(trace_id: str, rate: float) -> bool:
    """Deterministic on the trace id, so a trace is kept or dropped whole, in every process."""
    if rate >= 1.0:
        return True
    return zlib.crc32(trace_id.encode()) / 0x1_0000_0000 < rate


def reserve_quota(org: OrgContext, count: int) -> None:
    """Count `count` spans against the org's window; over the limit nothing is counted."""
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


def sample_rate_for(org: OrgContext, level: DegradationLevel) -> float:
    if level >= DegradationLevel.REDUCED_SAMPLING:
        return min(org.sample_rate, settings.INGEST_DEGRADED_SAMPLE_RATE)
    return org.sample_rate


def accept_spans(*, org: OrgContext, spans: list) -> AcceptResult:
    """Validate, sample and publish; returns once Kafka has acknowledged what was accepted."""
    level = current_level()
    if level >= DegradationLevel.READ_ONLY:
        raise IngestionPaused("ingestion is paused: the platform is read-only (level 4)")
    reserve_quota(org, len(spans))

    rate = sample_rate_for(org, level)
    drop_content = level >= DegradationLevel.ESSENTIAL_ONLY
    received_at_us = time.time_ns() // 1000
    result = AcceptResult()
    unknown: set[str] = set()
    messages = []
    for index, raw in enumerate(spans):
        span, errors, extra = validate_span(raw)
        unknown.update(extra)
        if span is None:
            span_id = raw.get("span_id") if isinstance(raw, dict) else None
            result.rejected.append({"index": index, "span_id": span_id, "errors": errors})
            continue
        if not is_sampled(span.trace_id, rate):
            result.sampled_out += 1
            continue
        if drop_content:
            span.input = span.output = None
        key = f"{org.org_id}:{span.trace_id}".encode()
        messages.append((key, _encode(SpanMessage(MESSAGE_VERSION, org.org_id, received_at_us,
                                                  span))))
    if messages:
        publish(settings.KAFKA_SPANS_TOPIC, messages)
    result.accepted = len(messages) + result.sampled_out
    metrics.SPANS_ACCEPTED.inc(len(messages))
    metrics.SPANS_SAMPLED_OUT.inc(result.sampled_out)
    metrics.SPANS_REJECTED.inc(len(result.rejected))
    result.warnings = [f"unknown field ignored: {name}" for name in sorted(unknown)]
    return result
