from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = "Operations"

    def ready(self) -> None:
        from llmops.metrics import register_gauges
        from operations import gauges, signals  # noqa: F401  (signals connects receivers)

        register_gauges(gauges.degradation_gauges)
