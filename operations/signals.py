"""An operator's flag change is announced to every process once the transaction commits."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from operations.models import ConfigFlag
from operations.services.flags import flags_changed


@receiver([post_save, post_delete], sender=ConfigFlag)
def announce_flag_change(**kwargs) -> None:
    transaction.on_commit(flags_changed)
