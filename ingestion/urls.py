from django.urls import path

from ingestion.query.views import (
    MetricsView,
    SessionView,
    SpansEndpoint,
    TraceListView,
    TraceView,
)

urlpatterns = [
    path("spans", SpansEndpoint.as_view(), name="spans"),  # POST ingests, GET searches
    path("traces", TraceListView.as_view(), name="traces"),
    path("traces/<str:trace_id>", TraceView.as_view(), name="trace"),
    path("sessions/<str:session_id>", SessionView.as_view(), name="session"),
    path("metrics", MetricsView.as_view(), name="metrics"),
]
