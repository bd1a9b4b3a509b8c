"""The signed-in user's current org: every page reads through `org_page`, so every query
is bound to an org the user belongs to, and another org's objects are simply not found."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard.models import Membership, Role
from ingestion.models import Org

SESSION_ORG = "dashboard_org_id"


@dataclass(frozen=True)
class Seat:
    """Where the user sits now: the current org, their role in it, and all their orgs."""

    membership: Membership
    memberships: list[Membership]

    @property
    def org(self) -> Org:
        return self.membership.org

    @property
    def org_id(self) -> int:
        return self.membership.org_id

    @property
    def role(self) -> str:
        return self.membership.role

    def allows(self, role: str) -> bool:
        return self.membership.allows(role)


def current_seat(request: HttpRequest) -> Seat | None:
    """The membership chosen in this session, else the user's first; None without any."""
    memberships = list(Membership.objects.filter(user=request.user).select_related("org"))
    if not memberships:
        return None
    chosen = request.session.get(SESSION_ORG)
    current = next((m for m in memberships if m.org_id == chosen), memberships[0])
    if chosen != current.org_id:
        request.session[SESSION_ORG] = current.org_id
    return Seat(membership=current, memberships=memberships)


def switch_org(request: HttpRequest, org_id: int) -> bool:
    """Make `org_id` current, if the user belongs to it."""
    if not Membership.objects.filter(user=request.user, org_id=org_id).exists():
        return False
    request.session[SESSION_ORG] = org_id
    return True


def org_page(view: Callable | None = None, *, role: str = Role.VIEWER):
    """A page view taking (request, seat, ...): signed in, with a membership in the current
    org allowing `role` (else 403). Users in no org see how to get one."""

    def decorate(func: Callable) -> Callable:
        @wraps(func)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            seat = current_seat(request)
            if seat is None:
                return render(request, "dashboard/no_org.html", status=403)
            if not seat.allows(role):
                raise PermissionDenied(f"page needs the {role} role in {seat.org.slug}")
            request.seat = seat  # for the base template's org switcher and nav
            return func(request, seat, *args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate
