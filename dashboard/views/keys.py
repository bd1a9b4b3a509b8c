"""The org's API keys: everyone in the org sees them; only its admins issue and revoke."""

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard.access import Seat, org_page
from dashboard.models import Role
from ingestion.models import ApiKey

KEY_NAME_MAX = ApiKey._meta.get_field("name").max_length


def _page(request: HttpRequest, seat: Seat, **extra) -> HttpResponse:
    keys = ApiKey.objects.filter(org=seat.org).order_by("revoked_at", "-created_at")
    return render(request, "dashboard/keys.html", {
        "keys": keys, "can_manage": seat.allows(Role.ADMIN), "name_max": KEY_NAME_MAX,
        **extra})


@org_page
def keys(request: HttpRequest, seat: Seat) -> HttpResponse:
    return _page(request, seat)


@require_POST
@org_page(role=Role.ADMIN)
def issue(request: HttpRequest, seat: Seat) -> HttpResponse:
    name = request.POST.get("name", "").strip()
    if len(name) > KEY_NAME_MAX:
        return _page(request, seat, name_error=f"name: at most {KEY_NAME_MAX} characters")
    key, raw = ApiKey.issue(seat.org, name=name)
    # Answered on this response only (no redirect, no message in the session): the secret
    # is stored nowhere but in the person's clipboard.
    response = _page(request, seat, new_key=key, secret=raw)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@org_page(role=Role.ADMIN)
def revoke(request: HttpRequest, seat: Seat, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id, org=seat.org)  # another org's: not found
    if key.is_active:
        key.revoke()
        messages.success(request, f"Revoked key {key.prefix}… ({key.name or 'unnamed'}); "
                                  f"it stops working within {settings.API_KEY_CACHE_TTL_S} s.")
    return redirect("dashboard:keys")
