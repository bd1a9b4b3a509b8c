from django.urls import path

from evaluation.views import ScoresView

urlpatterns = [
    path("scores", ScoresView.as_view(), name="scores"),
]
