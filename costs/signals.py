"""Every committed change to a price is announced, so each process drops its cached prices."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from costs.models import Price


@receiver([post_save, post_delete], sender=Price, dispatch_uid="costs.price_changed")
def price_changed(**kwargs) -> None:
    from costs.services.pricing import pricing_changed

    # After the commit: a process that reloaded before it would keep the old price for an hour.
    transaction.on_commit(pricing_changed)
