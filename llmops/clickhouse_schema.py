"""ClickHouse DDL from one description, for one node or for a sharded, replicated cluster.

With CLICKHOUSE_CLUSTER empty a table is a plain MergeTree-family table named as the
application queries it. With a cluster name, the rows live in `<name>_shard`
(Replicated* engine on every node) and `<name>` is a Distributed table over them, sharded
by the table's shard key, so application queries do not change.
"""

import re
from dataclasses import dataclass, field

from django.conf import settings

SHARD_SUFFIX = "_shard"


def cluster() -> str:
    return settings.CLICKHOUSE_CLUSTER


def _on_cluster() -> str:
    return f" ON CLUSTER {cluster()}" if cluster() else ""


def _replicated(engine: str, table: str) -> str:
    """ReplacingMergeTree(v) -> ReplicatedReplacingMergeTree('<zk path>', '{replica}', v)."""
    match = re.fullmatch(r"(\w*MergeTree)(?:\((.*)\))?", engine.strip(), re.S)
    if not match:
        raise ValueError(f"not a MergeTree-family engine: {engine}")
    name, args = match.group(1), (match.group(2) or "").strip()
    zk = f"'/clickhouse/tables/{{shard}}/{{database}}/{table}', '{{replica}}'"
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
        return self.name + SHARD_SUFFIX if cluster() else self.name

    def create(self) -> list[str]:
        engine = _replicated(self.engine, self.storage_name) if cluster() else self.engine
        clauses = [f"ENGINE = {engine}"]
        if self.partition_by:
            clauses.append(f"PARTITION BY {self.partition_by}")
        clauses.append(f"ORDER BY {self.order_by}")
        if self.ttl:
            clauses.append(f"TTL {self.ttl}")
        table_settings = dict(self.settings)
        if not cluster():
            # Replicated tables deduplicate inserts by token already; plain MergeTree
            # only with a window (FACTS: a table setting, not a query setting).
            table_settings.setdefault(
                "non_replicated_deduplication_window", settings.CLICKHOUSE_DEDUP_WINDOW
            )
        if table_settings:
            pairs = ", ".join(f"{key} = {value}" for key, value in table_settings.items())
            clauses.append(f"SETTINGS {pairs}")
        statements = [
            f"CREATE TABLE IF NOT EXISTS {self.storage_name}{_on_cluster()}\n"
            f"(\n{self.columns.strip()}\n)\n" + "\n".join(clauses)
        ]
        if cluster():
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {self.name}{_on_cluster()} AS {self.storage_name}"
                f" ENGINE = Distributed({cluster()}, currentDatabase(), {self.storage_name},"
                f" {self.shard_key})"
            )
        return statements

    def alter(self, action: str) -> list[str]:
        """An ALTER on the stored table (and, for column changes, the Distributed one)."""
        statements = [f"ALTER TABLE {self.storage_name}{_on_cluster()} {action}"]
        if cluster() and re.match(r"\s*(ADD|DROP|MODIFY|RENAME) COLUMN", action, re.I):
            statements.append(f"ALTER TABLE {self.name}{_on_cluster()} {action}")
        return statements


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
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.name}{_on_cluster()}"
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
