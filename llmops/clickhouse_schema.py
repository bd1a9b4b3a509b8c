"""ClickHouse DDL from one description, for one node or for a sharded, replicated cluster.

With CLICKHOUSE_CLUSTER empty a table is a plain MergeTree-family table named as the
application queries it. With a cluster name, the rows live in `<name>_local` (the
Replicated* form of the same engine, created ON CLUSTER on every node) and `<name>` is a
Distributed table over them, sharded by the table's shard key, so application queries do
not change. Materialized views read and write the local tables: each shard feeds its own.
"""

import re
from dataclasses import dataclass, field

from django.conf import settings

from llmops import clickhouse_admin
from llmops.clickhouse import database
from llmops.clickhouse_admin import cluster, local, on_cluster


def replica_path(table: str) -> str:
    """The table's replication log in Keeper: one per shard and table (macros expanded by
    each server from its own config)."""
    return f"/clickhouse/tables/{{shard}}/{{database}}/{table}"


def _replicated(engine: str, table: str) -> str:
    """ReplacingMergeTree(v) -> ReplicatedReplacingMergeTree('<path>', '{replica}', v)."""
    match = re.fullmatch(r"(\w*MergeTree)(?:\((.*)\))?", engine.strip(), re.S)
    if not match:
        raise ValueError(f"not a MergeTree-family engine: {engine}")
    name, args = match.group(1), (match.group(2) or "").strip()
    zk = f"'{replica_path(table)}', '{{replica}}'"
    return f"Replicated{name}({zk}{', ' + args if args else ''})"


@dataclass(frozen=True)
class Table:
    name: str
    columns: str  # column, index and projection definitions, as inside CREATE TABLE (...)
    engine: str  # the single-node engine, e.g. "ReplacingMergeTree(version)"
    order_by: str
    shard_key: str  # the design document's sharding key, e.g. "cityHash64(org_id)"
    partition_by: str = ""
    ttl: str = ""
    settings: dict = field(default_factory=dict)

    @property
    def storage_name(self) -> str:
        """Where the rows are stored on this node (what ALTERs and MVs address)."""
        return local(self.name)

    def create(self) -> list[str]:
        engine = _replicated(self.engine, self.storage_name) if cluster() else self.engine
        clauses = [f"ENGINE = {engine}"]
        if self.partition_by:
            clauses.append(f"PARTITION BY {self.partition_by}")
        clauses.append(f"ORDER BY {self.order_by}")
        if self.ttl:
            clauses.append(f"TTL {self.ttl}")
        table_settings = dict(self.settings)
        # How many recent insert tokens the table remembers (a replayed batch is dropped):
        # plain MergeTree only with a window (FACTS: a table setting, not a query setting);
        # Replicated tables have one, set to the same size.
        window = ("replicated_deduplication_window" if cluster()
                  else "non_replicated_deduplication_window")
        table_settings.setdefault(window, settings.CLICKHOUSE_DEDUP_WINDOW)
        if table_settings:
            pairs = ", ".join(f"{key} = {value}" for key, value in table_settings.items())
            clauses.append(f"SETTINGS {pairs}")
        statements = [
            f"CREATE TABLE IF NOT EXISTS {self.storage_name}{on_cluster()}\n"
            f"(\n{self.columns.strip()}\n)\n" + "\n".join(clauses)
        ]
        if cluster():
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {self.name}{on_cluster()} AS {self.storage_name}"
                f" ENGINE = Distributed('{cluster()}', `{database()}`, {self.storage_name},"
                f" {self.shard_key})"
            )
        return statements

    def alter(self, action: str) -> list[str]:
        """An ALTER on the stored table (and, for column changes, the Distributed one)."""
        return clickhouse_admin.alter(self.name, action)


@dataclass(frozen=True)
class MaterializedView:
    """Moves rows from one table into another at insert time, on each shard."""

    name: str
    source: Table
    target: Table
    select: str  # a SELECT with `{source}` where the source table goes

    def create(self) -> list[str]:
        select = self.select.format(source=self.source.storage_name)
        return [
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.name}{on_cluster()}"
            f" TO {self.target.storage_name} AS\n{select.strip()}"
        ]

    def backfill(self) -> list[str]:
        """Feed the target what the source held before the view existed. Run once, from one
        node: on a cluster it reads and writes through the Distributed tables."""
        select = self.select.format(source=self.source.name)
        return [f"INSERT INTO {self.target.name}\n{select.strip()}"]


@dataclass(frozen=True)
class Alter:
    """A migration operation altering an existing table, generated when it runs."""

    table: Table
    action: str

    def create(self) -> list[str]:
        return self.table.alter(self.action)
