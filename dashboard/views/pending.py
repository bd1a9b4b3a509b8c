"""Placeholders for the pages the charts part of issue 13 builds (overview, costs, quality,
operations): the nav can name them now; each line in urls.py is replaced by the real view."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard.access import Seat, org_page


def placeholder(page: str):
    @org_page
    def view(request: HttpRequest, seat: Seat) -> HttpResponse:
        return render(request, "dashboard/coming_soon.html", {"page": page})

    return view
