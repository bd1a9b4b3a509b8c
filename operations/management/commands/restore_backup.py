"""Restore a ClickHouse backup by id and verify its row counts and checksums."""

from django.core.management.base import BaseCommand, CommandError

from operations.models import BackupRun
from operations.services import backups


class Command(BaseCommand):
    help = "Restore backup <id> into its own database (tables dropped) or --into another."

    def add_arguments(self, parser):
        parser.add_argument("backup_id", type=int)
        parser.add_argument("--into", default=None, help="target database (default: its own)")

    def handle(self, *args, backup_id: int, into: str | None, **options):
        try:
            run = BackupRun.objects.get(pk=backup_id)
        except BackupRun.DoesNotExist as exc:
            raise CommandError(f"no backup {backup_id}") from exc
        try:
            found = backups.restore(run, into=into)
        except Exception as exc:
            raise CommandError(f"restore of backup {backup_id} failed: {exc}") from exc
        for name, facts in sorted(found.items()):
            self.stdout.write(f"{name}: {facts['rows']} rows, checksum {facts['checksum']} ok")
        self.stdout.write(f"restored backup {backup_id} into {into or run.database}: verified")
