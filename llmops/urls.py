"""URL routes: admin, API v1, OpenAPI docs, health, metrics, and the dashboard at the root."""

from django.conf import settings
from django.contrib import admin
from django.http import HttpResponse, JsonResponse
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)
from health_check.views import HealthCheckView

from llmops.metrics import render
from operations.access import metrics_allowed
from operations.health import readiness_checks


def metrics(request):
    if not metrics_allowed(request):
        return JsonResponse({"detail": "metrics are served to loopback or with the bearer "
                                       "token METRICS_TOKEN"}, status=403)
    body, content_type = render()
    return HttpResponse(body, content_type=content_type)


def liveness(request):
    # No dependency is touched: the process answers, so it is alive.
    return HttpResponse("ok\n", content_type="text/plain")


# The admin says whose it is, not "Django administration".
admin.site.site_header = f"{settings.PRODUCT_NAME} administration"
admin.site.site_title = f"{settings.PRODUCT_NAME} admin"
admin.site.index_title = "Operations, keys, prices and evaluators"

# Under /api/ and /v1/ every error is JSON with a `detail`; elsewhere Django's pages.
handler400 = "llmops.api_errors.bad_request"
handler403 = "llmops.api_errors.permission_denied"
handler404 = "llmops.api_errors.page_not_found"
handler500 = "llmops.api_errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("ingestion.urls")),
    path("api/v1/", include("costs.urls")),
    path("api/v1/", include("evaluation.urls")),
    # Langfuse's public API as its SDKs call it: /ingestion, /scores, /projects.
    path("api/public/", include("ingestion.langfuse.urls")),
    # OTLP/HTTP traces at /v1/traces and at Langfuse's /api/public/otel/v1/traces.
    path("", include("ingestion.otlp.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema",
                                                     template_name="llmops/redoc.html"),
         name="redoc"),
    path("health/", HealthCheckView.as_view(checks=readiness_checks()), name="health"),
    path("health/live", liveness, name="health-live"),
    path("metrics", metrics, name="metrics"),
    path("", include("dashboard.urls")),
]
