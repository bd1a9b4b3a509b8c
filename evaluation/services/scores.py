"""Scores in ClickHouse: writing them (evaluators, API) and reading them back for an org."""

from datetime import UTC, datetime

from django.conf import settings

from llmops.clickhouse import get_client
from llmops.clickhouse_errors import is_retryable
from llmops.retry import RetryPolicy

COLUMNS = [
    "org_id", "trace_id", "span_id", "evaluator", "score_id", "evaluator_id", "evaluator_type",
    "source", "status", "data_type", "value", "string_value", "comment", "latency_ms", "model",
    "span_time", "timestamp", "environment", "metadata", "config_id", "version",
]
STATUSES = ("ok", "skipped", "failed", "fallback")
# Among rows of one (span, evaluator, score id) a result outranks a failure, which outranks
# a `skipped` placeholder; within a rank the latest wins. So a replayed evaluation replaces
# its placeholder, and a late duplicate that was skipped never hides a result.
_RANK = {"skipped": 0, "failed": 1, "fallback": 2, "ok": 3}


class ScoresNotStored(Exception):
    """ClickHouse unavailable after the write policy's attempts; the task retries."""


def version(status: str, at: datetime) -> int:
    micros = int(at.timestamp() * 1_000_000)  # < 2**52 until the year 2112
    return (_RANK[status] << 52) | micros


def row(*, org_id: int, trace_id: str, span_id: str, evaluator: str, score_id: str,
        status: str, source: str, span_time: datetime, evaluator_id: int = 0,
        evaluator_type: str = "", data_type: str = "", value: float | None = None,
        string_value: str = "", comment: str = "", latency_ms: float = 0.0, model: str = "",
        timestamp: datetime | None = None, environment: str = "",
        metadata: dict[str, str] | None = None, config_id: str = "") -> list:
    now = datetime.now(UTC)
    # Versioned by when it is written, not by the time it claims: a correction always wins.
    return [org_id, trace_id, span_id, evaluator, score_id, evaluator_id, evaluator_type,
            source, status, data_type, value, string_value, comment[:4000], latency_ms, model,
            span_time, timestamp or now, environment, metadata or {}, config_id,
            version(status, now)]


def write(rows: list[list]) -> None:
    if not rows:
        return
    client = get_client()
    policy = RetryPolicy.from_settings(settings.CLICKHOUSE_WRITE_RETRY)
    try:
        policy.call(lambda: client.insert("scores", rows, column_names=COLUMNS),
                    retryable=is_retryable, name="insert into scores")
    except Exception as exc:
        if is_retryable(exc):
            raise ScoresNotStored(str(exc)) from exc
        raise


def read(*, org_id: int, trace_id: str = "", span_id: str = "", evaluator: str = "",
         status: str = "", since: datetime | None = None, until: datetime | None = None,
         limit: int = 100) -> list[dict]:
    """An org's scores, newest first, narrowed by whichever filters are given."""
    conditions = ["org_id = {org_id:UInt64}"]
    parameters: dict = {"org_id": org_id, "limit": limit}
    for name, value in (("trace_id", trace_id), ("span_id", span_id),
                        ("evaluator", evaluator), ("status", status)):
        if value:
            conditions.append(f"{name} = {{{name}:String}}")
            parameters[name] = value
    if since is not None:
        conditions.append("timestamp >= {since:DateTime64(3, 'UTC')}")
        parameters["since"] = since
    if until is not None:
        conditions.append("timestamp < {until:DateTime64(3, 'UTC')}")
        parameters["until"] = until
    result = get_client().query(
        f"SELECT {', '.join(COLUMNS[:-1])} FROM scores FINAL WHERE {' AND '.join(conditions)}"
        " ORDER BY timestamp DESC, trace_id, span_id, evaluator LIMIT {limit:UInt32}",
        parameters=parameters,
    )
    return list(result.named_results())


