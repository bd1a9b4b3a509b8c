"""/api/v1/scores: human and client scores in; every score of the key's org out."""

import uuid
from datetime import UTC, datetime

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from evaluation.serializers import ScoreFilters, ScoreIds, ScoreList, ScoresIn, score_out
from evaluation.services import scores
from ingestion.query import docs
from llmops.api_errors import Unavailable
from llmops.auth import ApiKeyAuthentication, HasOrg, WritesAllowed


class ScoresView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrg, WritesAllowed]

    @extend_schema(
        operation_id="create_scores", summary="Send human or client scores",
        description=(
            'Body: `{"scores": [{"trace_id", "name", "value", ...}]}`, 1 to 1,000 scores. '
            "`value` is a finite number, a boolean or a label (`data_type` numeric, boolean "
            "or categorical, inferred when absent). Sending a score with an `id` again "
            "replaces it. Refused with 503 at degradation level 4 (read-only)."),
        request=ScoresIn,
        responses={201: OpenApiResponse(ScoreIds, description="Stored."),
                   **docs.errors(400, 401, 413, 503)},
    )
    def post(self, request):
        payload = ScoresIn(data=request.data)
        payload.is_valid(raise_exception=True)
        org_id = request.user.org_id  # from the API key, never from the body
        now = datetime.now(UTC)
        rows, ids = [], []
        for score in payload.validated_data["scores"]:
            score_id = score.get("id") or uuid.uuid4().hex
            at = score.get("timestamp") or now
            value = score["value"]
            categorical = score["data_type"] == "categorical"
            rows.append(scores.row(
                org_id=org_id, trace_id=score["trace_id"], span_id=score["span_id"],
                evaluator=score["name"], score_id=score_id, status="ok",
                source=score["source"], span_time=at, timestamp=at,
                data_type=score["data_type"], value=None if categorical else float(value),
                string_value=value.strip() if categorical else "", comment=score["comment"]))
            ids.append(score_id)
        try:
            scores.write(rows)
        except scores.ScoresNotStored as exc:
            raise Unavailable(f"scores not stored, retry: {exc}",
                              settings.INGEST_RETRY_AFTER_S) from exc
        return Response({"ids": ids}, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="list_scores", summary="Read scores", parameters=[ScoreFilters],
        responses={200: ScoreList, **docs.errors(400, 401, 503)},
    )
    def get(self, request):
        filters = ScoreFilters.parse(request)
        rows = scores.read(org_id=request.user.org_id, **filters)
        return Response({"scores": [score_out(row) for row in rows]})
