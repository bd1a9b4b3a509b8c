"""ClickHouse backups: BACKUP DATABASE to a directory (embedded server) or S3 (cluster),
each run recorded with per-table row counts and checksums; restore verifies them."""

import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from llmops.clickhouse import database, new_client
from operations.models import BackupRun

logger = logging.getLogger(__name__)
POLL_S = 0.5


class BackupError(Exception):
    pass


def _client():
    # Backups outlast an ordinary query's timeout.
    return new_client(database="default", send_receive_timeout=3600)


def table_facts(client, db: str) -> dict[str, dict]:
    """Rows, bytes and an order-independent checksum of every table that stores rows."""
    facts = {}
    tables = client.query(
        "SELECT name, total_bytes FROM system.tables WHERE database = {db:String} "
        "AND engine LIKE '%MergeTree' ORDER BY name", parameters={"db": db}).result_rows
    for name, total_bytes in tables:
        # The hash of each row's text: every value counts, NULLs included, in any order.
        rows, checksum = client.query(
            f"SELECT count(), sum(cityHash64(formatRowNoNewline('TSV', *))) "
            f"FROM `{db}`.`{name}`").result_rows[0]
        facts[name] = {"rows": rows, "bytes": total_bytes or 0, "checksum": str(checksum)}
    return facts


def _target(run: BackupRun) -> str:
    if settings.CLICKHOUSE_CLUSTER and settings.BACKUP_S3_URL:
        return f"S3('{settings.BACKUP_S3_URL.rstrip('/')}/{Path(run.location).name}/')"
    return f"File('{run.location}')"


def _wait(client, backup_id: str, run: BackupRun, done: str) -> None:
    """Follow an ASYNC backup or restore in system.backups, keeping the run's progress."""
    while True:
        status, files, size, error = client.query(
            "SELECT status, num_files, total_size, error FROM system.backups "
            "WHERE id = {id:String}", parameters={"id": backup_id}).result_rows[0]
        run.progress = f"{status}: {files} files, {size} bytes"
        run.save(update_fields=["progress"])
        if status == done:
            return
        if "FAILED" in status or error:
            raise BackupError(error or status)
        time.sleep(POLL_S)


def backup(*, db: str | None = None) -> BackupRun:
    """Back up every table of the platform's database; one history row per run."""
    db = db or database()
    run = BackupRun.objects.create(database=db, location="")
    # Dated, so ids reused by another Django database never meet an existing backup.
    run.location = str(Path(settings.BACKUP_DIR) / f"{run.started_at:%Y%m%dT%H%M%S}-{run.pk}")
    run.save(update_fields=["location"])
    client = _client()
    try:
        run.tables = table_facts(client, db)
        cluster = f" ON CLUSTER {settings.CLICKHOUSE_CLUSTER}" if settings.CLICKHOUSE_CLUSTER \
            else ""
        backup_id = client.query(
            f"BACKUP DATABASE `{db}`{cluster} TO {_target(run)} ASYNC").result_rows[0][0]
        _wait(client, backup_id, run, "BACKUP_CREATED")
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


def restore(run: BackupRun, *, into: str | None = None) -> dict[str, dict]:
    """Restore a backup into `into` (default: the database it came from, whose tables must
    not exist) and verify every table's rows and checksum; returns what was found."""
    if run.status != BackupRun.Status.SUCCEEDED:
        raise BackupError(f"backup {run.pk} is {run.status}, not restorable")
    target = into or run.database
    client = _client()
    try:
        backup_id = client.query(
            f"RESTORE DATABASE `{run.database}` AS `{target}` FROM {_target(run)} ASYNC"
        ).result_rows[0][0]
        _wait(client, backup_id, run, "RESTORED")
        found = table_facts(client, target)
    finally:
        client.close()
    differing = sorted(name for name in run.tables.keys() | found.keys()
                       if _identity(run.tables.get(name)) != _identity(found.get(name)))
    if differing:
        raise BackupError(f"restored tables differ from the backup: {differing}")
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
