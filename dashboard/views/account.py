"""Sign-in, sign-out, the org switcher, and the landing page."""

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from dashboard.access import Seat, org_page, switch_org


class SignInView(auth_views.LoginView):
    template_name = "dashboard/sign_in.html"
    redirect_authenticated_user = True


class SignOutView(auth_views.LogoutView):
    pass


@org_page
def home(request: HttpRequest, seat: Seat) -> HttpResponse:
    return redirect("dashboard:traces")


@require_POST
@org_page
def switch(request: HttpRequest, seat: Seat) -> HttpResponse:
    try:
        org_id = int(request.POST.get("org", ""))
    except ValueError:
        return HttpResponseBadRequest("org: not an org id")
    if not switch_org(request, org_id):
        return HttpResponseBadRequest("org: you are not a member of that org")
    # Back to the section the switch was made in (pages of one object name its list, see
    # the base template's `switch_next`), without filters: those were the other org's.
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("dashboard:home")
    return redirect(target.split("?", 1)[0])
