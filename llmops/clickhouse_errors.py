"""Which ClickHouse failures may pass on retry (seed `clickhouse_write`: NETWORK_ERROR,
TIMEOUT, TABLE_LOCKED) and which never will (QUOTA_EXCEEDED, INVALID_DATA); and among the
first, the transient ones: the server or its tables are not there right now, whatever the
rows hold, so a batch failing with one must wait, never be dead-lettered."""

import re

from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    DataError,
    OperationalError,
    ProgrammingError,
)

RETRYABLE_CODES = {
    159,  # TIMEOUT_EXCEEDED
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED: a merge may free it
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS
    473,  # DEADLOCK_AVOIDED (a lock not taken in time: TABLE_LOCKED)
    999,  # KEEPER_EXCEPTION
}
# Of those and a few more: the server's state, not the rows. A drain holds its partition.
TRANSIENT_CODES = {
    60,  # UNKNOWN_TABLE: a restore or migration in progress
    81,  # UNKNOWN_DATABASE: the same
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    242,  # TABLE_IS_READ_ONLY
    243,  # NOT_ENOUGH_SPACE: storage full
    999,  # KEEPER_EXCEPTION
}
_CODE = re.compile(r"Code: (\d+)")


def error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code:
        return code
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def is_retryable(exc: BaseException) -> bool:
    """Network trouble and the server's transient states are; a rejected row is not."""
    if isinstance(exc, OperationalError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DataError | ProgrammingError):
        return False  # raised by the client before sending: the rows themselves are bad
    if isinstance(exc, DatabaseError):
        code = error_code(exc)
        return code is None or code in RETRYABLE_CODES
    return False


def is_transient(exc: BaseException) -> bool:
    """The server is down, unreachable, hung, full or missing a table: no row causes it, and
    retrying later is all there is to do (repeating "retryable" errors such as TOO_MANY_PARTS
    or a memory limit may come from the batch itself, and are not)."""
    if isinstance(exc, DataError | ProgrammingError):
        return False
    code = error_code(exc)
    if isinstance(exc, DatabaseError) and code is not None:
        return code in TRANSIENT_CODES  # the server answered, and said why
    return isinstance(exc, OperationalError | ConnectionError | TimeoutError)
