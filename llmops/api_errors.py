"""Errors of the API as JSON with a `detail`, whatever raised them: a client of /api/ never
parses an HTML page, not even for a crash or an unknown path."""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import OperationalError as DjangoOperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from llmops.clickhouse_errors import is_retryable

logger = logging.getLogger(__name__)
API_PREFIXES = ("/api/", "/v1/")


class Unavailable(exceptions.APIException):
    """503: nothing was stored; retry after `retry_after` seconds (sent as Retry-After)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.wait = retry_after  # DRF's handler turns `wait` into Retry-After


def api_exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's answer for its own exceptions; for any other, a logged 500 in JSON (DRF would
    re-raise it, and Django answer an HTML page)."""
    response = exception_handler(exc, context)
    if response is not None:
        return response
    if isinstance(exc, RequestDataTooBig):  # a body past DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response({"detail": f"request body over the limit of "
                                   f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": str(exc) or "bad request"},
                        status=status.HTTP_400_BAD_REQUEST)
    if store_unavailable(exc):
        logger.warning("a store did not answer: %s: %s", type(exc).__name__, exc)
        return Response({"detail": f"a store did not answer ({type(exc).__name__}); retry"},
                        status=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(settings.INGEST_RETRY_AFTER_S)})
    view = context.get("view")
    logger.error("unexpected error in %s", type(view).__name__ if view else "a view",
                 exc_info=exc)
    return Response({"detail": "internal error: it was logged; retry later"},
                    status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def store_unavailable(exc: BaseException) -> bool:
    """ClickHouse, PostgreSQL or Redis did not answer: the client should retry later, it is
    not a bug to report (a 503, not a 500)."""
    return (isinstance(exc, DjangoOperationalError | RedisConnectionError | RedisTimeoutError)
            or is_retryable(exc))


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "bad request"}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "permission denied"}, status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": f"no such endpoint: {request.path}"}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "internal error: it was logged; retry later"},
                            status=500)
    return defaults.server_error(request)
