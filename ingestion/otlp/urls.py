from django.urls import path

from ingestion.otlp.views import OtlpTracesView

urlpatterns = [
    # The spec's path, and Langfuse's (its SDKs append it to their host).
    path("v1/traces", OtlpTracesView.as_view(), name="otlp-traces"),
    path("api/public/otel/v1/traces", OtlpTracesView.as_view(), name="otlp-traces-langfuse"),
]
