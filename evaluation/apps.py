from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"
    verbose_name = "Evaluation"

    def ready(self) -> None:
        from evaluation import signals  # noqa: F401
        from evaluation.services.breakers import on_close
        from evaluation.services.replay import request_replay

        on_close(request_replay)
