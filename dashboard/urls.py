"""The dashboard's pages, mounted at the site's root."""

from django.urls import path

from dashboard.views import account, pending

app_name = "dashboard"

urlpatterns = [
    path("", account.home, name="home"),
    path("sign-in/", account.SignInView.as_view(), name="sign-in"),
    path("sign-out/", account.SignOutView.as_view(), name="sign-out"),
    path("org/", account.switch, name="switch-org"),
    path("traces/", pending.placeholder("Traces"), name="traces"),
    path("sessions/", pending.placeholder("Sessions"), name="sessions"),
    path("keys/", pending.placeholder("API keys"), name="keys"),
    # The charts part of issue 13 replaces these four lines with its pages.
    path("overview/", pending.placeholder("Overview"), name="overview"),
    path("costs/", pending.placeholder("Costs"), name="costs"),
    path("quality/", pending.placeholder("Quality"), name="quality"),
    path("operations/", pending.placeholder("Operations"), name="operations"),
]
