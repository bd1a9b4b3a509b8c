"""URL routes: admin, API v1, OpenAPI docs, health."""

from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from health_check.views import HealthCheckView

from operations.health import READINESS_CHECKS


def liveness(request):
    # No dependency is touched: the process answers, so it is alive.
    return HttpResponse("ok\n", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("ingestion.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("health/", HealthCheckView.as_view(checks=READINESS_CHECKS), name="health"),
    path("health/live", liveness, name="health-live"),
]
