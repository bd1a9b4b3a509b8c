"""One span, one row: a version moved to another day supersedes the old one (tombstones).

Spans already stored twice on different days get a tombstone over their older versions, and
span_keys learns where each stored span's newest version is. Those two are data, not DDL:
they run once after it, from one node (through the Distributed tables on a cluster).
"""

from ingestion.clickhouse import span_is_deleted, span_keys

operations = [span_is_deleted(), span_keys()]


class _Backfill:
    def __init__(self, *statements: str):
        self.statements = list(statements)

    def backfill(self) -> list[str]:
        return self.statements


backfill = [_Backfill(
    # Each older version on another day than the newest gets a tombstone at its own key,
    # carrying the newest version (a rerun only writes the same tombstones again).
    """
    INSERT INTO spans (org_id, trace_id, span_id, start_time, received_at, version, is_deleted)
    SELECT org_id, trace_id, span_id, start_time, received_at, newest, 1
    FROM (
        SELECT org_id, trace_id, span_id, start_time, received_at, version,
            max(version) OVER (PARTITION BY org_id, trace_id, span_id) AS newest
        FROM spans FINAL
        WHERE is_deleted = 0
    )
    WHERE version < newest
    """,
    """
    INSERT INTO span_keys (org_id, trace_id, span_id, start_time, version)
    SELECT org_id, trace_id, span_id, argMax(start_time, version), max(version)
    FROM spans FINAL
    WHERE is_deleted = 0
    GROUP BY org_id, trace_id, span_id
    """,
)]
