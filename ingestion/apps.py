from django.apps import AppConfig


class IngestionConfig(AppConfig):
    name = "ingestion"
    verbose_name = "Ingestion"

    def ready(self) -> None:
        from ingestion import gauges
        from llmops.metrics import register_gauges

        register_gauges(gauges.lag_gauges)
        register_gauges(gauges.dead_letter_gauges)
        # Imported at start-up: it logs a warning when the compiled OTLP reader is not in use.
        from ingestion.otlp import reader

        register_gauges(reader.reader_gauges)
