"""Apply the ClickHouse migrations (`--plan` shows them, `--check` fails if any is pending)."""

from django.core.management.base import BaseCommand, CommandError

from llmops import clickhouse_migrations


class Command(BaseCommand):
    help = "Apply pending ClickHouse migrations."

    def add_arguments(self, parser):
        parser.add_argument("--plan", action="store_true", help="print pending SQL, apply none")
        parser.add_argument("--check", action="store_true", help="exit 1 if any is pending")

    def handle(self, *args, plan: bool, check: bool, **options):
        pending = clickhouse_migrations.pending()
        if check:
            if pending:
                names = ", ".join(migration.label for migration in pending)
                raise CommandError(f"{len(pending)} ClickHouse migration(s) pending: {names}")
            self.stdout.write("ClickHouse migrations: none pending")
            return
        if not pending:
            self.stdout.write("ClickHouse migrations: none pending")
            return
        for migration in pending:
            if plan:
                self.stdout.write(f"-- {migration.label}")
                for statement in migration.statements() + migration.backfill_statements():
                    self.stdout.write(statement + ";\n")
                continue
            clickhouse_migrations.apply(migration)
            self.stdout.write(f"applied {migration.label}")
