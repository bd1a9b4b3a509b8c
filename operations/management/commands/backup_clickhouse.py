"""Back up the platform's ClickHouse database now (celery beat does it daily)."""

from django.core.management.base import BaseCommand, CommandError

from operations.services import backups


class Command(BaseCommand):
    help = "Back up every ClickHouse table; prints the run id."

    def add_arguments(self, parser):
        parser.add_argument("--prune", action="store_true", help="then remove expired backups")

    def handle(self, *args, prune: bool, **options):
        run = backups.backup()
        if run.status != run.Status.SUCCEEDED:
            raise CommandError(f"backup {run.pk} failed: {run.error}")
        self.stdout.write(f"backup {run.pk}: {len(run.tables)} tables, {run.rows} rows, "
                          f"{run.bytes} bytes at {run.location}")
        if prune:
            self.stdout.write(f"pruned: {backups.prune() or 'none'}")
