"""The OTLP/HTTP traces door (POST /v1/traces): its own limits, since exporters batch big."""

from .env import env

# The OTLP specification's recommended limit, applied to the body as received and again after
# gzip/deflate (a small compressed body may inflate past it: 413 either way).
OTLP_MAX_BODY_BYTES = env("OTLP_MAX_BODY_BYTES", 64 * 1024 * 1024)
# Spans in one export (the SDK's batch processor sends 512 at most by default).
OTLP_MAX_SPANS_PER_REQUEST = env("OTLP_MAX_SPANS_PER_REQUEST", 10_000)
# A span's events are kept in its metadata (`otel.events`, JSON) up to this many bytes; past
# it the JSON is cut and marked, so an exception's stack trace cannot cost the span.
OTLP_MAX_EVENTS_BYTES = env("OTLP_MAX_EVENTS_BYTES", 64 * 1024)
# An attribute the mapping does not read is kept in metadata (`attributes.<key>`) up to this
# many characters of text; longer ones are cut and marked.
OTLP_MAX_ATTRIBUTE_CHARS = env("OTLP_MAX_ATTRIBUTE_CHARS", 4096)
