"""A pool of chDB connections to one data directory, each request isolated from the last."""

import json
import logging
import os
import queue
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from llmops.chserver.sql import first_keyword

log = logging.getLogger("llmops.chserver")

_CODE = re.compile(r"Code: (\d+)\.")
_VERSION_SUFFIX = re.compile(r"\s*\(version [^)]*\)\s*$")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def setting_pairs(settings: Mapping[str, str]) -> str:
    """`name = 'value', ...` for SET or a SETTINGS clause; values are quoted, ClickHouse
    converts them."""
    for name in settings:
        if not _SETTING_NAME.match(name):
            raise ClickHouseError.new(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
    return ", ".join(f"{name} = {quote_string(str(v))}" for name, v in settings.items())


class ClickHouseError(Exception):
    """An error to report the way ClickHouse does: a numeric code and a message that reads
    `Code: N. DB::Exception: ... (NAME)`."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text

    @classmethod
    def new(cls, code: int, name: str, message: str) -> "ClickHouseError":
        return cls(code, f"Code: {code}. DB::Exception: {message}. ({name})")

    @classmethod
    def from_chdb(cls, exc: BaseException) -> "ClickHouseError":
        """chDB raises RuntimeError("Code: 60. DB::Exception: ... (UNKNOWN_TABLE)"), sometimes
        with a prefix or a version suffix; keep the ClickHouse part, else call it code 1000."""
        message = str(exc).strip()
        start = message.find("Code: ")
        if start < 0:
            return cls.new(1000, "POCO_EXCEPTION", message.rstrip(".") or type(exc).__name__)
        text = _VERSION_SUFFIX.sub("", message[start:])  # the server appends its own
        code = _CODE.match(text)
        return cls(int(code.group(1)) if code else 1000, text)


@dataclass
class Result:
    body: Any  # bytes-like: a memoryview into chDB's result buffer, to avoid a copy
    summary: dict[str, str]
    keep_alive: Any = None  # the chDB objects owning that buffer, alive until it is sent


def _summary(read_rows: int = 0, read_bytes: int = 0, written_rows: int = 0,
             written_bytes: int = 0, result_rows: int = 0, result_bytes: int = 0,
             elapsed: float = 0.0) -> dict[str, str]:
    # ClickHouse sends every X-ClickHouse-Summary value as a string.
    return {key: str(value) for key, value in {
        "read_rows": read_rows, "read_bytes": read_bytes,
        "written_rows": written_rows, "written_bytes": written_bytes,
        "total_rows_to_read": read_rows, "result_rows": result_rows,
        "result_bytes": result_bytes, "elapsed_ns": int(elapsed * 1e9),
    }.items()}


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Session:
    """One pooled chDB connection and what we know about its state: chDB keeps `USE` and
    `SET` per connection, so a request must undo what it changed before the next borrows it."""

    def __init__(self, conn: Any, baseline: Mapping[str, str]) -> None:
        self.conn = conn
        self.database: str | None = "default"
        self._baseline = baseline  # settings a fresh connection already has changed
        # Request settings left SET on the connection: clickhouse-connect sends the same few
        # with every request, so each request SETs only what differs from the last one and
        # puts back what it does not name (two chDB queries less per request, ~3 ms CPU).
        self._applied: dict[str, str] = {}
        self._dirty = False  # a user SET ran: compare everything with the baseline

    def _run(self, sql: str, fmt: str = "TabSeparated", params: Mapping[str, str] | None = None):
        try:
            return self.conn.query(sql, fmt, params=dict(params or {}))
        except RuntimeError as exc:
            raise ClickHouseError.from_chdb(exc) from None

    def use(self, database: str) -> None:
        if database != self.database:
            self.database = None  # unknown until USE succeeds
            self._run(f"USE {quote_identifier(database)}")
            self.database = database

    def apply(self, settings: Mapping[str, str], *, in_query: bool = False) -> None:
        """Make the connection's settings the baseline plus `settings`; with `in_query` the
        statement carries `settings` in its own SETTINGS clause, so only the names it does
        not carry are put back."""
        wanted = {name: str(value) for name, value in settings.items()}
        setting_pairs(wanted)  # refuse a malformed name before anything changes
        stale = [name for name in self._applied if name not in wanted]
        if stale:
            for name in stale:
                del self._applied[name]
            self._put_back(stale)
        changed = {n: v for n, v in wanted.items() if self._applied.get(n) != v}
        if changed and not in_query:
            # A SET that fails changes nothing: _applied stays true.
            self._run(f"SET {setting_pairs(changed)}")
            self._applied.update(changed)

    def _restore(self, names: Iterable[str]) -> None:
        pairs = [
            f"{n} = {quote_string(self._baseline[n])}" if n in self._baseline else f"{n} = DEFAULT"
            for n in names
        ]
        if pairs:
            self._run("SET " + ", ".join(pairs))

    def _put_back(self, names: list[str]) -> None:
        try:
            self._restore(dict.fromkeys(names))
        except ClickHouseError:
            # A SET of the same names just failed as a whole, so none of them was applied;
            # restore one by one to be sure and skip the names chDB does not know.
            for name in names:
                with suppress(ClickHouseError):
                    self._restore([name])

    def reset(self) -> None:
        """After a user SET, put back every setting that differs from the baseline (request
        settings stay applied otherwise: `apply` diffs the next request's against them)."""
        if not self._dirty:
            return
        changed = self._run(
            "SELECT name, value FROM system.settings WHERE changed", "JSONEachRow"
        ).bytes()
        rows = (json.loads(line) for line in changed.splitlines())
        # `database` follows USE, which use() tracks and sets per request anyway.
        names = list(self._applied) + [
            r["name"] for r in rows
            if r["name"] != "database" and self._baseline.get(r["name"]) != r["value"]
        ]
        self._applied, self._dirty = {}, False
        self._put_back(list(dict.fromkeys(names)))

    def query(self, sql: str, fmt: str, params: Mapping[str, str]) -> Result:
        keyword = first_keyword(sql)
        if keyword == "USE":
            self.database = None
        elif keyword == "SET":
            self._dirty = True  # no sessions here: a SET lasts one request, as without one
        res = self._run(sql, fmt, params)
        memview = res.get_memview() if res.size() else None
        body = memview.view() if memview is not None else b""
        summary = _summary(
            read_rows=res.storage_rows_read(), read_bytes=res.storage_bytes_read(),
            written_rows=res.rows_written(), written_bytes=res.bytes_written(),
            result_rows=res.rows_read(), result_bytes=res.bytes_read(), elapsed=res.elapsed(),
        )
        return Result(body, summary, keep_alive=(res, memview))

    def insert(self, statement: str, fmt: str, chunks: Iterable[bytes]) -> Result:
        """Stream data into `statement` (an INSERT without its FORMAT clause)."""
        try:
            inserter = self.conn.send_insert(statement, fmt)
        except RuntimeError as exc:
            raise ClickHouseError.from_chdb(exc) from None
        try:
            for chunk in chunks:
                self.conn.insert_append(inserter, chunk)
            done = self.conn.insert_done(inserter)
        except BaseException as exc:
            with suppress(RuntimeError):  # when it failed, nothing is left to cancel
                self.conn.insert_cancel(inserter)
            if isinstance(exc, RuntimeError):
                raise ClickHouseError.from_chdb(exc) from None
            raise
        rows, size = done.rows_written(), done.bytes_written()
        # An INSERT reads what it writes; clickhouse-connect callers check written_rows.
        return Result(b"", _summary(rows, size, rows, size, elapsed=done.elapsed()))


# Table functions and table engines that stay inside the server (with every *MergeTree
# engine): everything else chDB
# knows (file, url, s3, remote, mysql, executable, python, ... and whatever a later chDB
# adds) reaches outside its directories and is refused by the HTTP layer.
INSIDE = frozenset(name.lower() for name in (
    # table functions
    "SQLStandardValues", "dictionary", "format", "generateRandom", "generateSeries",
    "generate_series", "input", "loop", "merge", "mergeTreeAnalyzeIndexes",
    "mergeTreeAnalyzeIndexesUUID", "mergeTreeCodecBlockCounts", "mergeTreeIndex",
    "mergeTreeProjection", "mergeTreeTextIndex", "null", "numbers", "numbers_mt", "primes",
    "values", "view", "viewExplain", "viewIfPermitted", "zeros", "zeros_mt",
    # table engines
    "Alias", "Buffer", "Dictionary", "EmbeddedRocksDB", "GenerateRandom", "Join", "KeeperMap",
    "Log", "Loop", "MaterializedView", "Memory", "Merge", "Null", "Set", "StripeLog",
    "TimeSeries", "TinyLog", "View",
))


def write_config(data_dir: Path, backups_dir: Path) -> Path:
    """The chDB config file, next to the data directory: BACKUP/RESTORE need an allowed path;
    user files and remote hosts are confined too, for a chDB that enforces them (26.9 does
    not: the HTTP layer refuses those functions)."""
    path = data_dir.parent / "chserver-config.xml"
    user_files = data_dir / "user_files"
    user_files.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "<clickhouse>\n"
        "    <backups>\n"
        f"        <allowed_path>{escape(str(backups_dir))}/</allowed_path>\n"
        "    </backups>\n"
        f"    <user_files_path>{escape(str(user_files))}/</user_files_path>\n"
        "    <remote_url_allow_hosts><host_regexp>^$</host_regexp></remote_url_allow_hosts>\n"
        "</clickhouse>\n"
    )
    return path


class Engine:
    """pool_size chDB connections to one directory. chDB runs one query at a time per
    connection but several connections at once, so a slow query does not block the rest."""

    def __init__(self, data_dir: Path, backups_dir: Path, pool_size: int) -> None:
        if pool_size < 1:
            raise ValueError("pool size must be at least 1")
        self.data_dir = data_dir.resolve()
        self.backups_dir = backups_dir.resolve()
        self.pool_size = pool_size
        self.version = ""
        self.timezone = ""
        self._pool: queue.Queue[Session] = queue.Queue()
        self._sessions: list[Session] = []
        # Names that reach outside the data and backup directories when called: chDB's
        # table functions and engines but those INSIDE, and the file() function.
        self.outside_names: frozenset[str] = frozenset({"file"})

    def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.backups_dir.mkdir(parents=True, exist_ok=True)
        config = write_config(self.data_dir, self.backups_dir)
        # chDB ignores <timezone> in the config file but follows TZ; the platform is UTC.
        # It must be set before chdb is first imported (its import starts the engine).
        os.environ["TZ"] = "UTC"
        time.tzset()
        from chdb import _chdb

        url = f"file:{self.data_dir}?config-file={config}"
        conns = [_chdb.connect(url) for _ in range(self.pool_size)]
        probe = conns[0].query(
            "SELECT name, value FROM system.settings WHERE changed", "JSONEachRow"
        ).bytes()
        baseline = {row["name"]: row["value"] for row in map(json.loads, probe.splitlines())}
        self.version, self.timezone = (
            conns[0].query("SELECT version(), timezone()", "TabSeparated").bytes()
            .decode().strip().split("\t")
        )
        known = conns[0].query(
            "SELECT name FROM system.table_functions UNION ALL "
            "SELECT name FROM system.table_engines", "TabSeparated").bytes().decode()
        self.outside_names = frozenset(
            name.lower() for name in known.split() if not name.endswith("MergeTree")
        ) - INSIDE | {"file"}
        for conn in conns:
            session = Session(conn, baseline)
            self._sessions.append(session)
            self._pool.put(session)

    def close(self) -> None:
        """Close every connection (after the requests using them have finished)."""
        for session in self._sessions:
            try:
                session.conn.close()
            except Exception:  # keep closing the others
                log.exception("closing a chDB connection failed")
        self._sessions.clear()

    @contextmanager
    def session(self, database: str, settings: Mapping[str, str], *,
                in_query: bool = False) -> Iterator[Session]:
        """Borrow a connection, switched to `database` with `settings` applied for this use
        (`in_query`: the statement carries them in its SETTINGS clause)."""
        session = self._pool.get()
        try:
            session.use(database)
            session.apply(settings, in_query=in_query)
            yield session
        finally:
            try:
                session.reset()
            except Exception:
                log.exception("resetting a chDB connection failed")
            self._pool.put(session)
