"""Who may read /metrics: the loopback interface (a local Prometheus or the operator), or
anyone with the METRICS_TOKEN as a bearer token. Counters name orgs' traffic and the
platform's state; they are not for the internet."""

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _loopback(request: HttpRequest) -> bool:
    # Behind a proxy on the same host every request comes from loopback: a forwarded
    # request counts as remote.
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _bearer(request: HttpRequest) -> str:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def metrics_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token and hmac.compare_digest(_bearer(request).encode(), token.encode()):
        return True
    return _loopback(request)
