"""GET /api/v1/costs: thin; the report and its cache are in costs.services.reports."""

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from costs.services.reports import BUCKETS, GROUPS, cost_report
from ingestion.query import docs
from llmops.auth import ApiKeyAuthentication, HasOrg
from llmops.params import WindowParams, resolve_window
from operations.services.flags import flag_for


class CostReportParams(WindowParams):
    bucket = serializers.ChoiceField(choices=list(BUCKETS), default="hour",
                                     help_text="UTC hours or days.")
    group_by = serializers.ChoiceField(choices=[g for g in GROUPS if g], required=False,
                                       help_text="One row per bucket and value of this field.")


REPORT_EXAMPLE = {
    "from": "2026-11-20T00:00:00Z", "to": "2026-11-21T00:00:00Z", "bucket": "day",
    "group_by": "model", "currency": "USD",
    "totals": {"cost": "0.004575000000", "spans": 3, "input_tokens": 1500,
               "cached_input_tokens": 400, "cache_write_tokens": 0, "output_tokens": 90,
               "total_tokens": 1590, "unpriced_spans": 1, "estimated_spans": 0},
    "buckets": [{"start": "2026-11-20T00:00:00Z", "group": "gpt-4o", "cost": "0.004575000000",
                 "spans": 2, "input_tokens": 1200, "cached_input_tokens": 400,
                 "cache_write_tokens": 0, "output_tokens": 60, "total_tokens": 1260,
                 "unpriced_spans": 0, "estimated_spans": 0}],
    "unpriced_models": [{"model": "my-finetune", "provider": "", "spans": 1}],
    "sources": {"rollup_hours": 24, "span_ranges": []},
}


class CostMeasures(serializers.Serializer):
    cost = serializers.CharField(help_text="USD, an exact decimal with 12 places.")
    spans = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    cached_input_tokens = serializers.IntegerField()
    cache_write_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    unpriced_spans = serializers.IntegerField()
    estimated_spans = serializers.IntegerField()


class CostBucket(CostMeasures):
    start = serializers.DateTimeField()
    group = serializers.CharField(help_text="The group's value; empty without group_by.")


class UnpricedModel(serializers.Serializer):
    model = serializers.CharField()
    provider = serializers.CharField()
    spans = serializers.IntegerField()


class SpanRange(serializers.Serializer):
    from_ = serializers.DateTimeField()
    to = serializers.DateTimeField()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class CostSources(serializers.Serializer):
    rollup_hours = serializers.IntegerField(help_text="Hours served by the hourly rollups.")
    span_ranges = SpanRange(many=True, help_text="Ranges read from the stored spans.")


class CostReport(SpanRange):
    bucket = serializers.CharField()
    group_by = serializers.CharField(allow_null=True)
    currency = serializers.CharField()
    totals = CostMeasures()
    buckets = CostBucket(many=True)
    unpriced_models = UnpricedModel(many=True)
    sources = CostSources()


class CostReportView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrg]

    @extend_schema(
        operation_id="cost_report",
        summary="Costs and tokens over a window",
        parameters=[CostReportParams],
        description=(
            "Costs (USD, exact decimals as strings) and tokens of the caller's spans that "
            "start in [`from`, `to`) (default: the last 24 hours; at most "
            "QUERY_MAX_WINDOW_DAYS), per `bucket` (UTC hours or days) and, optionally, per "
            "`group_by` group (a span counts once under each of its tags). `totals` count "
            "each span once; `unpriced_models` lists the models of spans no price matched "
            "(cost 0, `cost_source` unpriced), so their prices can be added.\n\n"
            "How a span's cost is made: the `cost` the client sent, if any; else its usage "
            "(or, without usage, tokens counted from its content with the model's tiktoken "
            "encoding: `estimated`) at the price in force at its `start_time`. `input_tokens` "
            "counts every prompt token, cached ones included (OpenAI's convention): cost = "
            "(input - cached_input - cache_write) x input price + cached_input x cached price "
            "+ cache_write x cache-write price + output x output price, per million tokens.\n\n"
            "Totals equal the sums over the stored spans to the last decimal: hourly rollups "
            "serve the days where each span was stored once, the stored spans serve the rest "
            "(`sources`); session and tag groups always come from the stored spans. Cached "
            f"per org for {settings.COST_CACHE_TTL_S} s (COST_CACHE_TTL_S), dropped as soon "
            "as new spans of the org are stored (a window given without `to` may so end up to that "
            "long ago); `X-Cache` says `l2`, `miss` or `bypass` (the `query-cache-enabled` "
            "flag is off)."),
        responses={200: OpenApiResponse(CostReport, description="The report", examples=[
            OpenApiExample("a day, by model", value=REPORT_EXAMPLE)]),
            **docs.errors(400, 401, 503)},
    )
    def get(self, request):
        params = CostReportParams.parse(request)
        start, end = resolve_window(params.get("from"), params.get("to"))
        org_id = request.user.org_id
        # Keyed on the window as requested: the default one (ending now) is cached too.
        requested = {"from": params.get("from"), "to": params.get("to")}
        body, source = cost_report(org_id=org_id, start=start, end=end,
                                   bucket=params["bucket"], group_by=params.get("group_by"),
                                   requested=requested,
                                   cached=flag_for("query-cache-enabled", org_id))
        response = HttpResponse(body, content_type="application/json")
        response["X-Cache"] = source
        return response
