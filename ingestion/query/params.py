"""Query parameters of the read API: validated here, so a bad one is a 400 that names it."""

import math

import orjson
from django.conf import settings
from django.core import signing
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from ingestion.schema import SpanKind, SpanStatus
from llmops.params import QueryParams, WindowParams, resolve_window

BUCKETS = ("minute", "hour", "day")
BUCKET_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
GROUPS = ("none", "model", "kind", "environment")


def _text(max_length: int, help_text: str) -> serializers.CharField:
    # Values are compared as sent: no trimming. Null characters are refused by CharField.
    return serializers.CharField(required=False, max_length=max_length,
                                 trim_whitespace=False, help_text=help_text)


def encode_cursor(kind: str, payload: dict) -> str:
    return signing.dumps(payload, salt=f"query-cursor:{kind}", compress=True)


def decode_cursor(kind: str, token: str) -> dict:
    try:
        return signing.loads(token, salt=f"query-cursor:{kind}")
    except signing.BadSignature:
        raise ValidationError({"cursor": ["not a cursor this API gave out"]}) from None


def fingerprint(params: dict) -> str:
    """The filters of a query, so a cursor is only taken with the query it came from."""
    filters = {k: v for k, v in params.items() if k not in ("cursor", "limit")}
    return orjson.dumps(filters, option=orjson.OPT_SORT_KEYS, default=str).decode()


class PageParams(WindowParams):
    limit = serializers.IntegerField(required=False, min_value=1,
                                     help_text="Items per page: default 50, at most 500.")
    cursor = serializers.CharField(required=False, max_length=4096,
                                   help_text="`next_cursor` of the previous page, with the "
                                             "same filters.")
    CURSOR_KIND = ""

    def validate_limit(self, value: int) -> int:
        if value > settings.QUERY_MAX_LIMIT:
            raise ValidationError(f"at most {settings.QUERY_MAX_LIMIT}")
        return value

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if "cursor" in attrs:
            position = decode_cursor(self.CURSOR_KIND, attrs["cursor"])
            if position.get("filters") != fingerprint(attrs):
                raise ValidationError({"cursor": ["belongs to a query with other filters"]})
            attrs["cursor"] = position  # the selectors take the decoded position
        return attrs


class TraceFilterParams(PageParams):
    user_id = _text(256, "Traces with a span of this user.")
    session_id = _text(128, "Traces with a span in this session.")
    model = _text(256, "Traces with a span calling this model.")
    status = serializers.ChoiceField(
        required=False, choices=SpanStatus.__args__,
        help_text="`error`: traces where a span failed; `ok`: traces where none did.")
    tag = _text(256, "Traces with a span carrying this tag.")
    environment = _text(128, "Traces with a span from this environment.")
    name = _text(1024, "Substring of the trace's name (its root span's), any case.")


class TraceListParams(TraceFilterParams):
    CURSOR_KIND = "traces"


class SpanSearchParams(TraceFilterParams):
    CURSOR_KIND = "spans"
    name = _text(1024, "Substring of the span's name, any case.")
    kind = serializers.ChoiceField(required=False, choices=SpanKind.__args__)
    min_latency_ms = serializers.FloatField(required=False, min_value=0,
                                            help_text="Spans that took at least this long.")
    min_tokens = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1,
                                          help_text="Spans with at least this many tokens.")

    def validate_min_latency_ms(self, value: float) -> float:
        if not math.isfinite(value):
            raise ValidationError("must be a finite number")
        return value


class MetricsParams(WindowParams):
    bucket = serializers.ChoiceField(required=False, default="hour", choices=BUCKETS,
                                     help_text="Width of each point of the series.")
    group_by = serializers.ChoiceField(required=False, default="none", choices=GROUPS,
                                       help_text="One series per value of this field.")

    def validate(self, attrs: dict) -> dict:
        start, end = resolve_window(attrs.get("from"), attrs.get("to"))
        buckets = (end - start).total_seconds() / BUCKET_SECONDS[attrs["bucket"]]
        if buckets > settings.QUERY_METRICS_MAX_BUCKETS:
            raise ValidationError({"bucket": [
                f"{math.ceil(buckets)} {attrs['bucket']} buckets in this window; at most "
                f"{settings.QUERY_METRICS_MAX_BUCKETS}: choose a wider bucket or a shorter "
                f"window"]})
        return attrs


class NoParams(QueryParams):
    """Endpoints addressed by their path alone."""
