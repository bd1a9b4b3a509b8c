"""Django core: apps, database, REST framework, logging."""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from llmops.local_secrets import local_secret

from .env import env

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# Every data directory and download of the single-machine stack lives here (git-ignored).
VAR_DIR = Path(env("LLMOPS_VAR_DIR", str(BASE_DIR / "var")))

# Production sets DJANGO_SECRET_KEY. Without it a single machine (`make run`) uses a key
# generated once under var/ (mode 0600): no key printed in the source signs its sessions.
INSECURE_SECRET_KEYS = {"dev-only-insecure-key-change-me-in-production"}
try:
    SECRET_KEY = env("DJANGO_SECRET_KEY", "") or local_secret(VAR_DIR / "secret_key", 50)
except OSError as exc:
    raise ImproperlyConfigured(f"set DJANGO_SECRET_KEY (none could be kept under {VAR_DIR}: "
                               f"{exc})") from exc
DEBUG = env("DJANGO_DEBUG", False)
if not DEBUG and SECRET_KEY in INSECURE_SECRET_KEYS:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY is the published development key; set a "
                               "secret one (or unset it to use a generated var/secret_key)")
ALLOWED_HOSTS = env("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc as static files: no CDN at page load
    "health_check",
    "operations",
    "ingestion",
    "costs",
    "evaluation",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's static files under gunicorn, with no web server in front.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "llmops.urls"
WSGI_APPLICATION = "llmops.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "llmops" / "templates"],  # the project's own (the Redoc page)
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite under var/ by default (one machine); PostgreSQL in tests and production.
DATABASE_URL = env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'llmops.sqlite3'}")
# Health checks: a connection kept across requests that died with a database restart is
# replaced before use instead of failing the request.
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60,
                                              conn_health_checks=True)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# The product's name where people read it: the admin's header and title, the docs.
PRODUCT_NAME = env("PRODUCT_NAME", "llmops")

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"  # filled by `collectstatic` (make run, the image, the tests)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names (base.<hash>.css) and gzip beside them: WhiteNoise serves a hashed file
    # with `Cache-Control: max-age=315360000, public, immutable`, so a CDN in front can keep
    # it for good; a new version has a new name. Templates need the manifest collectstatic
    # writes (a {% static %} of a file not collected is an error, not a broken link).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "llmops.api_errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LLMOps trace platform API",
    "DESCRIPTION": "Ingest LLM spans, read traces, costs and quality scores back.",
    "VERSION": "1.0.0",
    # /api/docs/ and /api/redoc/ load their scripts from our static files (the pinned
    # drf-spectacular-sidecar package), never from a CDN: they work on a machine offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Two choice sets share the field name `status`: name each (spans', scores').
    "ENUM_NAME_OVERRIDES": {"SpanStatusEnum": ["ok", "error"],
                            "ScoreStatusEnum": ["ok", "skipped", "failed", "fallback"]},
}

LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"kafka": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}
