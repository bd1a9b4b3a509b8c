"""Just enough SQL lexing to route a request: first keyword, FORMAT, where INSERT data starts."""

import re
from collections.abc import Iterator
from dataclasses import dataclass

# A word, a quoted string/identifier (backslash escapes and doubled quotes), a comment, or
# any single other character. The quoted and comment alternatives only match when closed,
# so an unterminated one in a partial buffer falls through to the single-character case
# and is caught by _UNCLOSED below.
_TOKEN = re.compile(
    rb"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*\n|\#[^\n]*\n|/\*.*?\*/)
  | (?P<quoted>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_UNCLOSED = frozenset(b"'\"`#-/")

# A FORMAT clause at the end of a query (what clickhouse-connect appends, and users write).
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class InsertWithData:
    """`INSERT ... FORMAT fmt <data>` (or `VALUES <data>`): the statement, the format and
    the offset of the first data byte in the scanned buffer."""

    statement: str
    fmt: str
    data_start: int


NEED_MORE = object()  # the buffer ends before the statement does: read more of the body


def _words(buf: bytes, final: bool) -> Iterator[tuple[str, int, int, int]]:
    """(UPPERCASE word, parenthesis depth, start, end) for each word outside quotes and
    comments. Yields ("", ...) with start -1 if the buffer ends inside a token and more
    data may follow (final=False)."""
    depth = 0
    for m in _TOKEN.finditer(buf):
        kind = m.lastgroup
        if kind == "word":
            yield m.group().decode("ascii").upper(), depth, m.start(), m.end()
        elif kind == "other":
            char = m.group()
            if char == b"(":
                depth += 1
            elif char == b")":
                depth -= 1
            elif char[0] in _UNCLOSED and not final and _opens_token(buf, m.start()):
                yield "", depth, -1, -1
                return


def _opens_token(buf: bytes, pos: int) -> bool:
    """Whether an unmatched character at pos starts a quote or comment left open."""
    char = buf[pos : pos + 1]
    if char in (b"-", b"/"):
        return buf[pos : pos + 2] in (b"--", b"/*") or pos + 1 == len(buf)
    return True


def first_keyword(sql: str) -> str:
    """The statement's first word, uppercased ("" if none): SELECT, INSERT, SET, USE, ..."""
    for word, _depth, _start, _end in _words(sql.encode(), final=True):
        return word
    return ""


def trailing_format(sql: str) -> str | None:
    """The format named by a FORMAT clause ending the query, if any."""
    match = _TRAILING_FORMAT.search(sql)
    return match.group(1) if match else None


def split_insert(buf: bytes, final: bool) -> InsertWithData | None | object:
    """Find where the data of `INSERT ... FORMAT x` / `INSERT ... VALUES` starts in buf.

    None: not an INSERT that carries data (a SELECT, an INSERT ... SELECT, ...): run the text
    as one query. NEED_MORE: buf ends before that is known (only when not final).
    """
    words = _words(buf, final)
    first = next(words, None)
    if first is None or first[0] == "":
        return None if final else NEED_MORE
    if first[0] != "INSERT":
        return None
    for word, depth, start, end in words:
        if word == "":
            return NEED_MORE
        if depth != 0:
            continue
        if word in ("SELECT", "WITH", "INFILE"):
            return None
        if word == "VALUES":
            # The Values input format reads the tuples that follow the keyword.
            return InsertWithData(buf[:start].decode(), "Values", end)
        if word == "FORMAT":
            name = next(words, None)
            if name is None or name[0] == "":
                return None if final else NEED_MORE
            if name[3] == len(buf) and not final:
                return NEED_MORE  # the name may continue in the next chunk
            # As in ClickHouse: data starts after spaces and at most one line break.
            pos = name[3]
            while pos < len(buf) and buf[pos] in b" \t\f":
                pos += 1
            if buf.startswith(b"\r", pos):
                pos += 1
            if buf.startswith(b"\n", pos):
                pos += 1
            elif pos == len(buf) and not final:
                return NEED_MORE  # the line break may be in the next chunk
            original_name = buf[name[2] : name[3]].decode()
            return InsertWithData(buf[:start].decode(), original_name, pos)
    return None if final else NEED_MORE


# Clauses that make chDB read or write a path of the caller's choosing.
_FILE_CLAUSES = frozenset({"outfile", "infile"})


def reaches_outside(sql: str, names: frozenset[str]) -> str | None:
    """The first `name(` in sql with name (lowercased, quoted or not) in `names`, or an
    INTO OUTFILE / FROM INFILE clause: what would read or write outside the server's own
    data. None if there is none. BACKUP and RESTORE may name File(): chDB checks it
    against the backups' allowed_path."""
    allowed = {"file"} if first_keyword(sql) in ("BACKUP", "RESTORE") else set()
    name = None
    for m in _TOKEN.finditer(sql.encode()):
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            continue  # `file /* */ (` is still a call
        text = m.group()
        if kind == "word":
            name = text.decode("ascii").lower()
            if name in _FILE_CLAUSES:
                return name.upper()
            continue
        if kind == "quoted" and text[:1] in b"`\"":
            name = text[1:-1].decode(errors="replace").lower()
            continue
        if text == b"(" and name in names and name not in allowed:
            return name
        name = None
    return None
