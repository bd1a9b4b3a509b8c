"""Several API processes behind HAProxy (`API_INSTANCES=2 make run`, or a fleet elsewhere)."""

from .env import env

# gunicorn instances `make run` starts; above 1, HAProxy takes API_PORT and instance i
# listens on API_PORT + API_INSTANCE_PORT_OFFSET + i (loopback only).
API_INSTANCES = env("API_INSTANCES", 1)
API_PORT = env("API_PORT", 8000)
API_INSTANCE_PORT_OFFSET = env("API_INSTANCE_PORT_OFFSET", 10)
# HAProxy's stats page (CSV at /;csv): per server state, sessions and responses; loopback.
HAPROXY_STATS_PORT = env("HAPROXY_STATS_PORT", API_PORT + 9)
# Health checks on /health/live: a dead instance is out after FALL failed checks (2 s at
# these values) and back after RISE good ones; retries cover the requests in between.
HAPROXY_CHECK_INTERVAL_MS = env("HAPROXY_CHECK_INTERVAL_MS", 1000)
HAPROXY_CHECK_FALL = env("HAPROXY_CHECK_FALL", 2)
HAPROXY_CHECK_RISE = env("HAPROXY_CHECK_RISE", 2)
HAPROXY_RETRIES = env("HAPROXY_RETRIES", 3)
HAPROXY_TIMEOUT_CONNECT_MS = env("HAPROXY_TIMEOUT_CONNECT_MS", 2000)
# gunicorn's worker --timeout is 60 s: an answer later than that will not come.
HAPROXY_TIMEOUT_SERVER_MS = env("HAPROXY_TIMEOUT_SERVER_MS", 60_000)
HAPROXY_TIMEOUT_CLIENT_MS = env("HAPROXY_TIMEOUT_CLIENT_MS", 60_000)
# A request is resent only if its whole body fits in one buffer: 1 MiB holds a 512-span
# exporter batch of ~2 KB spans (HAProxy's default, 16 KiB, holds about 8 spans). Each
# request in progress holds up to two buffers: MAXCONN bounds that memory (1 GiB here).
HAPROXY_BUFFER_BYTES = env("HAPROXY_BUFFER_BYTES", 1_048_576)
HAPROXY_MAXCONN = env("HAPROXY_MAXCONN", 500)
