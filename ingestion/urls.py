from django.urls import path

from ingestion.views import SpansView

urlpatterns = [
    path("spans", SpansView.as_view(), name="spans"),
]
