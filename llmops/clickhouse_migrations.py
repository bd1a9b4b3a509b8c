"""Numbered ClickHouse migrations, one module each: `<app>/clickhouse_migrations/NNNN_name.py`.

A module holds `operations`: a list of SQL strings, or objects with a `create()` method
returning statements (so DDL is generated from the settings at the time it runs). It may
also hold `backfill`: objects with a `backfill()` method (a MaterializedView), whose
INSERT ... SELECT runs once after the DDL, so a new view also covers the rows before it.
Numbers are unique across the project and migrations run in number order; applied ones are
recorded in the `clickhouse_migrations` table.
"""

import importlib
import pkgutil
import re
from dataclasses import dataclass

from django.apps import apps

from llmops.clickhouse import ensure_database, get_client
from llmops.clickhouse_schema import Table

MODULE_NAME = re.compile(r"^(\d{4})_\w+$")
LEDGER = Table(
    name="clickhouse_migrations",
    columns="name String,\napplied_at DateTime64(3, 'UTC') DEFAULT now64(3)",
    engine="ReplacingMergeTree(applied_at)",
    order_by="name",
    shard_key="cityHash64(name)",
)


@dataclass(frozen=True)
class Migration:
    number: int
    app: str
    name: str
    module: object

    @property
    def label(self) -> str:
        return f"{self.app}.{self.name}"

    def statements(self) -> list[str]:
        result = []
        for operation in self.module.operations:
            result.extend([operation] if isinstance(operation, str) else operation.create())
        return result

    def backfill_statements(self) -> list[str]:
        return [s for view in getattr(self.module, "backfill", []) for s in view.backfill()]


def discover() -> list[Migration]:
    """Every migration of every installed app, in number order."""
    found = []
    for config in apps.get_app_configs():
        package_name = f"{config.name}.clickhouse_migrations"
        try:
            package = importlib.import_module(package_name)
        except ModuleNotFoundError as exc:
            if exc.name != package_name:
                raise
            continue
        for info in pkgutil.iter_modules(package.__path__):
            match = MODULE_NAME.match(info.name)
            if match:
                module = importlib.import_module(f"{package_name}.{info.name}")
                found.append(Migration(int(match.group(1)), config.label, info.name, module))
    return sorted(found, key=lambda migration: migration.number)


def applied() -> set[str]:
    client = get_client()
    for statement in LEDGER.create():
        client.command(statement)
    return {row[0] for row in client.query(f"SELECT name FROM {LEDGER.name} FINAL").result_rows}


def pending() -> list[Migration]:
    ensure_database()
    done = applied()
    return [migration for migration in discover() if migration.label not in done]


def apply(migration: Migration) -> None:
    client = get_client()
    for statement in migration.statements():
        client.command(statement)
    # If this fails the migration stays pending and runs again: a backfilled target must
    # therefore tolerate rows inserted twice (see ingestion's trace_index).
    for statement in migration.backfill_statements():
        client.command(statement)
    client.insert(LEDGER.name, [[migration.label]], column_names=["name"])
