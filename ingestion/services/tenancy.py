"""Who is calling: an API key resolved to its org, cached briefly in the process."""

import time
from dataclasses import dataclass

from django.conf import settings

from ingestion.models import ApiKey, hash_key


@dataclass(frozen=True)
class OrgContext:
    """What a request needs to know of its org, resolved once from the key."""

    org_id: int
    slug: str
    rate_limit: int
    sample_rate: float


_cache: dict[str, tuple[float, OrgContext | None]] = {}


def org_for_key(raw_key: str) -> OrgContext | None:
    """The org of an active key, or None. A revoked key stops working within the TTL."""
    digest = hash_key(raw_key)
    now = time.monotonic()
    hit = _cache.get(digest)
    if hit and now - hit[0] < settings.API_KEY_CACHE_TTL_S:
        return hit[1]
    key = ApiKey.objects.active().select_related("org").filter(key_hash=digest).first()
    context = None
    if key is not None:
        org = key.org
        context = OrgContext(org.id, org.slug, org.effective_rate_limit, org.sample_rate)
    if len(_cache) > 10_000:  # bounded: a flood of bad keys must not grow memory
        _cache.clear()
    _cache[digest] = (now, context)
    return context


def forget_cached_keys() -> None:
    _cache.clear()
