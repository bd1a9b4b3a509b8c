from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"
    verbose_name = "Evaluation"

    def ready(self) -> None:
        from evaluation import gauges, signals  # noqa: F401
        from evaluation.services.breakers import on_close
        from evaluation.services.dispatch import batch_stored
        from evaluation.services.replay import request_replay
        from ingestion.services.batches import on_batch_stored
        from llmops.metrics import register_gauges

        on_close(request_replay)
        on_batch_stored(batch_stored)
        register_gauges(gauges.queue_gauges)
        register_gauges(gauges.breaker_gauges)
