"""The embedded ClickHouse server (llmops.chserver), driven through clickhouse-connect and raw
HTTP. Every test here starts its own server process on a free port over a temporary data
directory: none needs the platform's services."""

import datetime as dt
import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import clickhouse_connect
import lz4.frame
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from llmops.chserver.sql import NEED_MORE, InsertWithData, split_insert

REPO = Path(__file__).resolve().parent.parent


# tests/conftest.py checks and resets the platform's services for every test; these tests
# run their own server and need none, so they replace those fixtures for this module.
@pytest.fixture(scope="session")
def platform_services():
    yield


@pytest.fixture
def fresh_process_caches():
    yield


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m llmops.chserver` over root/data, root/backups."""

    def __init__(self, root: Path, pool_size: int = 4) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.backups_dir = root / "backups"
        self.pool_size = pool_size
        self.port = 0
        self.password = ""
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "ServerProcess":
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHSERVER_")}
        env["PYTHONPATH"] = str(REPO)
        self.log_path = self.root / f"chserver-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llmops.chserver", "--data-dir", str(self.data_dir),
                 "--backups-dir", str(self.backups_dir), "--host", "127.0.0.1",
                 "--port", str(self.port), "--pool-size", str(self.pool_size),
                 "--log-level", "DEBUG"],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"chserver exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, body, _ = self.http("GET", "/ping")
                if status == 200 and body == b"Ok.\n":
                    # Generated at start, next to the data directory.
                    self.password = (self.root / "credentials").read_text().strip()
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.proc.kill()
        pytest.fail(f"chserver did not answer /ping within {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM; the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"chserver did not stop within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def client(self, **kwargs):
        kwargs.setdefault("password", self.password)
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, **kwargs)

    @property
    def auth(self) -> dict[str, str]:
        return {"X-ClickHouse-User": "default", "X-ClickHouse-Key": self.password}

    def http(self, method: str, path: str, body=None, headers=None, **params):
        """One raw request: (status, body, headers)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            url = path + ("?" + urlencode(params) if params else "")
            conn.request(method, url, body=body, headers={**self.auth, **(headers or {})},
                         encode_chunked=body is not None and not isinstance(body, bytes))
            response = conn.getresponse()
            return response.status, response.read(), response.headers
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(tmp_path_factory.mktemp("chserver")).start()
    admin = proc.client()
    admin.command("CREATE DATABASE IF NOT EXISTS t")
    admin.close()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """A server with one pooled connection: every request reuses the same chDB connection,
    so whatever one request leaves behind, the next one sees."""
    proc = ServerProcess(tmp_path_factory.mktemp("chserver-single"), pool_size=1).start()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture
def client(server):
    c = server.client()
    yield c
    c.close()


def _table(prefix: str) -> str:
    return f"t.{prefix}_{uuid.uuid4().hex[:8]}"


# --- SQL routing -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "statement", "fmt", "data"), [
    (b"INSERT INTO t (a, b) FORMAT Native\n\x01\x02", "INSERT INTO t (a, b) ", "Native",
     b"\x01\x02"),
    (b"INSERT INTO t FORMAT TabSeparated  \r\n1\tx\n", "INSERT INTO t ", "TabSeparated",
     b"1\tx\n"),
    (b"INSERT INTO `format` (`values`) SETTINGS a = 'FORMAT x' FORMAT CSV\n1\n",
     "INSERT INTO `format` (`values`) SETTINGS a = 'FORMAT x' ", "CSV", b"1\n"),
    (b"/* FORMAT x */ INSERT -- VALUES\nINTO t VALUES (1, 'a')",
     "/* FORMAT x */ INSERT -- VALUES\nINTO t ", "Values", b" (1, 'a')"),
    (b"INSERT INTO t (a, values) FORMAT JSONEachRow {\"a\": 1}", "INSERT INTO t (a, values) ",
     "JSONEachRow", b"{\"a\": 1}"),
])
def test_split_insert_finds_the_data(text, statement, fmt, data):
    found = split_insert(text, final=True)
    assert isinstance(found, InsertWithData)
    assert (found.statement, found.fmt, text[found.data_start:]) == (statement, fmt, data)


def test_split_insert_tells_queries_and_partial_statements_apart():
    assert split_insert(b"SELECT 1 FORMAT Native", final=True) is None
    assert split_insert(b"INSERT INTO t SELECT * FROM s FORMAT x", final=True) is None
    assert split_insert(b"INSERT INTO t FROM INFILE 'f' FORMAT CSV", final=True) is None
    assert split_insert(b"INSERT INTO t FORMAT Nat", final=False) is NEED_MORE
    assert split_insert(b"INSERT INTO t FORMAT Native", final=False) is NEED_MORE
    assert split_insert(b"INSERT INTO t SETTINGS a = 'x", final=False) is NEED_MORE
    assert split_insert(b"", final=False) is NEED_MORE
    assert split_insert(b"", final=True) is None


# --- HTTP interface ----------------------------------------------------------------------

def test_ping_and_root(server):
    assert server.http("GET", "/ping")[:2] == (200, b"Ok.\n")
    assert server.http("GET", "/")[:2] == (200, b"Ok.\n")


def test_formats_and_headers(server):
    status, body, headers = server.http("GET", "/", query="SELECT 1 AS x, 'a' AS y",
                                        default_format="JSONEachRow", query_id="q-1")
    assert (status, body) == (200, b'{"x":1,"y":"a"}\n')
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert headers["Content-Type"].startswith("application/json")
    assert headers["X-ClickHouse-Query-Id"] == "q-1"
    assert headers["X-ClickHouse-Timezone"] == "UTC"
    assert headers["X-ClickHouse-Server-Display-Name"]
    summary = json.loads(headers["X-ClickHouse-Summary"])
    assert set(summary) >= {"read_rows", "read_bytes", "written_rows", "written_bytes",
                            "total_rows_to_read", "result_rows", "result_bytes"}
    assert summary["result_rows"] == "1"

    status, body, headers = server.http("POST", "/", body=b"SELECT number FROM numbers(3)"
                                        b" FORMAT CSV", default_format="JSON")
    assert (status, body, headers["X-ClickHouse-Format"]) == (200, b"0\n1\n2\n", "CSV")
    status, body, headers = server.http("POST", "/", body=b"SELECT 'x\\ty'")
    assert (status, body, headers["X-ClickHouse-Format"]) == (200, b"x\\ty\n", "TabSeparated")
    # The URL's query text comes first, then the body.
    assert server.http("POST", "/", body=b"+ 2", query="SELECT 1")[:2] == (200, b"3\n")


def test_errors_in_the_clickhouse_shape(server):
    status, body, headers = server.http("POST", "/", body=b"SELECT * FROM t.no_such_table")
    assert status == 404
    assert headers["X-ClickHouse-Exception-Code"] == "60"
    text = body.decode()
    assert text.startswith("Code: 60. DB::Exception: ")
    assert "(UNKNOWN_TABLE) (version " in text
    status, body, headers = server.http("POST", "/", body=b"SELEC 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "62")
    status, body, headers = server.http("POST", "/", body=b"   ")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "62")


def test_text_inserts_in_every_encoding_and_chunking(server, client):
    table = _table("enc")
    client.command(f"CREATE TABLE {table} (n UInt32, s String) ENGINE = MergeTree ORDER BY n")
    # 3 MB that compress to about half: bodies larger than the server's 1 MB read pieces,
    # so frames straddle pieces and pieces hold several frames.
    rows = b"".join(b"%d\t%s\n" % (i, os.urandom(1500).hex().encode()) for i in range(1000))
    query = f"INSERT INTO {table} FORMAT TabSeparated"

    def frames(data: bytes) -> bytes:  # lz4 frames back to back, as clickhouse-connect sends
        step = 100_000
        return b"".join(lz4.frame.compress(data[i:i + step]) for i in range(0, len(data), step))

    encodings = {"gzip": gzip.compress, "deflate": zlib.compress, "lz4": frames}
    try:
        from backports import zstd
        encodings["zstd"] = zstd.compress
    except ImportError:
        pass
    for name, compress in encodings.items():
        status, body, _ = server.http("POST", "/", body=compress(rows), query=query,
                                      headers={"Content-Encoding": name})
        assert (name, status, body) == (name, 200, b"")
    # The query in the body, cut across chunks anywhere (Transfer-Encoding: chunked).
    whole = f"INSERT INTO {table} FOR".encode(), b"MAT TabSepar", b"ated", b"\n1\tx\n", b"2\ty\n"
    status, body, headers = server.http("POST", "/", body=iter(whole))
    assert (status, body) == (200, b""), body
    assert json.loads(headers["X-ClickHouse-Summary"])["written_rows"] == "2"
    assert client.command(f"SELECT count(), sum(n), sum(length(s)) FROM {table}") == [
        str(1000 * len(encodings) + 2), str(499500 * len(encodings) + 3),
        str(3_000_000 * len(encodings) + 2),
    ]


def test_a_failed_insert_keeps_the_connection_usable(server, client):
    table = _table("bad")
    client.command(f"CREATE TABLE {table} (n UInt32) ENGINE = MergeTree ORDER BY n")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        body = f"INSERT INTO {table} FORMAT TabSeparated\n1\nnot a number\n".encode()
        conn.request("POST", "/", body=body, headers=server.auth)
        response = conn.getresponse()
        assert response.status == 400
        assert b"CANNOT_PARSE" in response.read()
        assert response.headers["X-ClickHouse-Exception-Code"] == "27"
        conn.request("POST", "/", body=f"SELECT count() FROM {table}".encode(),
                     headers=server.auth)
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"0\n")
    finally:
        conn.close()


# --- through clickhouse-connect ----------------------------------------------------------

def test_handshake(client):
    assert client.server_tz.utcoffset(dt.datetime(2024, 7, 1)) == dt.timedelta(0)
    assert client.server_version.split(".")[0].isdigit()
    assert client.command("SELECT 1") == 1
    assert client.query("SELECT timezone()").result_rows == [("UTC",)]


COLUMNS = {
    "s": "String", "lc": "LowCardinality(String)", "t3": "DateTime64(3, 'UTC')",
    "t6": "DateTime64(6)", "m1": "Map(LowCardinality(String), String)",
    "m2": "Map(String, UInt64)", "arr": "Array(String)", "ns": "Nullable(String)",
    "nf": "Nullable(Float64)", "u8": "UInt8", "u32": "UInt32", "u64": "UInt64", "i64": "Int64",
    "f32": "Float32", "f64": "Float64", "d1": "Decimal(18, 12)", "d2": "Decimal64(12)",
    "id": "UUID", "b": "Bool", "d": "Date",
}
ROWS = [
    ("it's \"q\"\t\n\\ é 🚀\x00", "gpt-4o", dt.datetime(2024, 2, 29, 23, 59, 59, 123000),
     dt.datetime(2024, 1, 1, 0, 0, 0, 123456), {"model": "x", "k": ""},
     {"a": 2**64 - 1, "b": 0}, ["", "a'b", "ü"], None, None, 255, 1, 2**64 - 1, -2**63,
     1.5, 0.1, Decimal("123456.123456789012"), Decimal("-0.000000000001"),
     uuid.UUID("12345678-1234-5678-1234-567812345678"), True, dt.date(2024, 2, 29)),
    ("", "", dt.datetime(1970, 1, 1, 0, 0, 0, 1000), dt.datetime(2262, 4, 11, 23, 47, 16, 854775),
     {}, {}, [], "x", 2.5, 0, 2, 0, 2**63 - 1, -0.25, -1e300, Decimal("0"),
     Decimal("999999.999999999999"), uuid.UUID(int=0), False, dt.date(1970, 1, 1)),
]


@pytest.mark.parametrize("compress", [True, False])
def test_every_column_type_round_trips(server, compress):
    client = server.client(compress=compress)
    table = _table("types")
    columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    client.command(f"CREATE TABLE {table} ({columns}) ENGINE = MergeTree ORDER BY u32")
    summary = client.insert(table, ROWS, column_names=list(COLUMNS))
    assert summary.written_rows == 2
    result = client.query(f"SELECT * FROM {table} ORDER BY u32")
    assert result.column_names == tuple(COLUMNS)
    # Decimal64(12) is an alias: ClickHouse names the type Decimal(18, 12).
    assert [t.name for t in result.column_types] == [
        "Decimal(18, 12)" if kind == "Decimal64(12)" else kind for kind in COLUMNS.values()]
    assert result.result_rows == ROWS
    # The same rows as text, to check the server's own rendering.
    text = client.raw_query(f"SELECT u64, i64, d1, t6, m2 FROM {table} ORDER BY u32",
                            fmt="TabSeparated")
    assert text == (b"18446744073709551615\t-9223372036854775808\t123456.123456789012\t"
                    b"2024-01-01 00:00:00.123456\t{'a':18446744073709551615,'b':0}\n"
                    b"0\t9223372036854775807\t0\t2262-04-11 23:47:16.854775\t{}\n")
    client.close()


def test_query_parameters(client):
    assert client.query("SELECT {x:String}", parameters={"x": "it's"}).result_rows == [("it's",)]
    hostile = "it's'; DROP TABLE t.params; -- \\' \" ` \t\n\\N {x:String} é"
    table = "t.params"
    client.command(f"CREATE TABLE IF NOT EXISTS {table} (s String) ENGINE = MergeTree ORDER BY s")
    client.insert(table, [[hostile], ["other"]], column_names=["s"])
    result = client.query(
        f"SELECT {{x:String}}, count() FROM {table} WHERE s = {{x:String}}",
        parameters={"x": hostile},
    )
    assert result.result_rows == [(hostile, 1)]
    assert client.command(f"SELECT count() FROM {table}") == 2  # still there
    typed = client.query(
        "SELECT {a:Array(String)}, {n:UInt64}, {t:DateTime64(3)}",
        parameters={"a": ["x'y", ""], "n": 2**64 - 1, "t": dt.datetime(2024, 5, 6, 7, 8, 9, 10000)},
    )
    assert typed.result_rows == [(["x'y", ""], 2**64 - 1, dt.datetime(2024, 5, 6, 7, 8, 9, 10000))]
    # Past 4 KiB clickhouse-connect sends the parameters as multipart/form-data fields.
    long_value = "a'" * 5000
    assert client.query("SELECT length({x:String}), {x:String} = {y:String}",
                        parameters={"x": long_value, "y": long_value}).result_rows == [(10000, 1)]


@pytest.mark.parametrize("compress", [True, False])
def test_large_insert_and_select(server, compress):
    client = server.client(compress=compress)
    table = _table("large")
    client.command(f"CREATE TABLE {table} (id UInt64, s String, m Map(LowCardinality(String),"
                   " String), arr Array(String)) ENGINE = MergeTree ORDER BY id")
    n = 100_000
    rows = [(i, "x" * 500, {"model": "gpt", "k": str(i)}, ["a", str(i)]) for i in range(n)]
    started = time.monotonic()
    summary = client.insert(table, rows, column_names=["id", "s", "m", "arr"])
    inserted = time.monotonic() - started
    started = time.monotonic()
    back = client.query(f"SELECT * FROM {table} ORDER BY id").result_rows
    selected = time.monotonic() - started
    print(f"\n100,000 rows compress={compress}: insert {inserted:.2f}s, select {selected:.2f}s")
    assert summary.written_rows == n
    assert len(back) == n and back[0] == rows[0] and back[-1] == rows[-1]
    assert client.command(f"SELECT count(), sum(id), sum(length(s)), sum(length(arr)),"
                          f" uniqExact(m['k']) FROM {table}") == [
        str(n), str(n * (n - 1) // 2), str(500 * n), str(2 * n), str(n)]
    # Generous bounds: about a second each is expected here; these catch pathologies.
    assert inserted < 10 and selected < 10
    assert list((server.root / "tmp").iterdir()) == []  # the spooled body left nothing
    client.close()


def test_other_insert_forms(server, client):
    table = _table("forms")
    client.command(f"CREATE TABLE {table} (n UInt32, s String) ENGINE = MergeTree ORDER BY n")
    client.command(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'it''s')")
    client.raw_insert(table, ["n", "s"], insert_block=b'{"n": 3, "s": "j"}\n', fmt="JSONEachRow")
    client.raw_insert(table, ["n", "s"], insert_block="4\tt\n", fmt="TabSeparated")
    client.command(f"INSERT INTO {table} SELECT 5, 'sel'")
    # An unqualified table name resolves in the client's database.
    in_t = server.client(database="t")
    in_t.insert(table.split(".")[1], [[6, "unqualified"]], column_names=["n", "s"])
    in_t.close()
    assert client.query(f"SELECT n, s FROM {table} ORDER BY n").result_rows == [
        (1, "a"), (2, "it's"), (3, "j"), (4, "t"), (5, "sel"), (6, "unqualified")]


def test_errors_raise_database_error(client):
    with pytest.raises(DatabaseError) as caught:
        client.query("SELECT * FROM t.no_such_table")
    assert "Code: 60" in str(caught.value)
    assert "Unknown table expression identifier 't.no_such_table'" in str(caught.value)
    assert caught.value.code == 60
    with pytest.raises(DatabaseError, match="boom"):
        client.command("SELECT throwIf(1, 'boom')")
    with pytest.raises(DatabaseError, match="UNKNOWN_TABLE"):
        client.insert("t.no_such_table", [[1]], column_names=["x"])
    table = _table("errs")
    client.command(f"CREATE TABLE {table} (n UInt8) ENGINE = MergeTree ORDER BY n")
    with pytest.raises(DatabaseError, match="CANNOT_PARSE") as caught:
        client.raw_insert(table, ["n"], insert_block="1\nnot a number\n", fmt="TabSeparated")
    assert caught.value.code == 27
    assert client.command("SELECT 2") == 2  # and the client carries on


def test_insert_deduplication_token(client):
    table = _table("dedup")
    client.command(f"CREATE TABLE {table} (id UInt64, v String, version UInt64)"
                   " ENGINE = ReplacingMergeTree(version) ORDER BY id"
                   " SETTINGS non_replicated_deduplication_window = 1000")
    rows = [[1, "a", 1], [2, "b", 1]]
    for _ in range(3):
        summary = client.insert(table, rows, column_names=["id", "v", "version"],
                                settings={"insert_deduplication_token": "batch-1"})
        assert summary.written_rows == 2
    assert client.command(f"SELECT count() FROM {table}") == 2
    client.insert(table, rows, column_names=["id", "v", "version"],
                  settings={"insert_deduplication_token": "batch-2"})
    assert client.command(f"SELECT count() FROM {table}") == 4
    assert client.command(f"SELECT count() FROM {table} FINAL") == 2


def test_insert_settings_apply_to_the_insert_alone(single):
    """An insert's URL settings go into its own SETTINGS clause (no SET before and after):
    format settings and the dedup token still apply, an unknown name is still refused, an
    insert with a SETTINGS clause of its own gets them too, and nothing outlives it."""
    client = single.client()
    client.command("CREATE DATABASE IF NOT EXISTS t")
    table = _table("insset")
    client.command(f"CREATE TABLE {table} (n UInt64, at DateTime64(6, 'UTC'))"
                   " ENGINE = MergeTree ORDER BY n"
                   " SETTINGS non_replicated_deduplication_window = 10")
    line = b'[1, "Fri, 02 Jan 2026 03:04:05 GMT"]\n'
    insert = f"INSERT INTO {table} FORMAT JSONCompactEachRow"
    status, body, _ = single.http("POST", "/", body=line, query=insert,
                                  date_time_input_format="basic")
    assert status == 400 and b"CANNOT_PARSE" in body, body
    for _ in range(2):  # the basic format did not outlive its insert; the token applies
        status, body, _ = single.http("POST", "/", body=line, query=insert,
                                      insert_deduplication_token="one")
        assert (status, body) == (200, b"")
    status, body, _ = single.http("POST", "/", body=line, query=insert, no_such_setting_xyz=1)
    assert status == 404 and b"UNKNOWN_SETTING" in body
    status, body, _ = single.http(
        "POST", "/", body=b'[2, "2026-01-02T03:04:05Z"]\n', insert_deduplication_token="two",
        date_time_input_format="best_effort", max_threads=3,
        query=f"INSERT INTO {table} SETTINGS max_insert_threads = 1 FORMAT JSONCompactEachRow")
    assert (status, body) == (200, b"")
    # Token "one" came twice and is stored once; both times parsed.
    assert client.command(f"SELECT groupArray(n), uniqExact(at) FROM (SELECT * FROM {table}"
                          " ORDER BY n)") == ["[1,2]", "1"]
    default_threads = client.command("SELECT getSetting('max_threads')")
    assert default_threads != 3
    # Settings stay SET between requests that send the same ones, never beyond them: a
    # failed SET of changed values, or a request without them, sees the default again.
    threads = "SELECT getSetting('max_threads')"
    assert client.command(threads, settings={"max_threads": 7}) == 7
    assert client.command(threads, settings={"max_threads": 7}) == 7
    with pytest.raises(DatabaseError, match="UNKNOWN_SETTING"):
        client.command(threads, settings={"max_threads": 9, "no_such_setting_xyz": 1})
    assert client.command(threads, settings={"max_threads": 5}) == 5
    assert client.command(threads) == default_threads
    client.close()


def test_settings_and_database_do_not_leak(single):
    client = single.client()
    default_threads = client.command("SELECT getSetting('max_threads')")
    assert default_threads != 7
    assert client.command("SELECT getSetting('max_threads')", settings={"max_threads": 7}) == 7
    assert client.command("SELECT getSetting('max_threads')") == default_threads
    # A SET statement lasts one request, as it does over HTTP without a session.
    client.command("SET max_threads = 5")
    assert client.command("SELECT getSetting('max_threads')") == default_threads
    # A request whose settings fail leaves none of them behind.
    with pytest.raises(DatabaseError, match="UNKNOWN_SETTING"):
        client.command("SELECT 1", settings={"max_threads": 9, "no_such_setting_xyz": 1})
    assert client.command("SELECT getSetting('max_threads')") == default_threads

    # insert_deduplication_token must not outlive its insert: if it did, the next insert of
    # different rows would be dropped as a duplicate.
    client.command("CREATE DATABASE IF NOT EXISTS t")
    client.command("CREATE TABLE t.leak (id UInt64) ENGINE = MergeTree ORDER BY id"
                   " SETTINGS non_replicated_deduplication_window = 100")
    client.insert("t.leak", [[1]], column_names=["id"],
                  settings={"insert_deduplication_token": "leak-1"})
    client.insert("t.leak", [[2]], column_names=["id"])
    client.insert("t.leak", [[3]], column_names=["id"])
    assert client.command("SELECT groupArray(id) FROM (SELECT id FROM t.leak ORDER BY id)") \
        == "[1,2,3]"

    in_t = single.client(database="t")
    assert in_t.command("SELECT currentDatabase()") == "t"
    assert client.command("SELECT currentDatabase()") == "default"
    client.command("USE system")
    assert client.command("SELECT currentDatabase()") == "default"
    assert in_t.command("SELECT currentDatabase()") == "t"
    in_t.command("SET max_threads = 5")
    assert in_t.command("SELECT currentDatabase(), getSetting('max_threads')") == [
        "t", str(default_threads)]
    assert client.command("SELECT currentDatabase()") == "default"
    assert in_t.command("SELECT currentDatabase()") == "t"
    in_t.close()
    client.close()


def test_many_clients_at_once(server):
    table = _table("conc")
    admin = server.client()
    admin.command(f"CREATE TABLE {table} (worker UInt8, n UInt32, s String)"
                  " ENGINE = MergeTree ORDER BY (worker, n)")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            client = server.client()
            for batch in range(5):
                rows = [(worker, batch * 2000 + i, "w" * 100) for i in range(2000)]
                assert client.insert(table, rows, column_names=["worker", "n", "s"]) \
                    .written_rows == 2000
                count = client.command(f"SELECT count() FROM {table} WHERE worker = {worker}")
                assert count == (batch + 1) * 2000
                assert client.query("SELECT {w:UInt8} + 1", parameters={"w": worker}) \
                    .result_rows == [(worker + 1,)]
            client.close()
        except BaseException as exc:  # reported below, from the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert admin.command(f"SELECT count(), uniqExact(worker, n) FROM {table}") == [
        "80000", "80000"]

    # Several pooled connections: a slow query does not hold up the others.
    slow = threading.Thread(target=lambda: server.client().command("SELECT sleep(2)"))
    slow.start()
    time.sleep(0.3)
    started = time.monotonic()
    for _ in range(10):
        assert admin.command("SELECT 1") == 1
    assert time.monotonic() - started < 1.5
    slow.join()
    admin.close()


def test_backup_and_restore(server, client):
    table = _table("bk")
    client.command(f"CREATE TABLE {table} (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
    client.insert(table, [(i, f"row {i}") for i in range(5000)], column_names=["n", "s"])
    target = server.backups_dir / f"backup-{uuid.uuid4().hex[:8]}"
    backup = client.command(f"BACKUP TABLE {table} TO File('{target}')")
    assert backup[1] == "BACKUP_CREATED"
    assert target.is_dir()
    client.command(f"DROP TABLE {table}")
    with pytest.raises(DatabaseError):
        client.command(f"SELECT count() FROM {table}")
    restore = client.command(f"RESTORE TABLE {table} FROM File('{target}')")
    assert restore[1] == "RESTORED"
    assert client.command(f"SELECT count(), sum(n) FROM {table}") == ["5000", str(4999 * 2500)]


def test_data_survives_sigterm_and_restart(tmp_path):
    first = ServerProcess(tmp_path).start()
    client = first.client()
    client.command("CREATE DATABASE keep")
    client.command("CREATE TABLE keep.rows (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
    client.insert("keep.rows", [(i, f"s{i}") for i in range(10_000)], column_names=["n", "s"])

    # SIGTERM while a query runs: it still gets its answer, then the server exits 0 even
    # though the client keeps an idle keep-alive connection open.
    answer = []
    slow = threading.Thread(
        target=lambda: answer.append(first.client().command("SELECT sleep(1.5) + 42")))
    slow.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert first.stop() == 0, first.log()
    slow.join()
    assert answer == [42]
    assert time.monotonic() - started < 10
    assert "chserver listening on http://127.0.0.1:" in first.log()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", first.port), timeout=2).close()
    client.close()

    second = ServerProcess(tmp_path).start()
    try:
        client = second.client()
        assert client.command("SELECT count(), sum(n), max(s) FROM keep.rows") == [
            "10000", str(9999 * 5000), "s9999"]
        client.close()
    finally:
        assert second.stop() == 0, second.log()
