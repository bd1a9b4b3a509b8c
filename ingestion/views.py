"""POST /api/v1/spans: thin; parsing limits here, the rest in services.accept."""

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from ingestion.query import docs
from ingestion.services.accept import IngestionPaused, RateLimited, accept_spans
from ingestion.services.publish import PublishFailed
from llmops.api_errors import Unavailable
from llmops.auth import ApiKeyAuthentication, HasOrg
from llmops.metrics import INGEST_REFUSED


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class RawJSONParser(BaseParser):
    """Declares JSON for the docs; the view reads the bytes itself, with its own limits."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        return None


def read_raw(request, limit: int, too_large: PayloadTooLarge) -> bytes:
    """The body as sent, refused past `limit` bytes without reading more than one byte over
    (a declared length over it is refused before reading at all)."""
    length = request.META.get("CONTENT_LENGTH")
    if length and length.isdigit() and int(length) > limit:
        raise too_large
    body = request._request.read(limit + 1)
    if len(body) > limit:
        raise too_large
    return body


@contextmanager
def refusals_answered(what: str) -> Iterator[None]:
    """The accept path's refusals as every ingestion door answers them: 429 or 503 with
    Retry-After (which clients and OTLP exporters honour), each counted by its reason."""
    try:
        yield
    except RateLimited as exc:
        INGEST_REFUSED.labels(reason="rate_limited").inc()
        raise exceptions.Throttled(wait=exc.retry_after, detail=str(exc)) from exc
    except IngestionPaused as exc:
        INGEST_REFUSED.labels(reason="read_only").inc()
        raise Unavailable(str(exc), settings.INGEST_RETRY_AFTER_S) from exc
    except PublishFailed as exc:
        INGEST_REFUSED.labels(reason="kafka_unavailable").inc()
        raise Unavailable(f"{what} not stored, retry: {exc}",
                          settings.INGEST_RETRY_AFTER_S) from exc


def read_body(request) -> bytes:
    """The body, gunzipped when asked, refused past INGEST_MAX_BODY_BYTES either way."""
    limit = settings.INGEST_MAX_BODY_BYTES
    too_large = PayloadTooLarge(f"request body over the limit of {limit} bytes")
    body = read_raw(request, limit, too_large)
    if request.META.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise exceptions.ParseError(f"body is not valid gzip: {exc}") from exc
        if len(body) > limit or inflater.unconsumed_tail:
            raise too_large
    return body


def parse_spans(body: bytes) -> list:
    if not body.strip():
        raise exceptions.ParseError('empty body: expected {"spans": [...]}')
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise exceptions.ParseError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or "spans" not in payload:
        raise exceptions.ParseError('expected a JSON object with a `spans` list')
    spans = payload["spans"]
    if not isinstance(spans, list):
        raise exceptions.ParseError("`spans` must be a list")
    if not spans:
        raise exceptions.ParseError("`spans` is empty")
    limit = settings.INGEST_MAX_SPANS_PER_REQUEST
    if len(spans) > limit:
        raise PayloadTooLarge(f"`spans` has {len(spans)} items; at most {limit} per request")
    return spans


SPAN_EXAMPLE = {
    "spans": [{
        "trace_id": "tr-1", "span_id": "sp-1", "name": "chat", "kind": "llm",
        "start_time": "2026-11-27T10:00:00.000Z", "end_time": "2026-11-27T10:00:01.250Z",
        "model": "gpt-4o-mini", "provider": "openai",
        "input": [{"role": "user", "content": "Hello"}], "output": "Hi!",
        "usage": {"input_tokens": 9, "output_tokens": 3},
        "session_id": "s-1", "user_id": "u-1", "tags": ["prod"], "metadata": {"team": "a"},
    }]
}


class SpansView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrg]
    parser_classes = [RawJSONParser]

    @extend_schema(
        operation_id="ingest_spans",
        summary="Send spans",
        description=(
            "Accepts up to INGEST_MAX_SPANS_PER_REQUEST spans (default 1,000) and "
            "INGEST_MAX_BODY_BYTES (default 5 MB, gzip accepted). A span counts as accepted "
            "only once Kafka has acknowledged it. 202: all accepted; 207: some rejected, "
            "each with its index and field errors; 429/503 carry Retry-After.\n\n"
            "A span is rejected (207) when the store would lose it: `start_time` or "
            "`end_time` outside [now - retention, now + INGEST_MAX_FUTURE_S]; `cost` over "
            "INGEST_MAX_COST_USD; a token count over INGEST_MAX_TOKENS; or a span whose "
            "message is still over KAFKA_MESSAGE_MAX_BYTES (3 MiB) once its input and output "
            "are truncated to INGEST_MAX_CONTENT_BYTES (1 MB of JSON each).\n\n"
            "`usage.input_tokens` counts every prompt token, the cached ones included "
            "(OpenAI's convention): `cached_input_tokens` (read from a prompt cache) and "
            "`cache_write_tokens` (written to it) are parts of it, so together they cannot "
            "exceed it. Without `cost`, the span is priced at drain time from its usage (or, "
            "without usage, from tokens counted in its content): see GET /api/v1/costs."
        ),
        request=docs.SpansIn,
        examples=[OpenApiExample("one LLM span", value=SPAN_EXAMPLE, request_only=True)],
        responses={
            202: OpenApiResponse(docs.SpansAccepted, description="Every span accepted."),
            207: OpenApiResponse(docs.SpansPartlyAccepted, description=(
                "Some spans rejected, each with its index and reasons; the others stored.")),
            **docs.errors(400, 401, 413, 429, 503),
        },
    )
    def post(self, request):
        spans = parse_spans(read_body(request))
        with refusals_answered("spans"):
            result = accept_spans(org=request.user, spans=spans)
        body = {"accepted": result.accepted}
        if result.sampled_out:
            body["sampled_out"] = result.sampled_out
        if result.warnings:
            body["warnings"] = result.warnings
        if result.truncated:
            body["truncated"] = result.truncated
        if result.rejected:
            body["rejected"] = result.rejected
            return Response(body, status=status.HTTP_207_MULTI_STATUS)
        return Response(body, status=status.HTTP_202_ACCEPTED)
