"""Reads behind the query API. Every value from a request reaches ClickHouse as a bound
parameter ({name:Type} placeholders); the SQL itself is only ever chosen from fixed pieces."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
from django.conf import settings

from ingestion.query.params import encode_cursor, fingerprint, resolve_window
from llmops.clickhouse import get_client

# Versions of a span on one day share its sort key, hence its month partition; one moved to
# another day left a tombstone at the old key (`is_deleted`, dropped by every read after
# FINAL). So FINAL need not merge across partitions.
FINAL_SETTINGS = "SETTINGS do_not_merge_across_partitions_select_final = 1"
# Spans nested deeper than this are listed at the top level (with their parent_span_id), so
# a pathological chain cannot exhaust the JSON encoder's nesting limit.
MAX_TREE_DEPTH = 100

SPAN_COLUMNS = """trace_id, span_id, parent_span_id, name, kind, status, status_message,
    start_time, end_time, duration_ms, model, provider, input_tokens, output_tokens,
    cached_input_tokens, total_tokens, cost, session_id, user_id, tags, metadata, environment"""

# Trace-level filters over the newest versions of a trace's spans (a trace matches if any
# of them does); each placeholder is filled from the parameter of the same name.
TRACE_FILTERS = {
    "user_id": "max(user_id = {user_id:String})",
    "session_id": "max(session_id = {session_id:String})",
    "model": "max(model = {model:String})",
    "tag": "max(has(tags, {tag:String}))",
    "environment": "max(environment = {environment:String})",
    "name": "positionCaseInsensitiveUTF8(trace_name, {name:String}) > 0",
    "status": "erred = ({status:String} = 'error')",
}
# The same filters over trace_index, which unites every version ever stored: a trace whose
# newest versions match matches here too (a superset), so these only narrow the candidates.
# A root name or an "ok" status can change with a version; those are not prefiltered.
TRACE_PREFILTERS = {
    "user_id": "max(has(users, {user_id:String}))",
    "session_id": "max(has(sessions, {session_id:String}))",
    "model": "max(has(models, {model:String}))",
    "tag": "max(has(tags, {tag:String}))",
    "environment": "max(has(environments, {environment:String}))",
    "status": "({status:String} != 'error' OR max(has_error) = 1)",
}
# Trace-level fields (issue 12): a user, session, tags or trace name set on any span of a
# trace count for all of its spans. The trace's value of a field is the root span's, else the
# earliest span's that carries one, over the newest versions of its spans; its tags are the
# union of its spans'. A span's own non-empty value is never replaced. SDKs (Langfuse, our
# OTLP mapping) name a trace apart from its root span through the reserved metadata key
# TRACE_NAME_KEY; without it the trace is named after its root span.
TRACE_NAME_KEY = "trace.name"
TRACE_NAME_SQL = f"metadata['{TRACE_NAME_KEY}']"
TRACE_TAGS_SQL = "arraySort(groupUniqArrayArray(CAST(tags, 'Array(String)')))"


def _trace_level(column: str) -> str:
    """SQL aggregate: the trace's value of `column` (the root's, else the earliest span's)."""
    return (f"tupleElement(minIf((parent_span_id != '', start_time, {column}), "
            f"{column} != ''), 3)")


# Span-level filters on a trace-level field: (the span's own value matches, the span has
# none, trace_index's superset of the traces that may match, the trace's value matches).
INHERITED_FILTERS = {
    "user_id": ("user_id = {user_id:String}", "user_id = ''", "has(users, {user_id:String})",
                "trace_user = {user_id:String}"),
    "session_id": ("session_id = {session_id:String}", "session_id = ''",
                   "has(sessions, {session_id:String})", "trace_session = {session_id:String}"),
    "tag": ("has(tags, {tag:String})", "empty(tags)", "has(tags, {tag:String})",
            "has(trace_tags, {tag:String})"),
}


def trace_fields_sql(first_day: str, last_day: str, candidates: str = "1") -> str:
    """A subquery: per trace with spans on the days from `first_day` to `last_day` (SQL
    Dates), its trace-level user, session and tags (`trace_user`, `trace_session`,
    `trace_tags`) over the newest versions of all its spans, which lie within
    QUERY_TRACE_MAX_DAYS of those days. Binds {org:UInt64} and {slack:UInt16}."""
    return f"""
        SELECT trace_id, {_trace_level('user_id')} AS trace_user,
            {_trace_level('session_id')} AS trace_session, {TRACE_TAGS_SQL} AS trace_tags
        FROM spans FINAL
        WHERE org_id = {{org:UInt64}} AND is_deleted = 0
            AND toDate(start_time) >= {first_day} - {{slack:UInt16}}
            AND toDate(start_time) <= {last_day} + {{slack:UInt16}}
            AND {candidates}
        GROUP BY trace_id"""


def inherited_filter(name: str, first_day: str, last_day: str) -> str:
    """SQL: a span (of the days from `first_day` to `last_day`) whose own value of a
    trace-level field matches, or that has none and whose trace's value matches. trace_index
    (every version ever stored) narrows the traces whose value is worked out."""
    own, empty, indexed, inherited = INHERITED_FILTERS[name]
    candidates = f"""trace_id IN (
            SELECT trace_id FROM trace_index
            WHERE org_id = {{org:UInt64}} AND day >= {first_day} - {{slack:UInt16}}
                AND day <= {last_day} + {{slack:UInt16}} AND {indexed})"""
    return f"""({own} OR ({empty} AND trace_id IN (
        SELECT trace_id FROM ({trace_fields_sql(first_day, last_day, candidates)})
        WHERE {inherited})))"""


# Per-trace figures over its spans' newest versions (`spans FINAL WHERE is_deleted = 0`).
# SQL aliases differ from column names: ClickHouse would read a column name inside an
# aggregate as the alias of that aggregate.
TRACE_AGGREGATES = f"""
            min(start_time) AS started,
            if(count(end_time) = 0, NULL, max(coalesce(end_time, start_time))) AS ended,
            count() AS spans_n,
            sum(input_tokens) AS tokens_in,
            sum(output_tokens) AS tokens_out,
            sum(cost) AS cost_sum,
            max(status = 'error') AS erred,
            tupleElement(min((parent_span_id != '', start_time, name)), 3) AS root_name,
            {_trace_level(TRACE_NAME_SQL)} AS set_name,
            if(set_name != '', set_name, root_name) AS trace_name,
            {_trace_level('user_id')} AS first_user,
            {_trace_level('session_id')} AS first_session,
            {TRACE_TAGS_SQL} AS trace_tags"""
# Span-level filters, for span search.
SPAN_FILTERS = {
    "user_id": "user_id = {user_id:String}",
    "session_id": "session_id = {session_id:String}",
    "model": "model = {model:String}",
    "tag": "has(tags, {tag:String})",
    "environment": "environment = {environment:String}",
    "name": "positionCaseInsensitiveUTF8(name, {name:String}) > 0",
    "status": "status = {status:String}",
    "kind": "kind = {kind:String}",
    "min_latency_ms": "end_time IS NOT NULL AND duration_ms >= {min_latency_ms:Float64}",
    "min_tokens": "total_tokens >= {min_tokens:UInt64}",
}
BUCKET_SQL = {
    "minute": "toStartOfMinute(start_time)",
    "hour": "toStartOfHour(start_time)",
    "day": "toStartOfDay(start_time)",
}
GROUP_SQL = {"none": "''", "model": "model", "kind": "kind", "environment": "environment"}


def micros(value: datetime) -> int:
    """A time as integer microseconds since the epoch: bound as Int64, never as text, so no
    time zone or format can be misread."""
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


def at(parameter: str) -> str:
    """SQL for the time bound to `parameter` (microseconds, see `micros`)."""
    return f"fromUnixTimestamp64Micro({{{parameter}:Int64}}, 'UTC')"


def _rows(sql: str, parameters: dict) -> list[dict]:
    result = get_client().query(sql, parameters=parameters)
    if not result.result_rows:
        return []  # the embedded server answers an empty result without column names
    names = result.column_names
    return [dict(zip(names, row, strict=True)) for row in result.result_rows]


def to_json(value) -> bytes:
    """Response bodies: times as RFC 3339 with Z, costs (Decimal) as exact strings."""
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_UTC_Z)


def _json_default(value):
    if isinstance(value, Decimal):
        return decimal_text(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def decimal_text(value: Decimal) -> str:
    """A cost as the cost report prints it: fixed point, 12 decimals ("0.000000000000", never
    "0E-12")."""
    return f"{value:.12f}"


# -- traces ----------------------------------------------------------------------------

def _trace_item(row: dict) -> dict:
    start, end = row["started"], row["ended"]  # end: None when no span has an end_time
    return {
        "trace_id": row["trace_id"],
        "name": row["trace_name"],
        "start_time": start,
        "end_time": end,
        "duration_ms": None if end is None else (end - start) / timedelta(milliseconds=1),
        "span_count": row["spans_n"],
        "input_tokens": row["tokens_in"],
        "output_tokens": row["tokens_out"],
        "cost": row["cost_sum"],
        "status": "error" if row["erred"] else "ok",
        "user_id": row["first_user"],
        "session_id": row["first_session"],
        "tags": row["trace_tags"],
    }


def trace_summaries(*, org_id: int, trace_ids: list[str],
                    days: tuple[datetime, datetime] | None = None) -> dict[str, dict]:
    """Exact per-trace figures from the deduplicated spans, for a page of traces at most;
    `days` (first, last start) bounds the scan to those days and QUERY_TRACE_MAX_DAYS."""
    if not trace_ids:
        return {}
    parameters = {"org": org_id, "ids": trace_ids}
    day_bounds = ""
    if days is not None:
        day_bounds = (f"AND toDate(start_time) >= toDate({at('lo')}) - {{slack:UInt16}} "
                      f"AND toDate(start_time) <= toDate({at('hi')}) + {{slack:UInt16}}")
        parameters.update(lo=micros(days[0]), hi=micros(days[1]),
                          slack=settings.QUERY_TRACE_MAX_DAYS)
    rows = _rows(f"""
        SELECT trace_id, {TRACE_AGGREGATES}
        FROM spans FINAL
        WHERE org_id = {{org:UInt64}} AND trace_id IN {{ids:Array(String)}} {day_bounds}
            AND is_deleted = 0
        GROUP BY trace_id
        {FINAL_SETTINGS}
    """, parameters)
    return {row["trace_id"]: _trace_item(row) for row in rows}


def _day_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def list_traces(*, org_id: int, params: dict) -> dict:
    """A page of traces, newest first, judged on the newest version of each span.

    trace_index (every version ever stored) names the candidates: traces with spans indexed
    on a day, that any version matches the filters of. Their spans' newest versions
    (`spans FINAL`) then decide: start, filters, order. A trace starts on the day its first
    span (newest version) is indexed, so the window is read in day ranges from its end back
    (1, 2, 4, ... days) until the page is full: a long window costs what its newest days do.
    A walk (first page, then its cursors) reads what was stored at the first page, minus
    QUERY_LIST_SETTLE_MS: spans arriving meanwhile neither add traces nor move them between
    pages, so each trace is listed once (a span resent meanwhile drops out of the walk)."""
    limit = params.get("limit") or settings.QUERY_DEFAULT_LIMIT
    position = params.get("cursor")
    if position:
        start, end = from_micros(position["from"]), from_micros(position["to"])
        snap = position["snap"]
        upper = min(end, from_micros(position["start"]) + timedelta(microseconds=1))
    else:
        start, end = resolve_window(params.get("from"), params.get("to"))
        snap = micros(datetime.now(UTC)) // 1000 - settings.QUERY_LIST_SETTLE_MS
        upper = end
    rows: list[dict] = []
    days = 1
    while upper > start and len(rows) <= limit:
        lower = max(start, _day_floor(upper - timedelta(microseconds=1))
                    - timedelta(days=days - 1))
        rows += _trace_range(org_id=org_id, params=params, lower=lower, upper=upper,
                             snap=snap, limit=limit + 1 - len(rows))
        upper, days = lower, days * 2
    more, page = len(rows) > limit, rows[:limit]
    next_cursor = None
    if more:
        last = page[-1]
        next_cursor = encode_cursor("traces", {
            "filters": fingerprint(params), "from": micros(start), "to": micros(end),
            "snap": snap, "start": micros(last["started"]), "trace": last["trace_id"],
        })
    return {"from": start, "to": end, "items": [_trace_item(row) for row in page],
            "next_cursor": next_cursor}


def _trace_range(*, org_id: int, params: dict, lower: datetime, upper: datetime, snap: int,
                 limit: int) -> list[dict]:
    """The traces starting in [lower, upper) that match, newest first, at most `limit`."""
    parameters = {"org": org_id, "slack": settings.QUERY_TRACE_MAX_DAYS, "limit": limit,
                  "snap": snap, "lower": micros(lower), "upper": micros(upper)}
    having = [f"started >= {at('lower')}", f"started < {at('upper')}"]
    position = params.get("cursor")
    if position:
        having.append(f"(started, trace_id) < ({at('after_start')}, {{after_trace:String}})")
        parameters.update(after_start=position["start"], after_trace=position["trace"])
    prefilters = ["1"]
    for name, condition in TRACE_FILTERS.items():
        if name in params:
            having.append(condition)
            prefilters.append(TRACE_PREFILTERS.get(name, "1"))
            parameters[name] = params[name]
    last_day = f"toDate({at('upper')} - INTERVAL 1 MICROSECOND)"
    # A trace's spans lie within QUERY_TRACE_MAX_DAYS of each other (the slack): one
    # starting in the range has its first span indexed on a day of the range, the others
    # at most that many days later, where the prefilters look for them too.
    return _rows(f"""
        SELECT trace_id, {TRACE_AGGREGATES}
        FROM spans FINAL
        WHERE org_id = {{org:UInt64}}
            AND toDate(start_time) >= toDate({at('lower')}) - {{slack:UInt16}}
            AND toDate(start_time) <= {last_day} + {{slack:UInt16}}
            AND trace_id IN (
                SELECT trace_id FROM trace_index
                WHERE org_id = {{org:UInt64}}
                    AND day >= toDate({at('lower')}) AND day <= {last_day} + {{slack:UInt16}}
                    AND ingested <= fromUnixTimestamp64Milli({{snap:Int64}}, 'UTC')
                GROUP BY trace_id
                HAVING countIf(day <= {last_day}) > 0
                    AND minIf(trace_start, day <= {last_day}) < {at('upper')}
                    AND {' AND '.join(prefilters)})
            AND is_deleted = 0
            AND toDateTime64(ingested_at, 3) <= fromUnixTimestamp64Milli({{snap:Int64}}, 'UTC')
        GROUP BY trace_id
        HAVING {' AND '.join(having)}
        ORDER BY started DESC, trace_id DESC
        LIMIT {{limit:UInt32}}
        {FINAL_SETTINGS}
    """, parameters)


def _span_item(row: dict, content: dict[str, tuple[str, str]] | None = None) -> dict:
    item = {name: row[name] for name in (
        "trace_id", "span_id", "parent_span_id", "name", "kind", "status", "status_message",
        "start_time", "end_time", "duration_ms", "model", "provider", "input_tokens",
        "output_tokens", "cached_input_tokens", "total_tokens", "cost", "session_id",
        "user_id", "tags", "metadata", "environment")}
    item["parent_span_id"] = item["parent_span_id"] or None
    if item["end_time"] is None:
        item["duration_ms"] = None
    if content is not None:
        item["input"] = _content(content.get(row["input_hash"]))
        item["output"] = _content(content.get(row["output_hash"]))
    return item


def _content(stored: tuple[str, str] | None):
    if stored is None:
        return None  # no content sent, or dropped (degradation) or expired
    fmt, text = stored
    return orjson.loads(text) if fmt == "json" else text


def span_tree(spans: list[dict]) -> list[dict]:
    """Children under their parents, each level in start order; spans whose parent is not
    in the trace (orphans), and any cycle, start at the top level."""
    by_id = {}
    for span in spans:
        span["children"] = []
        by_id.setdefault(span["span_id"], span)
    top, parent_of = [], {}
    for span in spans:
        parent = by_id.get(span["parent_span_id"])
        if parent is None or parent is span:
            top.append(span)
        else:
            parent["children"].append(span)
            parent_of[id(span)] = parent
    placed = set()

    def place(root: dict) -> None:
        stack = [(root, 0)]
        while stack:
            span, depth = stack.pop()
            placed.add(id(span))
            if depth >= MAX_TREE_DEPTH:  # its children start over at the top level
                top.extend(span["children"])
                stack.extend((child, 0) for child in span["children"])
                span["children"] = []
            else:
                stack.extend((child, depth + 1) for child in span["children"])

    for span in list(top):
        place(span)
    for span in spans:  # what is left hangs on a cycle: cut it loose at its earliest span
        if id(span) not in placed:
            parent_of[id(span)]["children"].remove(span)
            top.append(span)
            place(span)
    index = {id(span): i for i, span in enumerate(spans)}
    top.sort(key=lambda s: index[id(s)])
    return top


def get_trace(*, org_id: int, trace_id: str) -> dict | None:
    """The trace's spans as a tree, with their content; None if this org has no such trace."""
    limit = settings.QUERY_TRACE_MAX_SPANS
    rows = _rows(f"""
        SELECT {SPAN_COLUMNS}, input_hash, output_hash
        FROM spans FINAL
        WHERE org_id = {{org:UInt64}} AND trace_id = {{trace:String}} AND is_deleted = 0
        ORDER BY start_time, span_id
        LIMIT {{limit:UInt32}}
        {FINAL_SETTINGS}
    """, {"org": org_id, "trace": trace_id, "limit": limit + 1})
    if not rows:
        return None
    truncated, rows = len(rows) > limit, rows[:limit]
    hashes = sorted({h for row in rows for h in (row["input_hash"], row["output_hash"]) if h})
    content = {}
    if hashes:
        content = {row["content_hash"]: (row["format"], row["content"]) for row in _rows("""
            SELECT content_hash, any(format) AS format, argMax(content, last_seen) AS content
            FROM span_content
            WHERE org_id = {org:UInt64} AND content_hash IN {hashes:Array(String)}
            GROUP BY content_hash
        """, {"org": org_id, "hashes": hashes})}
    def trace_level(value) -> str:  # as _trace_level: the root's value, else the earliest
        carrying = [(r["parent_span_id"] != "", r["start_time"], value(r)) for r in rows
                    if value(r)]
        return min(carrying)[2] if carrying else ""

    root_name = min(rows, key=lambda r: (r["parent_span_id"] != "", r["start_time"],
                                         r["name"]))["name"]
    summary = _trace_item({  # as trace_summaries computes it, over the same spans
        "trace_id": trace_id,
        "trace_name": trace_level(lambda r: r["metadata"].get(TRACE_NAME_KEY, "")) or root_name,
        "started": min(r["start_time"] for r in rows),
        "ended": (max(r["end_time"] or r["start_time"] for r in rows)
                  if any(r["end_time"] for r in rows) else None),
        "spans_n": len(rows),
        "tokens_in": sum(r["input_tokens"] for r in rows),
        "tokens_out": sum(r["output_tokens"] for r in rows),
        "cost_sum": sum((r["cost"] for r in rows), Decimal(0)),
        "erred": any(r["status"] == "error" for r in rows),
        "first_user": trace_level(lambda r: r["user_id"]),
        "first_session": trace_level(lambda r: r["session_id"]),
        "trace_tags": sorted({t for r in rows for t in r["tags"]}),
    })
    spans = [_span_item(row, content) for row in rows]
    return {**summary, "truncated": truncated, "spans": span_tree(spans)}


def session_traces(*, org_id: int, session_id: str) -> dict | None:
    """The session's traces, oldest first (the first QUERY_SESSION_MAX_TRACES); None if
    this org has no such session."""
    limit = settings.QUERY_SESSION_MAX_TRACES
    ids = [row["trace_id"] for row in _rows(f"""
        SELECT trace_id FROM spans FINAL
        WHERE org_id = {{org:UInt64}} AND session_id = {{session:String}} AND is_deleted = 0
        GROUP BY trace_id
        ORDER BY min(start_time), trace_id
        LIMIT {{limit:UInt32}}
        {FINAL_SETTINGS}
    """, {"org": org_id, "session": session_id, "limit": limit + 1})]
    if not ids:
        return None
    traces = sorted(trace_summaries(org_id=org_id, trace_ids=ids[:limit]).values(),
                    key=lambda t: (t["start_time"], t["trace_id"]))
    return {"session_id": session_id, "truncated": len(ids) > limit, "traces": traces}


# -- spans -----------------------------------------------------------------------------

def search_spans(*, org_id: int, params: dict) -> dict:
    """A page of spans, newest first. A span's place in that order (start, trace, span id)
    never changes, so cursors stay exact while spans keep arriving."""
    limit = params.get("limit") or settings.QUERY_DEFAULT_LIMIT
    position = params.get("cursor")
    if position:
        start, end = from_micros(position["from"]), from_micros(position["to"])
    else:
        start, end = resolve_window(params.get("from"), params.get("to"))
    parameters = {"org": org_id, "start": micros(start), "end": micros(end), "limit": limit + 1}
    where = ["org_id = {org:UInt64}", "is_deleted = 0", f"start_time >= {at('start')}",
             f"start_time < {at('end')}"]
    if position:
        where.append(f"(start_time, trace_id, span_id) < ({at('after_start')}, "
                     "{after_trace:String}, {after_span:String})")
        parameters.update(after_start=position["start"], after_trace=position["trace"],
                          after_span=position["span"])
    for name, condition in SPAN_FILTERS.items():
        if name in params:
            if name in INHERITED_FILTERS:  # a span without its own value has its trace's
                condition = inherited_filter(name, f"toDate({at('start')})",
                                             f"toDate({at('end')})")
                parameters["slack"] = settings.QUERY_TRACE_MAX_DAYS
            where.append(condition)
            parameters[name] = params[name]
    rows = _rows(f"""
        SELECT {SPAN_COLUMNS}
        FROM spans FINAL
        WHERE {' AND '.join(where)}
        ORDER BY start_time DESC, trace_id DESC, span_id DESC
        LIMIT {{limit:UInt32}}
        {FINAL_SETTINGS}
    """, parameters)
    more, rows = len(rows) > limit, rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = encode_cursor("spans", {
            "filters": fingerprint(params), "from": micros(start), "to": micros(end),
            "start": micros(last["start_time"]), "trace": last["trace_id"],
            "span": last["span_id"],
        })
    return {"from": start, "to": end, "items": [_span_item(row) for row in rows],
            "next_cursor": next_cursor}


# -- metrics ---------------------------------------------------------------------------

def span_metrics(*, org_id: int, params: dict) -> dict:
    """Per bucket (and group): span count, error rate, latency percentiles, tokens. Only
    buckets with spans are listed. Percentiles are ClickHouse's `quantiles` (reservoir of
    8192 values per bucket and group: exact below that, within about 1 % of rank above)."""
    start, end = resolve_window(params.get("from"), params.get("to"))
    bucket, group = params["bucket"], params["group_by"]
    parameters = {"org": org_id, "start": micros(start), "end": micros(end),
                  "slack": settings.QUERY_TRACE_MAX_DAYS}
    # Spans of a user, session or tag: their own, or their trace's when they have none.
    filters = ""
    for name in INHERITED_FILTERS:
        if name in params:
            filters += " AND " + inherited_filter(name, f"toDate({at('start')})",
                                                  f"toDate({at('end')})")
            parameters[name] = params[name]
    # The hourly rollup answers the same, exactly, for hour and day buckets of long windows;
    # it keeps no trace-level fields (a span naming a trace's user may arrive hours later),
    # so a read filtered by them, and minute buckets, scan the spans.
    from ingestion.query import hourly  # it reads through this module's helpers

    if not filters and group in hourly.GROUPS and hourly.serves(start=start, end=end,
                                                                 bucket=bucket):
        rows = hourly.metric_rows(org_id=org_id, start=start, end=end, bucket=bucket,
                                  group=group)
    else:
        rows = _exact_metric_rows(bucket, group, filters, parameters)
    return _metric_series(rows, bucket, group, start, end)


def _exact_metric_rows(bucket: str, group: str, filters: str, parameters: dict) -> list[dict]:
    """span_metrics' rows over `spans FINAL`."""
    return _rows(f"""
        SELECT {BUCKET_SQL[bucket]} AS bucket_start, {GROUP_SQL[group]} AS grp,
            count() AS spans_n,
            countIf(status = 'error') AS errors_n,
            quantilesIf(0.5, 0.95, 0.99)(duration_ms, end_time IS NOT NULL) AS latency,
            sum(input_tokens) AS tokens_in,
            sum(output_tokens) AS tokens_out,
            sum(total_tokens) AS tokens_total
        FROM spans FINAL
        WHERE org_id = {{org:UInt64}} AND is_deleted = 0
            AND start_time >= {at('start')} AND start_time < {at('end')}{filters}
        GROUP BY bucket_start, grp
        ORDER BY bucket_start, grp
        {FINAL_SETTINGS}
    """, parameters)


def _metric_series(rows: list[dict], bucket: str, group: str, start: datetime,
                   end: datetime) -> dict:
    series = []
    for row in rows:
        latency = [None if value != value else value for value in row["latency"]]  # NaN: none
        point = {
            "bucket_start": row["bucket_start"],
            "span_count": row["spans_n"],
            "error_count": row["errors_n"],
            "error_rate": row["errors_n"] / row["spans_n"],
            "latency_ms": {"p50": latency[0], "p95": latency[1], "p99": latency[2]},
            "input_tokens": row["tokens_in"],
            "output_tokens": row["tokens_out"],
            "total_tokens": row["tokens_total"],
        }
        if group != "none":
            point["group"] = row["grp"]
        series.append(point)
    return {"from": start, "to": end, "bucket": bucket, "group_by": group, "series": series}
