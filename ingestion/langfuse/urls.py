from django.urls import path

from ingestion.langfuse.views import IngestionView, ProjectsView, PublicScoresView

urlpatterns = [
    path("ingestion", IngestionView.as_view(), name="langfuse-ingestion"),
    path("scores", PublicScoresView.as_view(), name="langfuse-scores"),
    path("projects", ProjectsView.as_view(), name="langfuse-projects"),
]
