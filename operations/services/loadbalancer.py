"""HAProxy in front of several API processes: its config, made from settings.

The API keeps no state between requests (keys, rate limits and caches live in PostgreSQL
and Redis), so any instance can answer any request; HAProxy spreads them round robin and
takes an instance out while its /health/live check fails.
"""

from django.conf import settings


def instance_ports(api_port: int | None = None, instances: int | None = None) -> list[int]:
    """The loopback port of each gunicorn instance behind HAProxy."""
    api_port = settings.API_PORT if api_port is None else api_port
    instances = settings.API_INSTANCES if instances is None else instances
    first = api_port + settings.API_INSTANCE_PORT_OFFSET
    return [first + i for i in range(instances)]


def haproxy_config(*, listen_port: int, server_ports: list[int], stats_port: int,
                   host: str = "127.0.0.1") -> str:
    """HAProxy's configuration: `listen_port` on `host` spread over `server_ports`."""
    servers = "\n".join(f"    server api-{n} 127.0.0.1:{port} check"
                        for n, port in enumerate(server_ports, start=1))
    checks = (f"inter {settings.HAPROXY_CHECK_INTERVAL_MS}ms fall {settings.HAPROXY_CHECK_FALL}"
              f" rise {settings.HAPROXY_CHECK_RISE}")
    return f"""\
# Made by `manage.py haproxy_config` from llmops/settings/loadbalancer.py; edit those.
global
    maxconn {settings.HAPROXY_MAXCONN}
    tune.bufsize {settings.HAPROXY_BUFFER_BYTES}
    log stdout format raw local0 notice

defaults
    mode http
    log global
    option dontlognull
    timeout connect {settings.HAPROXY_TIMEOUT_CONNECT_MS}ms
    timeout client {settings.HAPROXY_TIMEOUT_CLIENT_MS}ms
    timeout server {settings.HAPROXY_TIMEOUT_SERVER_MS}ms
    timeout http-request {settings.HAPROXY_TIMEOUT_CLIENT_MS}ms

frontend api
    bind {host}:{listen_port}
    # The whole body before an instance is picked: a slow client holds no gunicorn worker,
    # and the request is there to be sent again.
    option http-buffer-request
    # The API then knows a request came through a proxy: /metrics, open to loopback only,
    # wants its token through HAProxy (read it at an instance's own port instead).
    option forwardfor
    default_backend api

backend api
    balance roundrobin
    # A refused connection, a connection closed without an answer (an instance killed
    # mid-request) or no answer in time: sent again, to the other instance (redispatch on
    # every retry). Resending POST /api/v1/spans is safe: the API may have queued some of
    # its spans already, and a resent span has the same ids, so FINAL in ClickHouse keeps
    # it once (the drain's ReplacingMergeTree deduplication), as with an exporter's retry.
    retries {settings.HAPROXY_RETRIES}
    retry-on conn-failure empty-response response-timeout
    option redispatch 1
    option httpchk
    http-check send meth GET uri /health/live ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 200
    default-server {checks}
{servers}

listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /
    stats refresh 5s
"""
