"""OpenAPI shapes of the API's bodies (documentation only: spans are validated by msgspec,
answers built as plain dicts and encoded once, not passed through serializers)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from ingestion.schema import SpanKind, SpanStatus


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "llmops.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "API key (llm_...)"}


class TraceSummary(serializers.Serializer):
    trace_id = serializers.CharField()
    name = serializers.CharField(help_text="The root span's name (else the earliest span's).")
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField(help_text="Latest end (or start) of its spans.")
    duration_ms = serializers.FloatField()
    span_count = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = serializers.CharField(help_text="Sum of the spans' costs, as an exact decimal.")
    status = serializers.ChoiceField(choices=["ok", "error"],
                                     help_text="`error` if any span failed.")
    user_id = serializers.CharField(help_text="The earliest span's user, if any.")
    session_id = serializers.CharField(help_text="The earliest span's session, if any.")
    tags = serializers.ListField(child=serializers.CharField(), help_text="All spans' tags.")


class TracePage(serializers.Serializer):
    from_ = serializers.DateTimeField()
    to = serializers.DateTimeField()
    items = TraceSummary(many=True)
    next_cursor = serializers.CharField(allow_null=True,
                                        help_text="Pass as `cursor` for the next page.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class Span(serializers.Serializer):
    trace_id = serializers.CharField()
    span_id = serializers.CharField()
    parent_span_id = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    status_message = serializers.CharField()
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.FloatField(allow_null=True)
    model = serializers.CharField()
    provider = serializers.CharField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cached_input_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost = serializers.CharField()
    session_id = serializers.CharField()
    user_id = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    metadata = serializers.DictField(child=serializers.CharField())
    environment = serializers.CharField()


class SpanNode(Span):
    input = serializers.JSONField(allow_null=True,
                                  help_text="As sent: JSON content parsed, text a string.")
    output = serializers.JSONField(allow_null=True)
    children = serializers.ListField(child=serializers.DictField(),
                                     help_text="Child spans, each shaped like this one.")


class TraceDetail(TraceSummary):
    truncated = serializers.BooleanField(help_text="More than QUERY_TRACE_MAX_SPANS spans.")
    spans = SpanNode(many=True, help_text="Root spans and orphans (parent not in the trace).")


class SpanPage(TracePage):
    items = Span(many=True)


class SessionTraces(serializers.Serializer):
    session_id = serializers.CharField()
    truncated = serializers.BooleanField(help_text="More than QUERY_SESSION_MAX_TRACES.")
    traces = TraceSummary(many=True, help_text="Oldest first.")


class Latency(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)


class MetricsPoint(serializers.Serializer):
    bucket_start = serializers.DateTimeField()
    group = serializers.CharField(required=False, help_text="Absent when group_by=none.")
    span_count = serializers.IntegerField()
    error_count = serializers.IntegerField()
    error_rate = serializers.FloatField()
    latency_ms = Latency()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class Metrics(TracePage):
    items = None
    next_cursor = None
    bucket = serializers.CharField()
    group_by = serializers.CharField()
    series = MetricsPoint(many=True, help_text="Buckets with spans only, in time order.")


# -- errors, shared by every endpoint ----------------------------------------------------------

class ErrorDetail(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, for a person to read.")


FIELD_ERRORS = OpenApiResponse(
    response=OpenApiTypes.OBJECT,
    description="A bad parameter or field: the body names it, e.g. "
                '`{"from": ["must be before `to`"]}`, or says what is wrong in `detail`.')
UNAUTHORIZED = OpenApiResponse(ErrorDetail, description="No API key, or a bad or revoked one.")
NOT_FOUND = OpenApiResponse(ErrorDetail, description=(
    "No such trace/session in the caller's org (another org's ids answer 404 too, never 403), "
    "no such path, or a `format` parameter naming no format (DRF's format override)."))


def errors(*codes: int) -> dict:
    """Error answers for extend_schema: every error is JSON with a `detail` (or, for a 400,
    the fields it names). 401 and 404 go without saying: any endpoint may answer them."""
    codes = tuple(sorted({*codes, 401, 404}))
    described = {
        400: FIELD_ERRORS,
        401: UNAUTHORIZED,
        404: NOT_FOUND,
        413: OpenApiResponse(ErrorDetail, description="Body or batch too large."),
        429: OpenApiResponse(ErrorDetail, description="Over the org's ingestion rate; "
                                                      "`Retry-After` says when to retry."),
        503: OpenApiResponse(ErrorDetail, description=(
            "Nothing was stored: a store did not answer in time, or the platform is "
            "read-only (degradation level 4). `Retry-After` says when to retry.")),
    }
    return {code: described[code] for code in codes}


# -- POST /api/v1/spans -----------------------------------------------------------------------

@extend_schema_field({
    "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}], "nullable": True,
    "description": "A scalar (stored as text; non-strings as their JSON)."})
class ScalarField(serializers.JSONField):
    pass


TOKENS = {"required": False, "allow_null": True, "min_value": 0, "max_value": 2**63 - 1}


class UsageIn(serializers.Serializer):
    """Token counts; each at most INGEST_MAX_TOKENS (default 100,000,000), else the span is
    rejected in the 207."""

    input_tokens = serializers.IntegerField(
        **TOKENS, help_text="Every prompt token, cached ones included (OpenAI's convention).")
    output_tokens = serializers.IntegerField(**TOKENS)
    cached_input_tokens = serializers.IntegerField(
        **TOKENS, help_text="Part of input_tokens, read from a prompt cache.")
    cache_write_tokens = serializers.IntegerField(
        **TOKENS, help_text="Part of input_tokens, written to a prompt cache.")
    total_tokens = serializers.IntegerField(**TOKENS, help_text="Default: input + output.")


def _text(max_length: int | None = None, **options) -> serializers.CharField:
    return serializers.CharField(required=False, allow_blank=True, max_length=max_length,
                                 **options)


class SpanIn(serializers.Serializer):
    """One span as sent (ingestion.schema.SpanIn is what validates it)."""

    trace_id = serializers.CharField(min_length=1, max_length=128)
    span_id = serializers.CharField(min_length=1, max_length=128)
    name = serializers.CharField(max_length=1024, allow_blank=True)
    start_time = serializers.DateTimeField(help_text=(
        "RFC 3339 (no offset: UTC). Within the retention (CLICKHOUSE_SPANS_TTL_DAYS, 90 days, "
        "or a shorter emergency TTL) and at most INGEST_MAX_FUTURE_S (1 day) ahead, else the "
        "span is rejected in the 207: the store would delete it."))
    parent_span_id = _text(128, allow_null=True)
    kind = serializers.ChoiceField(SpanKind.__args__, required=False, default="other")
    end_time = serializers.DateTimeField(required=False, allow_null=True, help_text=(
        "Not before start_time; in the same window."))
    status = serializers.ChoiceField(SpanStatus.__args__, required=False, default="ok")
    status_message = _text()
    model = _text(256)
    provider = _text(128)
    input = serializers.JSONField(required=False, allow_null=True, help_text=(
        "A string or any JSON. Over INGEST_MAX_CONTENT_BYTES (1 MB of JSON) it is stored "
        "truncated, as a string ending `[truncated by llmops: <n> bytes of JSON, over the "
        "limit of <limit>]`, and its size kept in metadata `llmops.input.original_bytes`."))
    output = serializers.JSONField(required=False, allow_null=True, help_text=(
        "As `input` (`llmops.output.original_bytes`)."))
    usage = UsageIn(required=False, allow_null=True)
    cost = serializers.FloatField(required=False, allow_null=True, min_value=0, help_text=(
        "USD; at most INGEST_MAX_COST_USD (100,000). Without it the span is priced from its "
        "usage, and usage that could cost more than that at the highest price known is "
        "rejected."))
    session_id = _text(128)
    user_id = _text(256)
    tags = serializers.ListField(child=_text(256), required=False)
    metadata = serializers.DictField(child=ScalarField(), required=False)
    environment = serializers.CharField(required=False, min_length=1, max_length=128,
                                        default="default")


class SpansIn(serializers.Serializer):
    spans = SpanIn(many=True, help_text="1 to INGEST_MAX_SPANS_PER_REQUEST (1,000) spans.")


class SpansAccepted(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Spans acknowledged by Kafka, plus those "
                                                  "sampled out.")
    sampled_out = serializers.IntegerField(required=False, help_text="Dropped by sampling.")
    warnings = serializers.ListField(child=serializers.CharField(), required=False,
                                     help_text="e.g. `unknown field ignored: colour`.")
    truncated = serializers.ListField(child=serializers.DictField(), required=False, help_text=(
        "Spans accepted with `input`/`output` cut to INGEST_MAX_CONTENT_BYTES: "
        "`{index, span_id, fields}`."))


class SpanRejection(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position in `spans`.")
    span_id = serializers.CharField(allow_null=True)
    errors = serializers.DictField(child=serializers.CharField(), help_text=(
        "Field (dotted, e.g. `usage.input_tokens`; `span` for the whole span) -> reason."))


class SpansPartlyAccepted(SpansAccepted):
    rejected = SpanRejection(many=True)
