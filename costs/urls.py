from django.urls import path

from costs.views import CostReportView

urlpatterns = [
    path("costs", CostReportView.as_view(), name="costs"),
]
