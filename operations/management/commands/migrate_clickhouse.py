"""Apply the ClickHouse migrations (`--plan` shows them, `--check` fails if any is pending).

With CLICKHOUSE_CLUSTER set, the DDL is the cluster's: `<table>_local` Replicated* tables and
`<table>` Distributed tables, ON CLUSTER (see llmops.clickhouse_schema).
"""

from django.core.management.base import BaseCommand, CommandError

from llmops import clickhouse_migrations
from llmops.clickhouse_admin import cluster


class Command(BaseCommand):
    help = "Apply pending ClickHouse migrations."

    def add_arguments(self, parser):
        parser.add_argument("--plan", action="store_true", help="print pending SQL, apply none")
        parser.add_argument("--all", action="store_true", dest="everything",
                            help="with --plan: every migration's SQL, without connecting")
        parser.add_argument("--check", action="store_true", help="exit 1 if any is pending")

    def handle(self, *args, plan: bool, everything: bool, check: bool, **options):
        if everything and not plan:
            raise CommandError("--all only goes with --plan")
        if plan:
            self._print_plan(everything)
            return
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
            clickhouse_migrations.apply(migration)
            self.stdout.write(f"applied {migration.label}")

    def _print_plan(self, everything: bool) -> None:
        steps = clickhouse_migrations.plan(everything=everything)
        if not steps:
            self.stdout.write("ClickHouse migrations: none pending")
            return
        where = f"cluster '{cluster()}'" if cluster() else "one server"
        self.stdout.write(f"-- ClickHouse DDL for {where}, in order (nothing was run)\n")
        for label, statements in steps:
            self.stdout.write(f"-- {label}")
            for statement in statements:
                self.stdout.write(statement + ";\n")
