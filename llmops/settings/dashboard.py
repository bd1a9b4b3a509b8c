"""The dashboard: sign-in, and user sessions in Redis (seed L2 "User Sessions": 24 h)."""

from .caching import CACHE_REDIS_URL, CACHES, SESSION_CACHE_TTL_S
from .env import env

# Sessions live in their own cache alias on the cache Redis, so a flush of query results
# (or their eviction) never signs people out, and each expires after SESSION_COOKIE_AGE.
SESSION_CACHE_ALIAS = "sessions"
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
SESSION_COOKIE_AGE = env("SESSION_COOKIE_AGE", SESSION_CACHE_TTL_S)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# Behind HTTPS (production), cookies go over HTTPS only.
SESSION_COOKIE_SECURE = env("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env("CSRF_COOKIE_SECURE", SESSION_COOKIE_SECURE)
CACHES = {**CACHES, SESSION_CACHE_ALIAS: {
    "BACKEND": "django.core.cache.backends.redis.RedisCache",
    "LOCATION": CACHE_REDIS_URL,
    "KEY_PREFIX": "llmops-session",
    "TIMEOUT": SESSION_COOKIE_AGE,
}}

LOGIN_URL = "dashboard:sign-in"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "dashboard:sign-in"

# Trace detail: text longer than this is shown folded, with its size.
DASHBOARD_FOLD_TEXT_CHARS = env("DASHBOARD_FOLD_TEXT_CHARS", 2000)
