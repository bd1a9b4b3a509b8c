"""Backups of the ClickHouse database: back up, drop the tables, restore, and find identical
row counts and checksums; retention removes only what is older than its window."""

import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from llmops import clickhouse_migrations
from llmops.clickhouse import new_client
from operations.models import BackupRun, TtlChange
from operations.services import backups
from operations.services.retention import set_spans_ttl

pytestmark = pytest.mark.django_db


@pytest.fixture
def scratch_database():
    """A database with every platform table (all migrations) and rows in the spans."""
    name = f"llmops_backup_{uuid.uuid4().hex[:8]}_test"
    client = new_client(database="default")
    client.command(f"CREATE DATABASE `{name}`")
    scoped = new_client(database=name)
    for migration in clickhouse_migrations.discover():
        for statement in migration.statements():
            scoped.command(statement)
    scoped.command(
        "INSERT INTO spans (org_id, trace_id, span_id, name, kind, status, start_time, "
        "model, input_tokens, output_tokens, tags, metadata, environment, received_at, version) "
        "SELECT number % 7, concat('t', toString(number % 900)), toString(number), 'step', "
        "'llm', if(number % 13 = 0, 'error', 'ok'), now64(6) - toIntervalSecond(number), "
        "'gpt-4o-mini', number % 1000, number % 97, ['a', 'b'], map('k', toString(number)), "
        "'prod', now64(6), 1 FROM numbers(20000)")
    scoped.command("INSERT INTO span_content (org_id, content_hash, format, content) "
                   "SELECT number % 7, hex(number), 'text', repeat('x', 200) FROM numbers(3000)")
    yield name
    for run in BackupRun.objects.all():
        shutil.rmtree(run.location, ignore_errors=True)
    client.command(f"DROP DATABASE IF EXISTS `{name}`")
    client.command(f"DROP DATABASE IF EXISTS `{name}_restored`")


def test_backup_drop_restore_gives_identical_counts_and_checksums(scratch_database):
    run = backups.backup(db=scratch_database)
    assert run.status == BackupRun.Status.SUCCEEDED, run.error
    assert run.tables["spans"]["rows"] == 20000
    assert run.tables["span_content"]["rows"] == 3000
    assert run.rows >= 23000 and run.bytes > 0 and run.checksum
    assert Path(run.location).is_dir() and run.finished_at and "BACKUP_CREATED" in run.progress

    client = new_client(database="default")
    for table in run.tables:
        client.command(f"DROP TABLE `{scratch_database}`.`{table}` SYNC")
    assert client.command(
        "SELECT count() FROM system.tables WHERE database = {db:String} "
        "AND engine LIKE '%MergeTree'", parameters={"db": scratch_database}) == 0

    found = backups.restore(run)
    assert {t: (f["rows"], f["checksum"]) for t, f in found.items()} == {
        t: (f["rows"], f["checksum"]) for t, f in run.tables.items()}

    into_other = backups.restore(run, into=f"{scratch_database}_restored")
    assert into_other.keys() == run.tables.keys()


def test_a_restore_that_does_not_match_is_an_error(scratch_database):
    run = backups.backup(db=scratch_database)
    run.tables["spans"]["rows"] += 1  # as if the backup had lost a row
    run.save()
    with pytest.raises(backups.BackupError, match="differ from the backup: \\['spans'\\]"):
        backups.restore(run, into=f"{scratch_database}_restored")


def test_retention_prunes_only_backups_past_their_window(tmp_path, settings):
    settings.BACKUP_RETENTION_DAYS = 30
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    new_dir.mkdir()
    old = BackupRun.objects.create(database="x", location=str(old_dir),
                                   status=BackupRun.Status.SUCCEEDED)
    BackupRun.objects.filter(pk=old.pk).update(started_at=timezone.now() - timedelta(days=31))
    recent = BackupRun.objects.create(database="x", location=str(new_dir),
                                      status=BackupRun.Status.SUCCEEDED)
    BackupRun.objects.filter(pk=recent.pk).update(
        started_at=timezone.now() - timedelta(days=29))
    assert backups.prune() == [old.pk]
    assert not old_dir.exists() and new_dir.exists()
    assert BackupRun.objects.get(pk=recent.pk).status == BackupRun.Status.SUCCEEDED


def test_emergency_ttl_shortens_the_spans_ttl_and_is_recorded():
    changes = set_spans_ttl(days=7, reason="storage over 90 %", changed_by="pytest")
    assert {c.table for c in changes} == {"spans", "span_content", "span_keys", "trace_index",
                                          "cost_hourly", "span_metrics_hourly"}
    ddl = new_client().command("SHOW CREATE TABLE spans")
    assert "toIntervalDay(7)" in ddl
    assert TtlChange.objects.filter(days=7, reason="storage over 90 %").count() == 6
    set_spans_ttl(days=90, reason="restored", changed_by="pytest")
    assert "toIntervalDay(90)" in new_client().command("SHOW CREATE TABLE spans")
