"""The dashboard's pages, mounted at the site's root."""

from django.urls import path

from dashboard.charts import views as charts
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
    path("overview/", charts.overview, name="overview"),
    path("costs/", charts.costs, name="costs"),
    path("quality/", charts.quality, name="quality"),
    path("operations/", charts.operations, name="operations"),
]
