"""Restore a ClickHouse backup by id and verify its row counts and checksums."""

from django.core.management.base import BaseCommand, CommandError

from operations.models import BackupRun
from operations.services import backups

HELP = """Restore ClickHouse backup <id> (see the Backup runs in the admin, or the id that
backup_clickhouse printed) and verify it: after the restore, every table's rows and
checksum, computed on deduplicated content (FINAL), must equal the figures recorded when
the backup was taken, else the command fails.

--into DB restores into another database DB (created if missing); the tables and views the
backup holds must not exist there. Nothing else is touched.

Without --into the backup replaces the live database it came from: the command lists every
table and view it would DROP and recreate, with the rows each holds now beside the rows in
the backup, and refuses (exit status 1, nothing changed) unless --yes is given. With --yes
it drops them (views first) and restores them from the backup; rows written after the
backup was taken are lost. Stop the ingest worker first: spans drained while the tables are
being replaced land in tables that are then dropped, or wait until the restore ends."""


class Command(BaseCommand):
    help = HELP

    def create_parser(self, prog_name, subcommand, **kwargs):
        from argparse import RawDescriptionHelpFormatter

        return super().create_parser(prog_name, subcommand,
                                     formatter_class=RawDescriptionHelpFormatter, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("backup_id", type=int)
        parser.add_argument("--into", default=None,
                            help="restore into this database instead (it must not hold the "
                                 "backup's tables)")
        parser.add_argument("--yes", action="store_true",
                            help="confirm replacing the live database's tables (needed "
                                 "without --into)")

    def handle(self, *args, backup_id: int, into: str | None, yes: bool, **options):
        try:
            run = BackupRun.objects.get(pk=backup_id)
        except BackupRun.DoesNotExist as exc:
            raise CommandError(f"no backup {backup_id}") from exc
        replace = into is None or into == run.database
        if replace:
            self._describe(run)
            if not yes:
                raise CommandError(
                    f"refusing to replace the tables of {run.database} without --yes "
                    "(nothing changed); or restore elsewhere with --into <database>")
        try:
            found = backups.restore(run, into=into, replace=replace)
        except Exception as exc:
            raise CommandError(f"restore of backup {backup_id} failed: {exc}") from exc
        for name, facts in sorted(found.items()):
            self.stdout.write(f"{name}: {facts['rows']} rows, checksum {facts['checksum']} ok")
        self.stdout.write(f"restored backup {backup_id} into {into or run.database}: verified")

    def _describe(self, run: BackupRun) -> None:
        self.stdout.write(
            f"backup {run.pk} (taken {run.started_at:%Y-%m-%d %H:%M:%S} UTC) replaces in "
            f"database {run.database}:")
        for item in backups.replacement_plan(run):
            now = ("absent, created" if not item.exists else
                   "view" if item.current_rows is None else f"{item.current_rows} rows now")
            held = "" if item.backup_rows is None else f", {item.backup_rows} in the backup"
            self.stdout.write(f"  {item.name} ({item.engine}): {now}{held}")
