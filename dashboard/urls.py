"""The dashboard's pages, mounted at the site's root."""

from django.urls import path

from dashboard.charts import views as charts
from dashboard.views import account, keys, sessions, trace, traces

app_name = "dashboard"

urlpatterns = [
    path("", account.home, name="home"),
    path("sign-in/", account.SignInView.as_view(), name="sign-in"),
    path("sign-out/", account.SignOutView.as_view(), name="sign-out"),
    path("org/", account.switch, name="switch-org"),
    path("traces/", traces.traces, name="traces"),
    # Ids may hold any character: a trace's is the rest of the path, the others are queries.
    path("traces/<path:trace_id>", trace.trace, name="trace"),
    path("span/", trace.trace_span, name="trace-span"),
    path("sessions/", sessions.sessions, name="sessions"),
    path("session/", sessions.session, name="session"),
    path("session/turn", sessions.session_turn, name="session-turn"),
    path("keys/", keys.keys, name="keys"),
    path("keys/issue", keys.issue, name="key-issue"),
    path("keys/<int:key_id>/revoke", keys.revoke, name="key-revoke"),
    path("overview/", charts.overview, name="overview"),
    path("costs/", charts.costs, name="costs"),
    path("quality/", charts.quality, name="quality"),
    path("operations/", charts.operations, name="operations"),
]
