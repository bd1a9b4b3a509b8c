"""Tenants and their credentials. The org of every read and write comes from the API key."""

import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

KEY_PREFIX = "llm"
# The public half of a key pair, as Langfuse clients send it (Basic public:secret).
PUBLIC_ID_PREFIX = "pk-llm-"


def new_public_id() -> str:
    return f"{PUBLIC_ID_PREFIX}{uuid.uuid4()}"


def hash_key(raw_key: str) -> str:
    # Keys are 190 random bits: a fast hash is enough, a slow password hash would only cost.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class Org(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    ingest_rate_limit = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Spans per rate window (RATE_LIMIT_WINDOW_S); empty: the platform default.",
    )
    sample_rate = models.FloatField(
        default=1.0, help_text="Share of traces kept, from 0 to 1, decided on the trace id."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug

    @property
    def effective_rate_limit(self) -> int:
        return self.ingest_rate_limit or settings.INGEST_DEFAULT_ORG_RATE_LIMIT


class ApiKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    # The first characters, shown in the admin so an operator can tell keys apart.
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # Not a secret: names the key next to its secret (`Basic base64(public:secret)`, as
    # Langfuse SDKs send it); the secret alone authenticates.
    public_id = models.CharField(max_length=64, unique=True, editable=False,
                                 default=new_public_id)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.org.slug})"

    @classmethod
    def issue(cls, org: Org, name: str = "") -> tuple["ApiKey", str]:
        """Create a key; the secret is returned once and only its hash is stored."""
        raw = f"{KEY_PREFIX}_{secrets.token_urlsafe(24)}"
        key = cls.objects.create(org=org, name=name, prefix=raw[:10], key_hash=hash_key(raw))
        return key, raw

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
