"""The ClickHouse HTTP interface over the chDB pool: as much of it as clickhouse-connect uses."""

import base64
import hmac
import json
import logging
import re
import select
import socket
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import lz4.frame

from llmops.chserver.engine import ClickHouseError, Engine, Result, setting_pairs
from llmops.chserver.sql import (
    NEED_MORE,
    InsertWithData,
    first_keyword,
    reaches_outside,
    split_insert,
    trailing_format,
)
from llmops.local_secrets import local_secret

try:
    from backports import zstd
except ImportError:  # optional: clickhouse-connect only offers zstd when it has it too
    zstd = None

log = logging.getLogger("llmops.chserver")

# URL parameters the HTTP layer consumes; chDB would reject most of them as unknown settings
# and the rest mean nothing without a socket (progress headers, HTTP compression, ...).
HTTP_ONLY = frozenset({
    "query", "database", "default_format", "user", "password", "quota_key", "query_id",
    "session_id", "session_timeout", "session_check", "close_session", "compress",
    "decompress", "buffer_size", "wait_end_of_query", "client_protocol_version", "role",
    "stacktrace", "send_progress_in_http_headers", "enable_http_compression",
    "cancel_http_readonly_queries_on_client_close", "add_http_cors_header",
})
HTTP_ONLY_PREFIXES = ("http_", "param_")
# An INSERT that already has its SETTINGS clause gets the URL's settings by SET instead.
_SETTINGS_CLAUSE = re.compile(r"\bSETTINGS\b", re.IGNORECASE)

# Statements that answer with a result set even when it is empty (X-ClickHouse-Format).
RESULT_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})

# A few codes ClickHouse answers with 4xx; everything else is 500.
STATUS = {
    6: 400, 27: 400, 38: 400, 41: 400, 53: 400, 62: 400, 72: 400, 117: 400,  # bad input
    46: 404, 47: 404, 50: 404, 60: 404, 73: 404, 81: 404, 115: 404,  # unknown names
    516: 401,  # AUTHENTICATION_FAILED
    497: 403,  # ACCESS_DENIED
}
USER = "default"  # the one user, as in a fresh ClickHouse; the password is generated

PIECE = 1 << 20  # read and hand the body to chDB in pieces of this size
SPOOL_IN_MEMORY = 16 << 20  # insert data beyond this goes to an anonymous temp file
REQUEST_TIMEOUT = 300  # seconds a started request may stall on the socket


def _decompressor(encoding: str) -> Callable[[], Any] | None:
    if encoding in ("", "identity"):
        return None
    if encoding == "lz4":
        return lz4.frame.LZ4FrameDecompressor
    if encoding in ("gzip", "x-gzip"):
        return lambda: zlib.decompressobj(wbits=31)
    if encoding == "deflate":
        return zlib.decompressobj
    if encoding == "zstd" and zstd is not None:
        return zstd.ZstdDecompressor
    raise ClickHouseError.new(36, "BAD_ARGUMENTS", f"Unsupported Content-Encoding: {encoding}")


def _decode(raw: Iterable[bytes], make: Callable[[], Any]) -> Iterator[bytes]:
    """Undo a Content-Encoding that may be a SEQUENCE of frames: clickhouse-connect sends one
    lz4 frame per block, and a one-shot decompress would silently keep only the first."""
    decompressor, fresh = make(), True
    for chunk in raw:
        while chunk:
            fresh = False
            try:
                out = decompressor.decompress(chunk)
            except Exception as exc:
                message = f"Bad request body: {exc}"
                raise ClickHouseError.new(271, "CANNOT_DECOMPRESS", message) from None
            if out:
                yield out
            if not decompressor.eof:
                break
            chunk, decompressor, fresh = decompressor.unused_data, make(), True
    if not fresh:
        raise ClickHouseError.new(271, "CANNOT_DECOMPRESS", "Request body ends inside a frame")


class Body:
    """The request body as it arrives (Content-Length or chunked), Content-Encoding undone."""

    def __init__(self, rfile: Any, headers: Any) -> None:
        self._rfile = rfile
        self.finished = False
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            self._raw = self._chunked()
        else:
            self._raw = self._sized(int(headers.get("Content-Length") or 0), last=True)
        make = _decompressor(headers.get("Content-Encoding", "").strip().lower())
        self.chunks = _decode(self._raw, make) if make else self._raw

    def _sized(self, size: int, last: bool = False) -> Iterator[bytes]:
        while size > 0:
            piece = self._rfile.read(min(size, PIECE))
            if not piece:
                raise ConnectionError("client closed the connection inside the body")
            size -= len(piece)
            yield piece
        if last:
            self.finished = True

    def _chunked(self) -> Iterator[bytes]:
        while True:
            line = self._rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise ClickHouseError.new(36, "BAD_ARGUMENTS", "Malformed chunked body") from None
            if size == 0:
                while self._rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                self.finished = True
                return
            yield from self._sized(size)
            self._rfile.readline(3)  # the CRLF after each chunk

    def drain(self) -> None:
        """Read what is left, so the connection can carry the next request."""
        for _ in self._raw:
            pass


def _form_fields(content_type: str, data: bytes) -> dict[str, str]:
    """multipart/form-data fields: clickhouse-connect sends long parameters this way."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + data
    )
    fields = {}
    for part in message.iter_parts():
        if part.get_filename():
            raise ClickHouseError.new(48, "NOT_IMPLEMENTED", "External data is not supported")
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = part.get_payload(decode=True).decode()
    return fields


def _content_type(fmt: str) -> str:
    lower = fmt.lower()
    if lower.startswith("json"):
        return "application/json; charset=UTF-8"
    if lower.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if lower.startswith("csv"):
        return "text/csv; charset=UTF-8; header=absent"
    if lower.startswith(("native", "rowbinary", "parquet", "arrow", "orc", "avro", "msgpack")):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def _pieces(file: Any) -> Iterator[bytes]:
    while piece := file.read(PIECE):
        yield piece


def _excerpt(text: str) -> str:
    return " ".join(text.split())[:200]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clickhouse-connect pools its connections
    # Headers and body go out as two writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers on a kept-alive connection: 40 ms per query, seen here.
    disable_nagle_algorithm = True
    server_version = "chserver"
    timeout = REQUEST_TIMEOUT
    server: "Server"

    def handle_one_request(self) -> None:
        # Wait for the next request in short slices, so that on shutdown an idle keep-alive
        # connection closes at once while a request that has started arriving is served.
        # (Clients do not pipeline, so nothing waits unseen in rfile's buffer.)
        poller = select.poll()
        poller.register(self.connection, select.POLLIN)
        while not poller.poll(200):
            if self.server.stopping.is_set():
                self.close_connection = True
                return
        super().handle_one_request()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _serve logs each request once, with more to say

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)

    def _serve(self) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        self._body: Body | None = None
        self._text = ""  # the query, for the log
        try:
            self._body = Body(self.rfile, self.headers)
            if url.path == "/ping" or (
                url.path == "/" and self.command == "GET" and "query" not in params
            ):
                self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            if url.path != "/":
                raise ClickHouseError.new(36, "BAD_ARGUMENTS", f"No handler for {url.path}")
            self._authenticate(params)
            result, fmt = self._execute(params, self._body)
        except ClickHouseError as exc:
            self._fail(exc, query_id)
            return
        except (ConnectionError, TimeoutError) as exc:
            log.warning("%s %s: connection lost: %s", self.command, url.path, exc)
            self.close_connection = True
            return
        except Exception as exc:
            log.exception("%s %s failed", self.command, url.path)
            self._fail(ClickHouseError.from_chdb(exc), query_id)
            return
        headers = {
            "Content-Type": _content_type(fmt) if fmt else "text/plain; charset=UTF-8",
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Summary": json.dumps(result.summary, separators=(",", ":")),
            **self._server_headers(),
        }
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
        self._reply(200, result.body, headers)
        log.debug(
            "%s %s 200 %.1f ms %s", self.command, url.path,
            (time.monotonic() - started) * 1000, _excerpt(self._text),
        )

    def _authenticate(self, params: dict[str, str]) -> None:
        """As ClickHouse: credentials in X-ClickHouse-User/Key, basic auth, or the URL."""
        user = self.headers.get("X-ClickHouse-User") or params.get("user")
        password = self.headers.get("X-ClickHouse-Key") or params.get("password")
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                user = password = None
        user = user or USER
        expected = self.server.password
        if expected is None:
            return
        if user != USER or not hmac.compare_digest((password or "").encode(), expected.encode()):
            raise ClickHouseError.new(
                516, "AUTHENTICATION_FAILED", f"{user}: Authentication failed: password is "
                "incorrect, or there is no user with such name")

    def _refuse_outside(self, sql: str) -> None:
        """chDB runs as clickhouse-local does: file(), url(), INTO OUTFILE and the like reach
        any path and host the process can (user_files_path and remote_url_allow_hosts are
        not enforced, seen). Refuse them here; BACKUP/RESTORE keep File() under the
        backups' allowed_path."""
        reached = reaches_outside(sql, self.server.engine.outside_names)
        if reached:
            raise ClickHouseError.new(
                497, "ACCESS_DENIED", f"{reached}: this server reads and writes only its own "
                "data and backup directories and fetches no URLs")

    def _execute(self, params: dict[str, str], body: Body) -> tuple[Result, str | None]:
        """Run the request's query: (result, its format if it has a result set)."""
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            params.update(_form_fields(content_type, b"".join(body.chunks)))
        settings = {
            name: value for name, value in params.items()
            if name not in HTTP_ONLY and not name.startswith(HTTP_ONLY_PREFIXES)
        }
        query_params = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        database = params.get("database") or self.headers.get("X-ClickHouse-Database", "default")
        default_format = (
            params.get("default_format") or self.headers.get("X-ClickHouse-Format", "TabSeparated")
        )
        engine = self.server.engine

        # ClickHouse runs the URL's query text, a line break, then the body. Read just enough
        # to tell an INSERT that carries data (spooled, then streamed into chDB without
        # parsing) from any other query (read whole).
        url_query = self._text = params.get("query", "")
        buf = bytearray(url_query.encode() + b"\n" if url_query else b"")
        insert = split_insert(buf, final=False)
        while insert is NEED_MORE:
            chunk = next(body.chunks, None)
            if chunk is None:
                insert = split_insert(buf, final=True)
            else:
                buf += chunk
                insert = split_insert(buf, final=False)

        if isinstance(insert, InsertWithData):
            self._text = f"{insert.statement} FORMAT {insert.fmt}"
            self._refuse_outside(insert.statement)
            # Receive the whole body before borrowing a chDB connection, so a slow client
            # holds none; an anonymous temp file leaves nothing behind, even after a crash.
            spool_dir = self.server.tmp_dir
            statement, in_query = insert.statement, False
            if settings and not _SETTINGS_CLAUSE.search(statement):
                # The insert's own SETTINGS clause rather than SET: a dedup token differs on
                # every insert, and SET (then SET back) costs a chDB query (~1.5 ms CPU) each.
                statement = f"{statement} SETTINGS {setting_pairs(settings)}"
                in_query = True
            with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, dir=spool_dir) as spool:
                spool.write(memoryview(buf)[insert.data_start :])
                del buf
                for chunk in body.chunks:
                    spool.write(chunk)
                spool.seek(0)
                with engine.session(database, settings, in_query=in_query) as session:
                    result = session.insert(statement, insert.fmt, _pieces(spool))
            return result, None

        for chunk in body.chunks:
            buf += chunk
        try:
            text = self._text = buf.decode()
        except UnicodeDecodeError:
            raise ClickHouseError.new(36, "BAD_ARGUMENTS", "Query is not UTF-8") from None
        if not text.strip():
            raise ClickHouseError.new(62, "SYNTAX_ERROR", "Empty query")
        self._refuse_outside(text)
        with engine.session(database, settings) as session:
            result = session.query(text, default_format, query_params)
        has_result = len(result.body) > 0 or first_keyword(text) in RESULT_KEYWORDS
        return result, (trailing_format(text) or default_format) if has_result else None

    def _server_headers(self) -> dict[str, str]:
        return {
            "X-ClickHouse-Timezone": self.server.engine.timezone,
            "X-ClickHouse-Server-Display-Name": self.server.display_name,
        }

    def _fail(self, exc: ClickHouseError, query_id: str) -> None:
        log.warning("query failed: %s -- %s", exc.text, _excerpt(self._text))
        body = f"{exc.text} (version {self.server.engine.version})\n".encode()
        self._reply(STATUS.get(exc.code, 500), body, {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(exc.code),
            "X-ClickHouse-Query-Id": query_id,
            **self._server_headers(),
        })

    def _reply(self, status: int, body: Any, headers: dict[str, str]) -> None:
        # Read what is left of the body first (after an error, say): otherwise the client
        # may be cut off while still sending, and the connection could not be reused.
        try:
            if self._body is not None:
                self._body.drain()
        except Exception:
            pass  # a body we cannot read to its end: the connection closes below
        if self._body is None or not self._body.finished or self.server.stopping.is_set():
            headers = {**headers, "Connection": "close"}  # send_header then closes after
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(memoryview(body).nbytes))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() waits for the requests in flight
    block_on_close = True
    request_queue_size = 128  # the listen backlog: socketserver's 5 is short for a burst

    def __init__(self, address: tuple[str, int], engine: Engine,
                 password: str | None = None) -> None:
        self.engine = engine
        self.password = password  # None: no authentication (tests of the engine alone)
        self.stopping = threading.Event()
        self.display_name = socket.gethostname()
        self.tmp_dir = engine.data_dir.parent / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(address, Handler)


def serve(data_dir: Path, backups_dir: Path, host: str, port: int, pool_size: int,
          credentials_file: Path) -> int:
    """Open chDB, serve until SIGTERM/SIGINT, then finish the requests in flight and close
    every chDB connection so that everything written is on disk. Returns the exit status.
    Requests need user `default` and the password in credentials_file (generated, mode
    0600, when the file does not exist)."""
    import signal

    password = local_secret(credentials_file)
    engine = Engine(data_dir, backups_dir, pool_size)
    engine.open()
    try:
        server = Server((host, port), engine, password)
    except OSError:
        engine.close()
        raise
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # serve_forever in a thread: shutdown() must come from another thread than it, and the
    # main thread is where Python runs signal handlers.
    accept = threading.Thread(target=server.serve_forever, args=(0.2,), name="chserver-accept")
    accept.start()
    print(f"chserver listening on http://{host}:{server.server_port}", flush=True)
    while not stop.wait(0.5):
        pass
    log.info("stopping: finishing requests in flight")
    server.stopping.set()
    server.shutdown()  # stop accepting
    server.server_close()  # wait for the handler threads
    accept.join()
    engine.close()
    log.info("stopped")
    return 0
