"""POST /v1/traces and POST /api/public/otel/v1/traces: the OTLP/HTTP traces door. Thin: the
body is read and decoded here, mapped and accepted in ingestion.otlp.export."""

import zlib

import orjson
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from rest_framework import exceptions, serializers
from rest_framework.parsers import BaseParser
from rest_framework.views import APIView

from ingestion.otlp.decode import MalformedRequest, decode_json
from ingestion.otlp.export import export_spans, map_decoded, read_protobuf
from ingestion.views import PayloadTooLarge, read_raw, refusals_answered
from llmops.api_errors import api_exception_handler
from llmops.auth import ApiKeyAuthentication, HasOrg

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
PROTOBUF_TYPES = (PROTOBUF, "application/protobuf", "application/vnd.google.protobuf")
# gRPC status codes (google.rpc.Code) for the HTTP statuses this door answers.
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 413: 8, 415: 3, 429: 8, 500: 13,
              503: 14}


class OtlpBodyParser(BaseParser):
    """Declares both encodings for the docs; the view reads the bytes itself."""

    media_type = "application/x-protobuf"

    def parse(self, stream, media_type=None, parser_context=None):
        return None


class OtlpJsonParser(OtlpBodyParser):
    media_type = JSON


def encoding_of(request) -> str:
    """`protobuf` or `json`, from the Content-Type; 415 for anything else."""
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type in PROTOBUF_TYPES:
        return "protobuf"
    if content_type == JSON:
        return "json"
    raise exceptions.UnsupportedMediaType(
        content_type or "(none)",
        detail=f"unsupported Content-Type {content_type or '(none)'!r}: send "
               f"{PROTOBUF} (ExportTraceServiceRequest) or {JSON} (its OTLP JSON encoding)")


def read_body(request) -> bytes:
    """The body, inflated when gzip or deflate, refused past OTLP_MAX_BODY_BYTES before and
    after inflating (a gzip bomb stops at the limit, never inflated whole)."""
    limit = settings.OTLP_MAX_BODY_BYTES
    too_large = PayloadTooLarge(f"request body over the limit of {limit} bytes "
                                "(OTLP_MAX_BODY_BYTES), compressed or not")
    body = read_raw(request, limit, too_large)
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise exceptions.UnsupportedMediaType(
            encoding, detail=f"unsupported Content-Encoding {encoding!r}: send gzip, deflate "
                             "or none")
    # gzip: a gzip header; deflate: zlib-wrapped per HTTP, raw from some clients.
    attempts = (16 + zlib.MAX_WBITS,) if encoding != "deflate" else (zlib.MAX_WBITS,
                                                                     -zlib.MAX_WBITS)
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            inflated = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            error = exc
            continue
        if len(inflated) > limit or inflater.unconsumed_tail:
            raise too_large
        return inflated
    raise exceptions.ParseError(f"body is not valid {encoding}: {error}")


def status_response(http_status: int, message: str, encoding: str,
                    headers: dict | None = None) -> HttpResponse:
    """An error as OTLP answers it: a google.rpc.Status, in the request's encoding."""
    code = GRPC_CODES.get(http_status, 2)
    if encoding == "protobuf":
        body = status_pb2.Status(code=code, message=message).SerializeToString()
        response = HttpResponse(body, status=http_status, content_type=PROTOBUF)
    else:
        response = HttpResponse(orjson.dumps({"code": code, "message": message}),
                                status=http_status, content_type=JSON)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _status_exception_handler(exc, context):
    response = api_exception_handler(exc, context)
    request = context["request"]
    try:
        encoding = encoding_of(request)
    except exceptions.UnsupportedMediaType:
        encoding = "json"
    detail = response.data.get("detail") if isinstance(response.data, dict) else None
    headers = {name: response[name] for name in ("Retry-After", "WWW-Authenticate")
               if response.has_header(name)}
    return status_response(response.status_code, str(detail or response.data), encoding,
                           headers)


def success_response(encoding: str, rejected: int, message: str) -> HttpResponse:
    if encoding == "protobuf":
        answer = ExportTraceServiceResponse()
        if rejected or message:
            answer.partial_success.rejected_spans = rejected
            answer.partial_success.error_message = message
        return HttpResponse(answer.SerializeToString(), content_type=PROTOBUF)
    body = {}
    if rejected or message:
        # int64 as a decimal string, as the OTLP JSON encoding writes it.
        body["partialSuccess"] = {"rejectedSpans": str(rejected), "errorMessage": message}
    return HttpResponse(orjson.dumps(body), content_type=JSON)


class PartialSuccess(serializers.Serializer):
    rejectedSpans = serializers.CharField(help_text="How many spans were refused (int64).")  # noqa: N815
    errorMessage = serializers.CharField(help_text=(  # noqa: N815
        "Each refused or truncated span by id, and why."))


class ExportAnswer(serializers.Serializer):
    partialSuccess = PartialSuccess(required=False)  # noqa: N815


class RpcStatus(serializers.Serializer):
    code = serializers.IntegerField(help_text="google.rpc.Code")
    message = serializers.CharField()


def _documented_answers() -> dict:
    """Each answer in both encodings: the request's decides (the 415 is always JSON)."""
    answers = {(200, PROTOBUF): OpenApiResponse(OpenApiTypes.BINARY, description=(
                   "ExportTraceServiceResponse; `partial_success` when spans were refused "
                   "or truncated.")),
               (200, JSON): OpenApiResponse(ExportAnswer, description=(
                   "ExportTraceServiceResponse in OTLP JSON."))}
    for code, what in ((400, "unreadable body"), (401, "no key, or a bad one"),
                       (404, "no such endpoint"), (413, "body or span count too large"),
                       (415, "unknown Content-Type or Content-Encoding"),
                       (429, "over the org's rate; Retry-After"),
                       (503, "read-only, or Kafka or a store down; Retry-After")):
        answers[(code, JSON)] = OpenApiResponse(RpcStatus, description=f"google.rpc.Status: "
                                                                       f"{what}")
        if code != 415:
            answers[(code, PROTOBUF)] = OpenApiResponse(OpenApiTypes.BINARY,
                                                        description=f"google.rpc.Status: "
                                                                    f"{what}")
    return answers


class OtlpTracesView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrg]
    parser_classes = [OtlpBodyParser, OtlpJsonParser]

    def get_exception_handler(self):
        return _status_exception_handler

    @extend_schema(
        operation_id="otlp_traces",
        summary="Send traces over OTLP/HTTP",
        description=(
            "The OpenTelemetry Protocol's trace export (also at "
            "`/api/public/otel/v1/traces`, Langfuse's path). Body: an "
            "`ExportTraceServiceRequest`, as `application/x-protobuf` or in OTLP JSON "
            "(`application/json`: hex ids, int64s as strings or numbers, unknown fields "
            "ignored); `Content-Encoding` gzip or deflate; at most OTLP_MAX_BODY_BYTES "
            "(default 64 MiB) before and after inflating (413). Auth: `Bearer <api key>`.\n\n"
            "Each span is mapped to our span (model, provider, messages, usage with cached "
            "tokens, cost, session, user, tags, metadata, environment) from the GenAI "
            "semantic conventions, OpenInference, Traceloop and Langfuse attributes, then "
            "validated, sampled and stored as through POST /api/v1/spans: 200 only once "
            "Kafka acknowledged them. The answer is an `ExportTraceServiceResponse` in the "
            "request's encoding; `partial_success` counts the refused spans and its "
            "`error_message` names each refused or truncated span and why. Errors carry a "
            "`google.rpc.Status`; 429 and 503 carry Retry-After."
        ),
        request={PROTOBUF: OpenApiTypes.BINARY, JSON: OpenApiTypes.OBJECT},
        responses=_documented_answers(),
    )
    def post(self, request):
        encoding = encoding_of(request)
        body = read_body(request)
        try:
            mapped = (read_protobuf(body) if encoding == "protobuf"
                      else map_decoded(decode_json(body)))
        except MalformedRequest as exc:
            raise exceptions.ParseError(str(exc)) from exc
        limit = settings.OTLP_MAX_SPANS_PER_REQUEST
        if mapped.count > limit:
            raise PayloadTooLarge(f"{mapped.count} spans in one request; at most {limit} "
                                  "(OTLP_MAX_SPANS_PER_REQUEST)")
        with refusals_answered("spans"):
            outcome = export_spans(org=request.user, mapped=mapped)
        return success_response(encoding, outcome.rejected, outcome.error_message)


@extend_schema_view(post=extend_schema(operation_id="otlp_traces_langfuse_path",
                                       summary="Send traces over OTLP/HTTP (Langfuse's path)"))
class LangfusePathTracesView(OtlpTracesView):
    """The same door at /api/public/otel/v1/traces, where Langfuse SDKs send."""
