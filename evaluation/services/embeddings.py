"""Embeddings for similarity scores, cached in Redis by content hash; while the embedding API
is out (breaker open, calls failing) a cached one up to EMBEDDING_CACHE_STALE_MS old is used
(seed fallback USE_CACHED_EMBEDDING)."""

import hashlib
import math
import struct
import time
from dataclasses import dataclass

from django.conf import settings

from evaluation.services import provider
from evaluation.services.breakers import BreakerOpen
from evaluation.services.provider import MalformedAnswer, ProviderError
from evaluation.services.ratelimit import RateLimitWaitTooLong
from llmops.redis import get_redis

_STAMP = struct.Struct("<d")  # cached_at (epoch seconds), then the vector as float32


@dataclass(frozen=True)
class Embedding:
    vector: list[float]
    stale: bool = False  # served from the cache as the fallback


def cache_key(model: str, text: str) -> str:
    # By content only: the same text has the same embedding in every org (seed: embeddings
    # are sharded by their hash).
    digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return f"embedding:{model}:{digest}"


def _cached(key: str) -> tuple[float, list[float]] | None:
    raw = get_redis().get(key)
    if raw is None:
        return None
    (cached_at,) = _STAMP.unpack_from(raw)
    vector = list(struct.unpack_from(f"<{(len(raw) - _STAMP.size) // 4}f", raw, _STAMP.size))
    return (time.time() - cached_at) * 1000, vector


def embed(*, text: str, org_id: int) -> Embedding:
    model = settings.EMBEDDING_MODEL
    key = cache_key(model, text)
    cached = _cached(key)
    if cached and cached[0] <= settings.EMBEDDING_CACHE_FRESH_MS:
        return Embedding(cached[1])
    try:
        answer = provider.post(provider.EMBEDDINGS, "/embeddings",
                               {"model": model, "input": text}, org_id=org_id)
    except (BreakerOpen, ProviderError, RateLimitWaitTooLong):
        if cached and cached[0] <= settings.EMBEDDING_CACHE_STALE_MS:
            return Embedding(cached[1], stale=True)
        raise
    try:
        vector = [float(x) for x in answer["data"][0]["embedding"]]
    except (KeyError, IndexError, TypeError, ValueError):
        raise MalformedAnswer("no data[0].embedding list of numbers in the answer") from None
    if not vector:
        raise MalformedAnswer("the embedding is empty")
    body = _STAMP.pack(time.time()) + struct.pack(f"<{len(vector)}f", *vector)
    get_redis().set(key, body, px=int(settings.EMBEDDING_CACHE_STALE_MS))
    return Embedding(vector)


def cosine(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        raise MalformedAnswer(f"embeddings of different sizes ({len(a)} and {len(b)})")
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0
