"""Numbered ClickHouse migrations, one module each: `<app>/clickhouse_migrations/NNNN_name.py`.

A module holds `operations`: a list of SQL strings, or objects with a `create()` method
returning statements (so DDL is generated from the settings at the time it runs). It may
also hold `backfill`: objects with a `backfill()` method (a MaterializedView), whose
INSERT ... SELECT runs once after the DDL, so a new view also covers the rows before it.
Numbers are unique across the project and migrations run in number order; applied ones are
recorded in the `clickhouse_migrations` table.

With CLICKHOUSE_CLUSTER set the same objects generate the cluster's DDL (local Replicated*
tables, Distributed tables, views between local tables, all ON CLUSTER): a raw SQL string
cannot be translated, so on a cluster a migration must describe its DDL with objects.
"""

import importlib
import pkgutil
import re
from dataclasses import dataclass

from django.apps import apps

from llmops.clickhouse import database, ensure_database, get_client, new_client
from llmops.clickhouse_admin import cluster, create_database
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
            if isinstance(operation, str) and cluster():
                raise ValueError(f"{self.label}: a SQL string has no cluster form; describe it"
                                 " with Table, MaterializedView or Alter (clickhouse_schema)")
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


def recorded() -> set[str] | None:
    """What the ledger records, creating nothing; None when there is no ledger (or no
    database) yet, i.e. nothing was applied."""
    admin = new_client(database="default")
    try:
        exists = admin.query(
            "SELECT count() FROM system.tables WHERE database = {db:String}"
            " AND name = {name:String}",
            parameters={"db": database(), "name": LEDGER.name}).result_rows[0][0]
        if not exists:
            return None
        return {row[0] for row in admin.query(
            f"SELECT name FROM `{database()}`.{LEDGER.name} FINAL").result_rows}
    finally:
        admin.close()


def plan(*, everything: bool = False) -> list[tuple[str, list[str]]]:
    """The DDL migrate would run, as (label, statements), without running any: the pending
    migrations (the server is asked which), or with `everything` all of them, the database
    and the ledger included, without connecting."""
    done = None if everything else recorded()
    steps = []
    if done is None:
        steps.append(("database and ledger", create_database(database()) + LEDGER.create()))
        done = set()
    for migration in discover():
        if migration.label not in done:
            steps.append((migration.label,
                          migration.statements() + migration.backfill_statements()))
    return steps


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
