"""A saved or deleted evaluator config is announced, so every process reloads its configs."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from evaluation.models import EvaluatorConfig
from evaluation.services.matching import TOPIC, forget_cached_configs
from llmops import changes


@receiver([post_save, post_delete], sender=EvaluatorConfig)
def announce_config_change(**kwargs) -> None:
    forget_cached_configs()
    transaction.on_commit(lambda: changes.announce(TOPIC))
