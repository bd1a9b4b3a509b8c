"""CLICKHOUSE_CLUSTER: the cluster DDL `migrate_clickhouse --plan` prints, parsed by ClickHouse's
own parser (chDB's formatQuery, in this process), and the SQL the code sends, read from its
source: reads and inserts name Distributed tables, mutations go to local tables ON CLUSTER.

No cluster runs here: the DDL is parsed, not executed (see README, "A ClickHouse cluster")."""

import ast
import io
import json
import re
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import chdb
import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from llmops import clickhouse_admin, clickhouse_migrations
from llmops.clickhouse import database
from llmops.clickhouse_schema import Table

CLUSTER = "llmops_cluster"
DB = database()
# The design document's sharding keys (its "Sharding Strategy" table), per table.
DESIGN_KEYS = {
    "spans": "cityHash64(org_id)",  # traces/spans: org_id
    "span_content": "cityHash64(content_hash)",  # prompt content: content_hash
    "scores": "cityHash64(trace_id)",  # evaluation results: trace_id
    "cost_hourly": "cityHash64(org_id, hour)",  # cost aggregations: org_id + time bucket
    "trace_index": "cityHash64(org_id)",  # fed per shard from spans: as spans
    "span_keys": "cityHash64(org_id)",  # looked up with spans: as spans
    "clickhouse_migrations": "cityHash64(name)",  # the ledger: one row per name
}
ROOT = Path(settings.BASE_DIR)
SOURCE_SKIP = {".venv", "var", "tests", ".git", "node_modules",
               # the embedded single-node server: it parses SQL, it sends none
               "chserver"}
CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)")
ENGINE = re.compile(r"^ENGINE = (\w+)(?:\((.*)\))?$", re.M)


def format_queries(statements: list[str]) -> list[str]:
    """ClickHouse's parser (chDB, the real engine): each statement in canonical form. One
    query for all of them (a chDB query costs ~0.1 s here); a statement it cannot parse
    fails it, naming the statement."""
    if not statements:
        return []
    columns = ", ".join(f"formatQuery({{s{i}:String}}) AS q{i}" for i in range(len(statements)))
    # A parameter's value is read in the escaped text format: backslashes and newlines.
    params = {f"s{i}": sql.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
              for i, sql in enumerate(statements)}
    row = json.loads(chdb.query(f"SELECT {columns}", "JSONEachRow", params=params).bytes())
    return [row[f"q{i}"] for i in range(len(statements))]


def plan_statements(cluster: str = "") -> list[str]:
    """What `migrate_clickhouse --plan --all` prints, one statement each."""
    out = io.StringIO()
    with override_settings(CLICKHOUSE_CLUSTER=cluster):
        call_command("migrate_clickhouse", "--plan", "--all", stdout=out)
    body = "\n".join(line for line in out.getvalue().splitlines() if not line.startswith("-- "))
    return [s.strip() for s in body.split(";\n") if s.strip()]


@pytest.fixture(scope="module")
def plans() -> SimpleNamespace:
    return SimpleNamespace(single=format_queries(plan_statements()),
                           cluster=format_queries(plan_statements(CLUSTER)))


def creates(statements: list[str]) -> dict[str, str]:
    return {m.group(1): s for s in statements if (m := CREATE_TABLE.match(s))}


def engine_of(statement: str) -> tuple[str, list[str]]:
    name, args = ENGINE.search(statement).groups()
    return name, [a.strip() for a in re.split(r",(?![^(]*\))", args)] if args else []


def expected_local(single: str, name: str) -> str:
    """The single-node CREATE turned into the cluster's local one by hand: same columns,
    ORDER BY, PARTITION BY, TTL and settings; Replicated engine with its own path."""
    engine, args = engine_of(single)
    replicated = ", ".join([f"'/clickhouse/tables/{{shard}}/{{database}}/{name}_local'",
                            "'{replica}'", *args])
    local = single.replace(f"CREATE TABLE IF NOT EXISTS {name}\n",
                           f"CREATE TABLE IF NOT EXISTS {name}_local ON CLUSTER {CLUSTER}\n", 1)
    local = ENGINE.sub(f"ENGINE = Replicated{engine}({replicated})", local, count=1)
    return local.replace("non_replicated_deduplication_window", "replicated_deduplication_window")


def covered(single: list[str], cluster: list[str]) -> list[str]:
    """Every table a migration creates on one node, as it is on the cluster; returns the
    problems (empty: each has its Replicated local table and its Distributed front)."""
    problems = []
    local_creates, cluster_creates = creates(single), creates(cluster)
    for name, statement in local_creates.items():
        front, local = cluster_creates.get(name), cluster_creates.get(name + "_local")
        if local != expected_local(statement, name):
            problems.append(f"{name}: no local table {name}_local as expected:\n{local}")
        if not front or engine_of(front)[0] != "Distributed":
            problems.append(f"{name}: no Distributed table {name}:\n{front}")
    return problems


def test_cluster_plan_has_a_replicated_local_and_a_distributed_front_per_table(plans):
    assert not covered(plans.single, plans.cluster), "\n".join(
        covered(plans.single, plans.cluster))
    fronts = {name: s for name, s in creates(plans.cluster).items() if "_local" not in name}
    assert set(fronts) == set(creates(plans.single))
    assert set(DESIGN_KEYS) <= set(fronts), "a table of the design document is not planned"
    for name, statement in fronts.items():
        assert statement.startswith(f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {CLUSTER}"
                                    f" AS {name}_local\n"), statement
        engine, args = engine_of(statement)
        assert (engine, args[:3]) == ("Distributed", [f"'{CLUSTER}'", DB, f"{name}_local"])
        key = args[3]
        if name in DESIGN_KEYS:
            assert key == DESIGN_KEYS[name], f"{name} sharded by {key}"
        # Rows one merge or FINAL collapses must meet on one shard: the key hashes columns of
        # the sort key (also for a table added later, e.g. a rollup).
        order_by = re.search(r"^ORDER BY (.*)$", creates(plans.single)[name], re.M).group(1)
        hashed = re.fullmatch(r"cityHash64\((.*)\)", key).group(1).split(", ")
        assert all(re.search(rf"\b{column}\b", order_by) for column in hashed), (name, key)
    # A Keeper path per table: two tables sharing one would replicate into each other.
    paths = re.findall(r"Replicated\w+\('(/clickhouse/tables/[^']+)'", "\n".join(plans.cluster))
    assert len(paths) == len(creates(plans.single)) and len(set(paths)) == len(paths)


def test_every_cluster_statement_runs_on_the_cluster_and_views_stay_local(plans):
    ddl = [s for s in plans.cluster if not s.startswith("INSERT")]
    assert all(f" ON CLUSTER {CLUSTER}" in s.split("\n")[0] for s in ddl), ddl
    views = [s for s in ddl if s.startswith("CREATE MATERIALIZED VIEW")]
    single_views = [s for s in plans.single if s.startswith("CREATE MATERIALIZED VIEW")]
    assert views and len(views) == len(single_views)
    for view in views:
        # Each shard's view reads its local source and writes its local target.
        target = re.search(r" TO (\w+)", view).group(1)
        sources = re.findall(r"\bFROM (\w+)", view)
        assert target.endswith("_local") and sources, view
        assert all(source.endswith("_local") for source in sources), view
    for alter in (s for s in ddl if s.startswith("ALTER")):
        assert re.match(rf"ALTER TABLE \w+ ON CLUSTER {CLUSTER}\n", alter), alter
    # Backfills run once, from one node, through the Distributed tables.
    for insert in (s for s in plans.cluster if s.startswith("INSERT")):
        assert "_local" not in insert, insert


def test_single_node_plan_is_unchanged_by_the_cluster_code(plans):
    text = "\n".join(plans.single)
    assert "ON CLUSTER" not in text and "Replicated" not in text and "_local" not in text
    assert not any(engine_of(s)[0] == "Distributed" for s in creates(plans.single).values())


def test_a_table_a_migration_adds_is_planned_for_the_cluster_or_fails(monkeypatch):
    """What the coverage check does with a migration added later: a described table is
    planned by itself, and a plan missing it is caught; a SQL string, which has no cluster
    form, fails the cluster plan."""
    rollup = Table(name="metrics_hourly_test", columns="org_id UInt64,\nhour DateTime,\nn UInt64",
                   engine="SummingMergeTree", order_by="(org_id, hour)",
                   shard_key="cityHash64(org_id)")
    raw = "CREATE TABLE IF NOT EXISTS raw_test (a UInt8) ENGINE = MergeTree ORDER BY a"
    known = clickhouse_migrations.discover()

    def with_migration(*operations):
        module = SimpleNamespace(operations=list(operations))
        monkeypatch.setattr(clickhouse_migrations, "discover", lambda: [
            *known, clickhouse_migrations.Migration(9999, "tests", "9999_test", module)])

    with_migration(rollup)
    single, cluster = format_queries(plan_statements()), format_queries(plan_statements(CLUSTER))
    assert "metrics_hourly_test_local" in creates(cluster)
    assert not covered(single, cluster)
    # A plan that missed it is caught (the check is not vacuous).
    dropped = [s for s in cluster if "metrics_hourly_test" not in s.split("\n")[0]]
    assert any("metrics_hourly_test" in p for p in covered(single, dropped))
    with_migration(raw)
    with pytest.raises(ValueError, match="no cluster form"):
        plan_statements(CLUSTER)


def test_routed_mutations_name_local_tables_on_the_cluster():
    from operations.services.retention import TTL_TABLES

    with override_settings(CLICKHOUSE_CLUSTER=CLUSTER):
        statements = {
            "alter delete": clickhouse_admin.alter("cost_hourly", "DELETE WHERE org_id = 1"),
            "alter update": clickhouse_admin.alter("spans", "UPDATE cost = 0 WHERE org_id = 1"),
            "delete": clickhouse_admin.delete("spans", "org_id = 1"),
            "optimize": clickhouse_admin.optimize("spans"),
            "truncate": clickhouse_admin.truncate("scores"),
            "ttl": [s for table, column in TTL_TABLES.values()
                    for s in table().alter(f"MODIFY TTL {column} + INTERVAL 7 DAY")],
        }
        admin = [*clickhouse_admin.drop_table(DB, "spans_local"),
                 *clickhouse_admin.drop_database("llmops_verify_1"),
                 *clickhouse_admin.create_database(DB),
                 clickhouse_admin.backup_database(DB, "S3('https://s3/b/1/')"),
                 clickhouse_admin.restore_database(DB, "llmops_verify_1", "S3('https://s3/b/1/')")]
        column = clickhouse_admin.alter("spans", "ADD COLUMN IF NOT EXISTS x UInt8")
        # Backups measure a restored copy in another database: every shard's local rows.
        every_shard = clickhouse_admin.every_shard("llmops_verify_1", "spans_local")
        facts = f"SELECT count() FROM {every_shard} FINAL"
    assert len(statements["ttl"]) == len(TTL_TABLES)
    for kind, group in statements.items():
        for statement in format_queries(group):
            target = re.match(r"(?:ALTER TABLE|DELETE FROM|OPTIMIZE TABLE|TRUNCATE TABLE"
                              r"(?: IF EXISTS)?) (\w+) ON CLUSTER (\w+)", statement)
            assert target and target.group(1).endswith("_local"), (kind, statement)
            assert target.group(2) == CLUSTER
    for statement in format_queries(admin):
        assert f"ON CLUSTER {CLUSTER}" in statement, statement
    # A column change reaches the Distributed front as well, whose columns mirror the local.
    assert [re.match(r"ALTER TABLE (\w+)", s).group(1) for s in column] == ["spans_local", "spans"]
    assert format_queries([facts]) == [
        f"SELECT count()\nFROM cluster('{CLUSTER}', llmops_verify_1, spans_local)\nFINAL"]
    # One node: the same helpers name the table itself.
    assert clickhouse_admin.optimize("spans") == ["OPTIMIZE TABLE spans FINAL"]


# -- the SQL the code sends, read from its source ------------------------------------------

SQL = re.compile(r"\b(SELECT|INSERT INTO)\b")
# A table name, placeholders `{expression}` included; `(` right after it: a table function.
TABLE_REF = re.compile(r"\b(?:FROM|JOIN|INSERT INTO)\s+((?:\{[^}]*\}|[\w.`])+\(?)")
ADMIN = re.compile(r"\b(ALTER TABLE|OPTIMIZE TABLE|TRUNCATE|DELETE FROM|DROP TABLE|DROP DATABASE"
                   r"|BACKUP (?:DATABASE|TABLE)|RESTORE (?:DATABASE|TABLE)|CREATE DATABASE"
                   r"|ON CLUSTER)\b")
# A file without any of these words sends no SQL this scan looks at (parsing all is slow).
MAY_HOLD_SQL = re.compile(r"SELECT|INSERT|insert|ALTER|OPTIMIZE|TRUNCATE|DELETE|DROP|BACKUP"
                          r"|RESTORE|CREATE DATABASE|ON CLUSTER|_local|storage_name")
# Table names built at run time, and why each is a Distributed table on a cluster.
DYNAMIC = {
    "{LEDGER.name}": "the ledger Table's name: its Distributed front",
    "{self.target.name}": "a view's backfill inserts through the target's front",
    "{view.source.name}": "costs' rebuild reads spans through its front",
    "{view.target.name}": "costs' rebuild inserts cost_hourly through its front",
    "{source}": "a MaterializedView's SELECT: local on a cluster, checked in the plan",
    "{table}": "costs.reports and llmops.rollups: a rollup passed as table=, or 'spans FINAL'",
    "`{database()}`.{LEDGER.name}": "the ledger's front, read by migrate before it runs",
    "{clickhouse_admin.every_shard(db, name)}{final}": "backups' facts: every shard's rows",
}
# Files that may name local tables: the routing helper itself and the DDL generator.
LOCAL_ALLOWED = {"llmops/clickhouse_admin.py", "llmops/clickhouse_schema.py"}


def _source_files() -> list[Path]:
    return [path for path in sorted(ROOT.rglob("*.py"))
            if not set(path.relative_to(ROOT).parts) & SOURCE_SKIP]


def _strings(tree: ast.AST):
    """(line, text) of every string and f-string (placeholders as `{expression}`), not the
    docstrings, which describe SQL rather than send it."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    inner = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
             for v in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(
                v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                for v in node.values)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings and id(node) not in inner):
            yield node.lineno, node.value


@cache
def code_sql() -> SimpleNamespace:
    """The tables the code's SQL reads and writes, its inserts' tables (a call named
    *insert* with a literal table), and its admin statements, by file and line."""
    tables, admin, local = {}, {}, {}
    for path in _source_files():
        relative = str(path.relative_to(ROOT))
        text = path.read_text()
        if not MAY_HOLD_SQL.search(text):
            continue
        tree = ast.parse(text)
        for line, text in _strings(tree):
            where = f"{relative}:{line}"
            if ADMIN.search(text) and relative not in POSTGRES_FILES:
                admin.setdefault(where, text)
            if re.search(r"\w_local\b|storage_name|\blocal\(", text):
                local.setdefault(where, text)
            if SQL.search(text):
                for name in TABLE_REF.findall(text):
                    tables.setdefault(name, set()).add(where)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and node.args
                    and "insert" in ast.unparse(node.func).rsplit(".", 1)[-1]
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
                tables.setdefault(node.args[0].value, set()).add(f"{relative}:{node.lineno}")
            # A table named once in a constant (ingestion.query.hourly: `FROM {TABLE}`).
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)
                    and any(isinstance(t, ast.Name) and t.id.endswith("TABLE")
                            for t in node.targets)):
                tables.setdefault(node.value.value, set()).add(f"{relative}:{node.lineno}")
            # A rollup's table handed by name (llmops.rollups reads `FROM {table}`).
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if (keyword.arg == "table" and isinstance(keyword.value, ast.Constant)
                            and isinstance(keyword.value.value, str)):
                        tables.setdefault(keyword.value.value, set()).add(
                            f"{relative}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr == "storage_name":
                local.setdefault(f"{relative}:{node.lineno}", "storage_name")
    return SimpleNamespace(tables=tables, admin=admin, local=local)


def test_every_read_and_write_in_the_code_names_a_distributed_table(plans):
    found = code_sql()
    fronts = {name for name, s in creates(plans.cluster).items()
              if engine_of(s)[0] == "Distributed"}
    views = {re.match(r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)", s).group(1)
             for s in plans.cluster if s.startswith("CREATE MATERIALIZED VIEW")}
    # The scan sees the tables the code is known to read and write (it did not go blind).
    assert {"spans", "span_content", "span_keys", "scores", "trace_index",
            "cost_hourly", "span_metrics_hourly"} <= set(found.tables), sorted(found.tables)
    wrong = {}
    for name, where in found.tables.items():
        bare = name.split(".")[-1].strip("`")
        if name.startswith("system.") or name.endswith("("):  # catalogues, table functions
            continue
        if name in DYNAMIC or bare in fronts:
            continue
        if bare in views:
            wrong[name] = f"{sorted(where)}: reads a materialized view, not its target"
        else:
            wrong[name] = f"{sorted(where)}: not a Distributed table on a cluster"
    # CTE-free SQL here; a name that is none of the planned fronts is a table the plan
    # misses, a local table, or a Postgres catalogue in a script (listed below).
    wrong = {name: why for name, why in wrong.items() if name not in POSTGRES_SQL}
    assert not wrong, "\n".join(f"{name}: {why}" for name, why in wrong.items())
    stray = {where: text for where, text in found.local.items()
             if where.split(":")[0] not in LOCAL_ALLOWED}
    assert not stray, f"local tables named outside the routing helper: {stray}"


def test_mutations_and_admin_statements_go_through_the_routing_helper():
    found = code_sql()
    outside = {where: text.strip()[:80] for where, text in found.admin.items()
               if where.split(":")[0] not in ADMIN_ALLOWED}
    assert not outside, ("mutations/admin SQL outside llmops.clickhouse_admin (they must name "
                         f"the local tables ON CLUSTER on a cluster): {outside}")
    assert any(where.startswith("llmops/clickhouse_admin.py") for where in found.admin)


# Postgres, not ClickHouse: scripts reading its catalogue and creating its database.
POSTGRES_SQL = {"pg_database", "pg_roles"}
POSTGRES_FILES = {"chaos/__main__.py", "scripts/services.py"}
# Admin SQL that stays where it is: the routing helper, the DDL generator (ON CLUSTER
# CREATE/ALTER), and the single-node embedded server's own supervision.
ADMIN_ALLOWED = {"llmops/clickhouse_admin.py", "llmops/clickhouse_schema.py"}
