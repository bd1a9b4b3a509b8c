"""ClickHouse backups: BACKUP DATABASE to a directory (embedded server) or S3 (cluster),
each run recorded with per-table row counts and checksums; restore verifies them."""

import logging
import shutil
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from llmops import clickhouse_admin
from llmops.clickhouse import database, new_client
from operations.models import BackupRun

logger = logging.getLogger(__name__)
POLL_S = 0.5


class BackupError(Exception):
    pass


def _client():
    # Backups outlast an ordinary query's timeout.
    return new_client(database="default", send_receive_timeout=3600)


def _normalised(name: str, type_: str) -> str:
    """A column as its merged value, the same however the parts were merged: aggregate states
    finalised, and the arrays that merges union (SimpleAggregateFunction(groupUniqArray...))
    sorted, since their order follows the merge order."""
    column = f"`{name}`"
    if type_.startswith("AggregateFunction("):
        column = f"finalizeAggregation({column})"
    elif type_.startswith("SimpleAggregateFunction(") and "Array(" in type_:
        column = f"arraySort({column})"
    return column


def table_facts(client, db: str, *, deduplicated: bool = True) -> dict[str, dict]:
    """Rows, bytes and an order-independent checksum of every table that stores rows, on
    deduplicated content (FINAL): a table's figures do not change when its parts merge.
    deduplicated=False: raw count() and rows, as backups recorded before FINAL were."""
    facts = {}
    tables = client.query(
        "SELECT name, engine, total_bytes FROM system.tables WHERE database = {db:String} "
        "AND engine LIKE '%MergeTree' ORDER BY name", parameters={"db": db}).result_rows
    for name, engine, total_bytes in tables:
        columns = client.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = {table:String} ORDER BY position",
            parameters={"db": db, "table": name}).result_rows
        row = ", ".join(_normalised(column, type_) for column, type_ in columns)
        # Replacing/Aggregating/Summing engines collapse rows at merge time; FINAL applies
        # that now, so a copy taken mid-merge and one merged since read the same.
        final = "" if engine in ("MergeTree", "ReplicatedMergeTree") else " FINAL"
        if not deduplicated:
            row, final = "*", ""
        # The hash of each row's text: every value counts, NULLs included, in any order.
        rows, checksum = client.query(
            f"SELECT count(), sum(cityHash64(formatRowNoNewline('TSV', {row}))) "
            f"FROM {clickhouse_admin.every_shard(db, name)}{final}").result_rows[0]
        # Keyed by the application's name (`spans`, also on a cluster); bytes: this node's.
        facts[clickhouse_admin.front(name)] = {
            "rows": rows, "bytes": total_bytes or 0, "checksum": str(checksum),
            "deduplicated": deduplicated}
    return facts


def _objects(client, db: str) -> dict[str, tuple[str, int | None]]:
    """Every table and view of a database: {name: (engine, rows or None)}."""
    return {name: (engine, rows) for name, engine, rows in client.query(
        "SELECT name, engine, total_rows FROM system.tables WHERE database = {db:String} "
        "ORDER BY name", parameters={"db": db}).result_rows}


def _target(run: BackupRun) -> str:
    if settings.CLICKHOUSE_CLUSTER and settings.BACKUP_S3_URL:
        return f"S3('{settings.BACKUP_S3_URL.rstrip('/')}/{Path(run.location).name}/')"
    return f"File('{run.location}')"


def _progress(client, backup_id: str, run: BackupRun) -> tuple[str, str] | None:
    """(status, error) of a BACKUP/RESTORE in system.backups, keeping the run's progress."""
    rows = client.query(
        "SELECT status, num_files, total_size, error FROM system.backups "
        "WHERE id = {id:String}", parameters={"id": backup_id}).result_rows
    if not rows:
        return None  # not started yet
    status, files, size, error = rows[0]
    run.progress = f"{status}: {files} files, {size} bytes"
    run.save(update_fields=["progress"])
    return status, error


def _run_followed(client, statement: str, run: BackupRun, done: str) -> None:
    """Run a BACKUP or RESTORE to its end, following its progress.

    Not ASYNC: chDB keeps an ASYNC statement's query id on the connection that started it
    until the statement ends, and the server's next query on that pooled connection fails
    with QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING (seen with an OPTIMIZE during a backup). So
    the statement runs synchronously on its own client in a thread, and `client` polls."""
    backup_id = f"llmops-{run.pk}-{uuid.uuid4().hex[:12]}"
    failures: list[Exception] = []

    def execute() -> None:
        worker = _client()
        try:
            worker.command(f"{statement} SETTINGS id = '{backup_id}'")
        except Exception as exc:  # reported below, in the caller's thread
            failures.append(exc)
        finally:
            worker.close()

    thread = threading.Thread(target=execute, name=f"backup-{run.pk}", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(POLL_S)
        _progress(client, backup_id, run)
    if failures:
        raise BackupError(str(failures[0]))
    status, error = _progress(client, backup_id, run) or ("UNKNOWN", "")
    if status != done:
        raise BackupError(error or status)


def _restore_into(client, run: BackupRun, target: str) -> None:
    _run_followed(client, clickhouse_admin.restore_database(run.database, target,
                                                           _target(run)), run, "RESTORED")


def _drop_database(client, db: str) -> None:
    clickhouse_admin.run(clickhouse_admin.drop_database(db), client=client)


def measure_backup(client, run: BackupRun) -> dict[str, dict]:
    """What the finished backup holds: restored into a scratch database, measured there
    (deduplicated), then dropped. Counting the live tables instead would miss what drains
    insert and merges collapse while BACKUP runs."""
    scratch = f"{run.database}_verify_{run.pk}"
    _drop_database(client, scratch)  # left over by a crash, say
    try:
        _restore_into(client, run, scratch)
        run.views = sorted(name for name, (engine, _) in _objects(client, scratch).items()
                           if not engine.endswith("MergeTree"))
        return table_facts(client, scratch)
    finally:
        _drop_database(client, scratch)


def backup(*, db: str | None = None) -> BackupRun:
    """Back up every table of the platform's database; one history row per run, with the
    per-table figures of what the backup holds (so a restore can be verified)."""
    db = db or database()
    run = BackupRun.objects.create(database=db, location="")
    # Dated, so ids reused by another Django database never meet an existing backup.
    run.location = str(Path(settings.BACKUP_DIR) / f"{run.started_at:%Y%m%dT%H%M%S}-{run.pk}")
    run.save(update_fields=["location"])
    client = _client()
    try:
        _run_followed(client, clickhouse_admin.backup_database(db, _target(run)), run,
                      "BACKUP_CREATED")
        created = run.progress
        run.tables = measure_backup(client, run)
        run.progress = f"{created}; verified on a restored copy"
        run.rows = sum(t["rows"] for t in run.tables.values())
        run.bytes = sum(t["bytes"] for t in run.tables.values())
        run.checksum = combined_checksum(run.tables)
        run.status = BackupRun.Status.SUCCEEDED
        logger.info("backup %s of %s: %d tables, %d rows", run.pk, db, len(run.tables),
                    run.rows)
    except Exception as exc:
        run.status, run.error = BackupRun.Status.FAILED, str(exc)
        logger.error("backup %s of %s failed: %s", run.pk, db, exc)
    finally:
        client.close()
        run.finished_at = timezone.now()
        run.save()
    return run


def combined_checksum(tables: dict[str, dict]) -> str:
    return str(sum(int(t["checksum"]) for t in tables.values()) % 2**64)


@dataclass
class Replacement:
    """One object of the target database a restore replaces (or creates)."""

    name: str
    engine: str
    current_rows: int | None  # None: a view, or absent today
    backup_rows: int | None  # None: a view (the backup holds no rows for it)
    exists: bool


def replacement_plan(run: BackupRun, target: str | None = None) -> list[Replacement]:
    """What restoring `run` into `target` (default: its own database) drops and recreates:
    every table and view the backup holds, with today's rows beside the backup's."""
    target = target or run.database
    client = _client()
    try:
        current = _objects(client, target)
    finally:
        client.close()
    return [Replacement(name, current[name][0] if name in current else
                        ("view" if name in run.views else "table"),
                        current[name][1] if name in current else None,
                        run.tables[name]["rows"] if name in run.tables else None,
                        name in current)
            for name in sorted(set(run.tables) | set(run.views))]


def restore(run: BackupRun, *, into: str | None = None, replace: bool = False
            ) -> dict[str, dict]:
    """Restore a backup into `into` (default: the database it came from) and verify every
    table's deduplicated rows and checksum; returns what was found.

    The target's tables that the backup holds must not exist, unless `replace`: then they
    are dropped first (views before the tables they read), and restored from the backup."""
    if run.status != BackupRun.Status.SUCCEEDED:
        raise BackupError(f"backup {run.pk} is {run.status}, not restorable")
    target = into or run.database
    client = _client()
    try:
        if replace:
            held = set(run.tables) | set(run.views)
            current = _objects(client, target)
            # Views first: one must not feed a table that is already gone.
            doomed = sorted((name for name in current if name in held),
                            key=lambda name: (current[name][0].endswith("MergeTree"), name))
            for name in doomed:
                clickhouse_admin.run(clickhouse_admin.drop_table(target, name), client=client)
            logger.warning("restore of backup %s: dropped %s from %s", run.pk, doomed, target)
        _restore_into(client, run, target)
        # Measured as the backup was: runs recorded before FINAL carry raw figures.
        deduplicated = all(facts.get("deduplicated") for facts in run.tables.values())
        found = table_facts(client, target, deduplicated=deduplicated)
    finally:
        client.close()
    differing = sorted(name for name in run.tables.keys() | found.keys()
                       if _identity(run.tables.get(name)) != _identity(found.get(name)))
    if differing:
        details = "; ".join(f"{name}: backup {_identity(run.tables.get(name))}, restored "
                            f"{_identity(found.get(name))}" for name in differing)
        raise BackupError(f"restored tables differ from the backup: {differing} ({details})")
    return found


def _identity(facts: dict | None) -> tuple | None:
    # Rows and content; on-disk bytes may differ once parts are merged.
    return facts and (facts["rows"], facts["checksum"])


def prune(*, now=None) -> list[int]:
    """Remove backups older than BACKUP_RETENTION_DAYS; returns the runs pruned."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.BACKUP_RETENTION_DAYS)
    pruned = []
    for run in BackupRun.objects.filter(status=BackupRun.Status.SUCCEEDED,
                                        started_at__lt=cutoff):
        if run.location.startswith("/"):
            shutil.rmtree(run.location, ignore_errors=True)
        run.status = BackupRun.Status.PRUNED
        run.save(update_fields=["status"])
        pruned.append(run.pk)
    return pruned
