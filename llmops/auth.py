"""API-key authentication: the org of a request comes from its key, and only there.
`Bearer <secret>`, or `Basic base64(public id:secret)` as Langfuse SDKs send it."""

import base64
import binascii
import time

from django.conf import settings
from rest_framework import authentication, exceptions
from rest_framework.permissions import SAFE_METHODS

from ingestion.models import ApiKey, hash_key
from ingestion.services.tenancy import OrgContext, org_for_key
from llmops.api_errors import Unavailable
from operations.models import DegradationLevel
from operations.services.degradation import current_level


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"
    # secret's hash -> (read at, its key's public id): Basic checks the pair on every request.
    _public_ids: dict[str, tuple[float, str | None]] = {}

    def authenticate(self, request) -> tuple[OrgContext, str]:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw_key = header.partition(" ")
        if not header:
            raise exceptions.NotAuthenticated("missing `Authorization: Bearer <api key>` header")
        public_id = None
        if scheme.lower() == "basic" and raw_key.strip():
            public_id, raw_key = self.basic_credentials(raw_key.strip())
        elif scheme.lower() != "bearer" or not raw_key.strip():
            raise exceptions.AuthenticationFailed(
                "Authorization must be `Bearer <api key>` or `Basic base64(public key:api key)`")
        org = org_for_key(raw_key.strip())
        if org is None:
            raise exceptions.AuthenticationFailed("invalid or revoked API key")
        if public_id is not None and public_id != self.public_id_of(raw_key.strip()):
            raise exceptions.AuthenticationFailed(
                f"public key {public_id[:64]!r} does not belong to this secret key")
        return org, raw_key

    @staticmethod
    def basic_credentials(encoded: str) -> tuple[str, str]:
        """(public id, secret) of `Basic` credentials."""
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise exceptions.AuthenticationFailed(
                "Basic credentials must be base64 of `public key:secret key`") from exc
        public_id, colon, secret = decoded.partition(":")
        if not colon or not secret.strip():
            raise exceptions.AuthenticationFailed(
                "Basic credentials must be base64 of `public key:secret key`")
        return public_id.strip(), secret

    @classmethod
    def public_id_of(cls, raw_key: str) -> str | None:
        # Cached like the key's org (API_KEY_CACHE_TTL_S); only keys that authenticated get here.
        digest = hash_key(raw_key)
        now = time.monotonic()
        hit = cls._public_ids.get(digest)
        if hit and now - hit[0] < settings.API_KEY_CACHE_TTL_S:
            return hit[1]
        public_id = (ApiKey.objects.filter(key_hash=digest)
                     .values_list("public_id", flat=True).first())
        if len(cls._public_ids) > 10_000:
            cls._public_ids.clear()
        cls._public_ids[digest] = (now, public_id)
        return public_id

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
