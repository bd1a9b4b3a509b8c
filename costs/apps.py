from django.apps import AppConfig


class CostsConfig(AppConfig):
    name = "costs"
    verbose_name = "Costs"

    def ready(self) -> None:
        from costs import signals  # noqa: F401  (connects the receivers)
        from costs.services.reports import batch_stored
        from ingestion.services.batches import on_batch_stored

        on_batch_stored(batch_stored)
