"""Langfuse's public API, the parts its SDKs call: the legacy ingestion batch, scores and the
projects list of `auth_check()`. Thin: the work is in service.py."""

import uuid
from datetime import UTC, datetime

import orjson
from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from evaluation.serializers import kept_time
from evaluation.services import scores
from ingestion.langfuse.mapping import BadEvent, score_fields
from ingestion.langfuse.service import ingest_batch, score_row
from ingestion.models import Org
from ingestion.query import docs
from ingestion.views import PayloadTooLarge, RawJSONParser, read_raw, refusals_answered
from llmops.api_errors import Unavailable
from llmops.auth import ApiKeyAuthentication, HasOrg, WritesAllowed


def read_json(request):
    """The JSON body, refused past LANGFUSE_MAX_BODY_BYTES (Langfuse's limit: 4.5 MB)."""
    limit = settings.LANGFUSE_MAX_BODY_BYTES
    too_large = PayloadTooLarge(f"request body over the limit of {limit} bytes "
                                "(LANGFUSE_MAX_BODY_BYTES)")
    if request.META.get("HTTP_CONTENT_ENCODING", "identity").lower() != "identity":
        raise exceptions.UnsupportedMediaType(
            request.META["HTTP_CONTENT_ENCODING"],
            "Content-Encoding is not supported here; send the JSON uncompressed")
    body = read_raw(request, limit, too_large)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise exceptions.ParseError(f"body is not valid JSON: {exc}") from exc


class LangfuseView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrg, WritesAllowed]
    parser_classes = [RawJSONParser]


class IngestionView(LangfuseView):
    @extend_schema(
        operation_id="langfuse_ingestion", summary="Langfuse legacy batch (v2 SDKs)",
        description=(
            "Langfuse's `POST /api/public/ingestion`: `{\"batch\": [{id, type, timestamp, "
            "body}]}`, authenticated with `Basic base64(public key:secret key)` or Bearer. "
            "Always 207: `successes` [{id, status: 201}] and `errors` [{id, status, message, "
            "error}], by event id; an event is a success once its span is acknowledged by "
            "Kafka. Create and update events of one observation are merged, in any order "
            "and across batches; resending a batch stores nothing twice."),
        request=None,
        responses={207: OpenApiResponse(description="Per-event results."),
                   **docs.errors(400, 401, 413, 429, 503)},
    )
    def post(self, request):
        payload = read_json(request)
        if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list):
            raise exceptions.ParseError('expected a JSON object with a `batch` list')
        batch = payload["batch"]
        if len(batch) > settings.INGEST_MAX_SPANS_PER_REQUEST:
            raise PayloadTooLarge(f"`batch` has {len(batch)} events; at most "
                                  f"{settings.INGEST_MAX_SPANS_PER_REQUEST} per request")
        with refusals_answered("events"):
            body = ingest_batch(org=request.user, batch=batch)
        return Response(body, status=status.HTTP_207_MULTI_STATUS)


class PublicScoresView(LangfuseView):
    @extend_schema(
        operation_id="langfuse_scores", summary="Langfuse scores",
        description=(
            "Langfuse's `POST /api/public/scores`: one score `{traceId, observationId?, "
            "name, value, dataType?, comment?, id?}` answers 200 `{\"id\"}`; a list (the v5 "
            "SDK's batches) answers 202 `{\"message\": \"Accepted\"}`, or 207 `{accepted, "
            "rejected, errors: [{message}]}` when some are refused."),
        request=None,
        responses={200: OpenApiResponse(description="One score stored."),
                   202: OpenApiResponse(description="Every score stored."),
                   207: OpenApiResponse(description="Some scores refused."),
                   **docs.errors(400, 401, 413, 503)},
    )
    def post(self, request):
        payload = read_json(request)
        single = isinstance(payload, dict)
        items = [payload] if single else payload
        if not isinstance(items, list) or not items:
            raise exceptions.ParseError("expected a score object or a non-empty list of them")
        rows, ids, refused = [], [], []
        for position, item in enumerate(items):
            try:
                fields = score_fields(item, str(uuid.uuid4()))
                fields["timestamp"] = _kept(fields["timestamp"])
            except BadEvent as exc:
                refused.append(f"score {position}: {exc}")
                continue
            rows.append(score_row(request.user, fields))
            ids.append(fields["score_id"])
        if single and refused:
            raise exceptions.ValidationError({"detail": refused[0]})
        try:
            scores.write(rows)
        except scores.ScoresNotStored as exc:
            raise Unavailable(f"scores not stored, retry: {exc}",
                              settings.INGEST_RETRY_AFTER_S) from exc
        if single:
            return Response({"id": ids[0]})
        if refused:
            return Response({"accepted": len(rows), "rejected": len(refused), "ids": ids,
                             "errors": [{"message": message} for message in refused]},
                            status=status.HTTP_207_MULTI_STATUS)
        return Response({"message": "Accepted", "ids": ids}, status=status.HTTP_202_ACCEPTED)


def _kept(moment: datetime | None) -> datetime:
    moment = moment or datetime.now(UTC)
    try:
        return kept_time(moment)
    except serializers.ValidationError as exc:
        raise BadEvent(f"body.timestamp {exc.detail[0]}") from exc


class ProjectsView(APIView):
    """What `auth_check()` asks: the project of the key, here its org."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrg]

    @extend_schema(operation_id="langfuse_projects", summary="Langfuse projects (auth check)",
                   responses={200: OpenApiResponse(description="The key's org, as a project."),
                              **docs.errors(401)})
    def get(self, request):
        org = Org.objects.only("slug", "name").get(pk=request.user.org_id)
        project = {"id": org.slug, "name": org.name or org.slug, "metadata": {},
                   "organization": {"id": org.slug, "name": org.name or org.slug}}
        return Response({"data": [project]})
