from django.apps import AppConfig


class IngestionConfig(AppConfig):
    name = "ingestion"
    verbose_name = "Ingestion"

    def ready(self) -> None:
        from ingestion import gauges
        from llmops.metrics import register_gauges

        register_gauges(gauges.lag_gauges)
        register_gauges(gauges.dead_letter_gauges)
