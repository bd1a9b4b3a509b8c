"""Shorten (or restore) how many days spans are kept, e.g. when storage passes 90 %."""

import getpass

from django.core.management.base import BaseCommand

from operations.services.retention import set_spans_ttl


class Command(BaseCommand):
    help = "Set the spans' TTL in days; recorded with the reason."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, required=True)
        parser.add_argument("--reason", required=True)

    def handle(self, *args, days: int, reason: str, **options):
        for change in set_spans_ttl(days=days, reason=reason,
                                    changed_by=f"command ({getpass.getuser()})"):
            self.stdout.write(f"{change.table}: TTL {change.days} days")
