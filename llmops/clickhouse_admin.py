"""Statements that cannot go through a Distributed table, for one node or a cluster.

Reads and inserts name the table the code knows (`spans`): on one node that is where the
rows are, on a cluster it is a Distributed table over `<name>_local` on every shard, so
they never change. Mutations and admin statements (ALTER ... DELETE/UPDATE, TTL changes,
lightweight DELETE, OPTIMIZE, TRUNCATE, DROP, BACKUP/RESTORE) act on stored parts: on a
cluster they must name the local tables and run ON CLUSTER. Every such statement of the
code is built here, so the mode is decided in one place.
"""

import re
from collections.abc import Iterable

from django.conf import settings

from llmops.clickhouse import get_client

LOCAL_SUFFIX = "_local"
# Column changes also apply to the Distributed table, whose columns mirror the local one.
COLUMN_CHANGE = re.compile(r"\s*(ADD|DROP|MODIFY|RENAME|COMMENT) COLUMN", re.I)


def cluster() -> str:
    """The cluster name (CLICKHOUSE_CLUSTER), empty on one node."""
    return settings.CLICKHOUSE_CLUSTER


def on_cluster() -> str:
    return f" ON CLUSTER '{cluster()}'" if cluster() else ""


def local(name: str) -> str:
    """Where the rows of table `name` are stored on this node."""
    return name + LOCAL_SUFFIX if cluster() else name


def front(stored: str) -> str:
    """The name the application uses for a stored table (`spans` for `spans_local`)."""
    return stored.removesuffix(LOCAL_SUFFIX) if cluster() else stored


def every_shard(db: str, stored: str) -> str:
    """FROM clause for the rows of a stored table on every shard, in any database: on a
    cluster `cluster()` over its local tables (one replica each), since a Distributed table
    names one database and a database restored under another name keeps pointing there."""
    if cluster():
        return f"cluster('{cluster()}', `{db}`, `{stored}`)"
    return f"`{db}`.`{stored}`"


def alter(name: str, action: str) -> list[str]:
    """ALTER on the stored rows (DELETE/UPDATE, MODIFY TTL, ADD COLUMN...); a column change
    is made to the Distributed table too."""
    statements = [f"ALTER TABLE {local(name)}{on_cluster()} {action}"]
    if cluster() and COLUMN_CHANGE.match(action):
        statements.append(f"ALTER TABLE {name}{on_cluster()} {action}")
    return statements


def delete(name: str, where: str) -> list[str]:
    """A lightweight DELETE (rows hidden at once, removed by merges)."""
    return [f"DELETE FROM {local(name)}{on_cluster()} WHERE {where}"]


def optimize(name: str, *, final: bool = True) -> list[str]:
    return [f"OPTIMIZE TABLE {local(name)}{on_cluster()}{' FINAL' if final else ''}"]


def truncate(name: str) -> list[str]:
    return [f"TRUNCATE TABLE IF EXISTS {local(name)}{on_cluster()}"]


def drop_table(db: str, name: str) -> list[str]:
    """Drop one object by the name system.tables gives (a local table, a Distributed one or
    a view): on a cluster it goes from every node."""
    return [f"DROP TABLE IF EXISTS `{db}`.`{name}`{on_cluster()} SYNC"]


def drop_database(db: str) -> list[str]:
    return [f"DROP DATABASE IF EXISTS `{db}`{on_cluster()} SYNC"]


def create_database(db: str) -> list[str]:
    return [f"CREATE DATABASE IF NOT EXISTS `{db}`{on_cluster()}"]


def backup_database(db: str, target: str) -> str:
    """BACKUP of the stored parts; ON CLUSTER, each shard writes its own (one replica each)."""
    return f"BACKUP DATABASE `{db}`{on_cluster()} TO {target}"


def restore_database(db: str, into: str, source: str) -> str:
    return f"RESTORE DATABASE `{db}` AS `{into}`{on_cluster()} FROM {source}"


def run(statements: Iterable[str], *, client=None, query_settings: dict | None = None) -> None:
    """Run statements built above, in order."""
    client = client or get_client()
    for statement in statements:
        client.command(statement, settings=query_settings)
