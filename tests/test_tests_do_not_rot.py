"""Tests store spans at times relative to now: a fixed date falls out of the retention (the
TTL deletes its spans, the API refuses them), and the test then fails for no fault of the
code. This guards the test files themselves."""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# A calendar date in a string ("2026-11-20", "2026-11-20T10:00:00Z") or a datetime(...) of a
# fixed year.
FIXED_DATE = re.compile(r"""["']20\d\d-\d\d-\d\d|datetime\(\s*20\d\d\s*,""")
# Dates that are data, not times of stored spans: the ClickHouse server's type round trips
# (a scratch table with no TTL) and a price change inside the pinned genai-prices package.
ALLOWED_FILES = {"test_clickhouse_server.py", "test_tests_do_not_rot.py"}
ALLOWED_LINES = {("test_costs_matching.py", "datetime(2026, 11, 3, tzinfo=UTC)")}


def fixed_dates(directory: Path) -> list[str]:
    return [f"{path.name}:{number}: {line.strip()}"
            for path in sorted(directory.glob("*.py")) if path.name not in ALLOWED_FILES
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if FIXED_DATE.search(line)
            and not any(name == path.name and text in line for name, text in ALLOWED_LINES)]


def test_no_test_stores_spans_at_a_fixed_date():
    found = fixed_dates(TESTS)
    assert not found, "use times relative to now (tests.ingest_helpers.days_ago):\n" + "\n".join(
        found)
