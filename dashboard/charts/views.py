"""The chart pages: thin. What they show comes from dashboard.charts.services, always for the
signed-in user's current org; Operations is for staff only (404 to anyone else, as for a
page that does not exist)."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard.access import Seat, org_page
from dashboard.charts import services
from dashboard.charts.services import COST_GROUPS, WINDOWS


def _page(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """The whole page, or only its body for an htmx request (the window or grouping changed:
    the selector swaps the body in and pushes the URL, so it can still be shared)."""
    body = f"dashboard/charts/{template}_body.html"
    name = body if request.headers.get("HX-Request") else f"dashboard/charts/{template}.html"
    return render(request, name, {**context, "body_template": body, "windows": list(WINDOWS)})


@org_page
def overview(request: HttpRequest, seat: Seat) -> HttpResponse:
    org = seat.org
    win = services.window(request.GET.get("window"))
    return _page(request, "overview", {"org": org, "win": win,
                                       "page": services.overview(org.id, win)})


@org_page
def costs(request: HttpRequest, seat: Seat) -> HttpResponse:
    org = seat.org
    win = services.window(request.GET.get("window"))
    page = services.costs(org.id, win, request.GET.get("group_by", "model"))
    return _page(request, "costs", {"org": org, "win": win, "page": page,
                                    "groups": COST_GROUPS})


@org_page
def quality(request: HttpRequest, seat: Seat) -> HttpResponse:
    org = seat.org
    win = services.window(request.GET.get("window"))
    return _page(request, "quality", {"org": org, "win": win,
                                      "page": services.quality(org.id, win)})


@org_page
def operations(request: HttpRequest, seat: Seat) -> HttpResponse:
    if not request.user.is_staff:
        raise Http404("no such page")
    return _page(request, "operations", {"org": seat.org, "page": services.operations()})
