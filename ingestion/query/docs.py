"""OpenAPI shapes of the query API's answers (documentation only: bodies are built as
plain dicts and encoded once, not passed through serializers)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import serializers


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "ingestion.auth.ApiKeyAuthentication"
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
