"""Backups taken while rows arrive and parts merge restore and verify; `restore_backup` into
the live database says what it replaces and does it only with --yes."""

import shutil
import threading
import time
import uuid

import pytest
from django.core.management import CommandError, call_command

from llmops import clickhouse_migrations
from llmops.clickhouse import new_client
from operations.models import BackupRun
from operations.services import backups

pytestmark = pytest.mark.django_db

SPANS = (
    "INSERT INTO spans (org_id, trace_id, span_id, name, kind, status, start_time, model, "
    "input_tokens, output_tokens, tags, metadata, environment, received_at, version) "
    "SELECT number % 5, concat('t', toString(number % 300)), toString(number), 'step', 'llm', "
    "'ok', now64(6) - toIntervalSecond(number % 3600), 'gpt-4o-mini', number % 1000, 7, "
    "[toString({round:UInt64} % 3), 'b'], map('round', toString({round:UInt64})), 'prod', "
    "now64(6), {round:UInt64} FROM numbers({first:UInt64}, 400)")
CONTENT = ("INSERT INTO span_content (org_id, content_hash, format, content, last_seen) "
           "SELECT number % 5, hex(number), 'text', repeat('y', 100), now64(6) "
           "FROM numbers({first:UInt64}, 50)")


@pytest.fixture
def live_database():
    """A database with every platform table and view, holding some spans and content."""
    name = f"llmops_live_{uuid.uuid4().hex[:8]}_test"
    admin = new_client(database="default")
    admin.command(f"CREATE DATABASE `{name}`")
    scoped = new_client(database=name)
    for migration in clickhouse_migrations.discover():
        for statement in migration.statements():
            scoped.command(statement)
    for first in range(0, 2000, 400):
        scoped.command(SPANS, parameters={"round": 0, "first": first})
        scoped.command(CONTENT, parameters={"first": first})
    yield name
    for run in BackupRun.objects.all():
        shutil.rmtree(run.location, ignore_errors=True)
    for db in (name, f"{name}_restored"):
        admin.command(f"DROP DATABASE IF EXISTS `{db}` SYNC")


def _busy(db: str, stop: threading.Event, errors: list) -> list[threading.Thread]:
    """A writer that re-inserts overlapping keys with new versions (as replayed and updated
    spans do, and as the trace_index view aggregates) and a merger running OPTIMIZE."""

    def write():
        client = new_client(database=db)
        round_no = 0
        try:
            while not stop.is_set():
                round_no += 1
                first = (round_no * 150) % 3000
                client.command(SPANS, parameters={"round": round_no, "first": first})
                client.command(CONTENT, parameters={"first": first})
        except Exception as exc:  # surfaced by the test
            errors.append(exc)

    def merge():
        client = new_client(database=db)
        try:
            while not stop.is_set():
                for table in ("spans", "span_content", "trace_index", "cost_hourly"):
                    client.command(f"OPTIMIZE TABLE `{table}` FINAL")
                time.sleep(0.05)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write), threading.Thread(target=merge)]
    for thread in threads:
        thread.start()
    return threads


def test_backup_taken_while_rows_arrive_and_merge_restores_and_verifies(live_database):
    stop, errors = threading.Event(), []
    threads = _busy(live_database, stop, errors)
    try:
        time.sleep(0.5)  # writes and merges under way
        run = backups.backup(db=live_database)
        time.sleep(0.3)  # and still going after BACKUP returned
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert run.status == BackupRun.Status.SUCCEEDED, run.error
    assert run.tables["spans"]["rows"] >= 2000 and run.tables["span_content"]["rows"] >= 250
    assert run.tables["trace_index"]["rows"] > 0
    assert set(run.views) == {"trace_index_mv", "cost_hourly_mv", "span_metrics_hourly_mv"}

    found = backups.restore(run, into=f"{live_database}_restored")
    assert {t: (f["rows"], f["checksum"]) for t, f in found.items()} == {
        t: (f["rows"], f["checksum"]) for t, f in run.tables.items()}
    # The restored copy merges on its own; its figures do not move.
    client = new_client(database=f"{live_database}_restored")
    for table in ("spans", "span_content", "trace_index"):
        client.command(f"OPTIMIZE TABLE `{table}` FINAL")
    again = backups.table_facts(client, f"{live_database}_restored")
    assert {t: (f["rows"], f["checksum"]) for t, f in again.items()} == {
        t: (f["rows"], f["checksum"]) for t, f in found.items()}


def _rows(db: str, table: str) -> int:
    return new_client(database=db).command(f"SELECT count() FROM `{table}` FINAL")


def test_restore_into_the_live_database_needs_yes_then_replaces_and_verifies(
        live_database, capsys):
    run = backups.backup(db=live_database)
    assert run.status == BackupRun.Status.SUCCEEDED, run.error
    # Written after the backup: a replace drops these.
    new_client(database=live_database).command(
        SPANS, parameters={"round": 9, "first": 10_000})
    before = {t: _rows(live_database, t) for t in ("spans", "span_content", "trace_index")}
    assert before["spans"] == run.tables["spans"]["rows"] + 400

    with pytest.raises(CommandError, match="refusing to replace .* without --yes"):
        call_command("restore_backup", str(run.pk))
    said = capsys.readouterr().out
    assert f"replaces in database {live_database}" in said
    assert f"spans (ReplacingMergeTree): {before['spans']} rows now, " \
           f"{run.tables['spans']['rows']} in the backup" in said
    assert "trace_index_mv (MaterializedView): view" in said
    assert {t: _rows(live_database, t) for t in before} == before  # nothing changed

    call_command("restore_backup", str(run.pk), "--yes")
    said = capsys.readouterr().out
    assert f"restored backup {run.pk} into {live_database}: verified" in said
    assert _rows(live_database, "spans") == run.tables["spans"]["rows"]
    restored = backups.table_facts(new_client(database="default"), live_database)
    assert {t: f["checksum"] for t, f in restored.items()} == {
        t: f["checksum"] for t, f in run.tables.items()}
    # The views came back and feed the restored tables again.
    client = new_client(database=live_database)
    client.command(SPANS, parameters={"round": 10, "first": 50_000})
    assert client.command("SELECT count() FROM trace_index FINAL WHERE trace_id = 't200'") > 0
    assert _rows(live_database, "spans") == run.tables["spans"]["rows"] + 400


def test_restore_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        call_command("restore_backup", "--help")
    text = capsys.readouterr().out
    assert "--yes" in text and "DROP and recreate" in text and "--into" in text


def test_a_backup_recorded_with_raw_figures_is_verified_the_same_way(live_database):
    run = backups.backup(db=live_database)
    client = new_client(database="default")
    run.tables = backups.table_facts(client, live_database, deduplicated=False)
    run.save()
    found = backups.restore(run, into=f"{live_database}_restored")
    assert not any(facts["deduplicated"] for facts in found.values())
