"""Bearer API-key authentication: the org of a request comes from its key, and only there."""

from django.conf import settings
from rest_framework import authentication, exceptions
from rest_framework.permissions import SAFE_METHODS

from ingestion.services.tenancy import OrgContext, org_for_key
from llmops.api_errors import Unavailable
from operations.models import DegradationLevel
from operations.services.degradation import current_level


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request) -> tuple[OrgContext, str]:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw_key = header.partition(" ")
        if not header:
            raise exceptions.NotAuthenticated("missing `Authorization: Bearer <api key>` header")
        if scheme.lower() != "bearer" or not raw_key.strip():
            raise exceptions.AuthenticationFailed("Authorization must be `Bearer <api key>`")
        org = org_for_key(raw_key.strip())
        if org is None:
            raise exceptions.AuthenticationFailed("invalid or revoked API key")
        return org, raw_key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (with WWW-Authenticate), not 403.
        return self.keyword


class HasOrg:
    """Permission: the request carries a resolved org."""

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, OrgContext)

    def has_object_permission(self, request, view, obj) -> bool:
        return True


class WritesAllowed:
    """Permission of every write door: at degradation level 4 (read-only) a write answers
    503 with Retry-After and stores nothing; reads go on. (POST /api/v1/spans refuses in
    accept_spans, where the refusal is counted.)"""

    def has_permission(self, request, view) -> bool:
        if request.method not in SAFE_METHODS and current_level() >= DegradationLevel.READ_ONLY:
            raise Unavailable("writes are paused: the platform is read-only (level 4)",
                              settings.INGEST_RETRY_AFTER_S)
        return True

    def has_object_permission(self, request, view, obj) -> bool:
        return True
