"""Cost reports: exact, from the hourly rollups where they are exact and from spans elsewhere."""

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext

import orjson
import redis
from django.conf import settings

from costs.models import Price
from ingestion.query.selectors import INHERITED_FILTERS, inherited_filter, trace_fields_sql
from llmops import rollups
from llmops.cache import get_or_compute, query_key
from llmops.clickhouse import get_client
from llmops.redis import get_redis
from llmops.rollups import HOUR, Plan, plan, ranges_sql

logger = logging.getLogger(__name__)

BUCKETS = {"hour": "toStartOfHour", "day": "toStartOfDay"}
# group_by -> (expression on cost_hourly or None when the rollups do not keep it, on spans).
# User, session and tags are trace-level fields (issue 12): a span without its own has its
# trace's (`trace_*`, from ingestion.query.selectors.trace_fields_sql, joined on the spans
# read). The rollups cannot know those (the span naming them may arrive hours later): these
# groups are read from spans.
GROUPS = {
    None: ("''", "''"),
    "model": ("model", "model"),
    "user": (None, "if(user_id != '', user_id, trace_user)"),
    "environment": ("environment", "environment"),
    "session": (None, "if(session_id != '', session_id, trace_session)"),
    # A span counts once in each of its tags (and under "" without any).
    "tag": (None, "arrayJoin(if(empty(tags), if(empty(trace_tags), [''], trace_tags),"
                  " CAST(tags, 'Array(String)')))"),
}
# Spans that take their trace's value of a group (they have none of their own): only their
# traces' fields are worked out.
LACKING = {"user": "user_id = ''", "session": "session_id = ''", "tag": "empty(tags)"}
COUNTS = ["spans", "input_tokens", "cached_input_tokens", "cache_write_tokens",
          "output_tokens", "total_tokens", "unpriced_spans", "estimated_spans"]
MEASURES = ["cost", *COUNTS]
# The same measures from each source, in the same order (UNION ALL matches by position).
ROLLUP_MEASURES = ", ".join(f"sum({name}) AS {name}" for name in MEASURES)
SPAN_EXPRESSIONS = {
    "cost": "sum(toDecimal128(cost, 12))",
    "spans": "count()",
    "unpriced_spans": "countIf(cost_source = 'unpriced')",
    "estimated_spans": "countIf(usage_source = 'estimated')",
}
SPAN_MEASURES = ", ".join(f"{SPAN_EXPRESSIONS.get(name, f'sum({name})')} AS {name}"
                          for name in MEASURES)


def _generation_key(org_id: int) -> str:
    return f"costs:generation:{org_id}"


def costs_recorded(*, org_ids: set[int]) -> None:
    """New cost records landed for these orgs: their cached reports are no longer used (design
    document: cost aggregations, TTL + event-based on new cost records)."""
    if not org_ids:
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        for org_id in org_ids:
            pipe.incr(_generation_key(org_id))
        pipe.execute()
    except redis.RedisError as exc:
        # The spans are stored; cached reports of these orgs live out COST_CACHE_TTL_S.
        logger.warning("could not invalidate cost reports of orgs %s: %s", org_ids, exc)


def batch_stored(batch) -> None:
    """Listener of the drain's stored batches (an `ingestion.services.batches.BatchStored`).
    Like `costs_recorded`, it never fails the batch: the spans are stored, and at worst the
    orgs' cached reports live out COST_CACHE_TTL_S."""
    costs_recorded(org_ids=set(batch.org_ids))


def _generation(org_id: int) -> int:
    try:
        return int(get_redis().get(_generation_key(org_id)) or 0)
    except redis.RedisError:
        return -1  # not cacheable safely; the key differs from any cached one


def exact_days(*, org_id: int, start: datetime, end: datetime) -> set[date]:
    """Days whose cost_hourly rows count each of the org's stored spans exactly once
    (llmops.rollups.exact_days)."""
    return rollups.exact_days(table="cost_hourly", org_id=org_id, start=start, end=end)


def _union(*, the_plan: Plan, keys: dict[str, tuple[str, str]], lacking: str = "1",
           filters: tuple[str, ...] = ()) -> str:
    """Sums per `keys` (name -> (expression on cost_hourly, on spans)) over the plan's parts:
    every span of the window counted once. `filters` (of INHERITED_FILTERS) keep the spans
    whose own value, else their trace's, is the one bound to the filter's name; only a plan
    without rollups can take them."""
    names = ", ".join(keys)
    parts = []
    spans, live = "spans FINAL", " AND is_deleted = 0"
    first, last = (f"toDate('{day:%Y-%m-%d}')" for day in (
        the_plan.scan[0][0], the_plan.scan[-1][1] - timedelta(microseconds=1))) \
        if the_plan.scan else ("", "")
    for name in filters:
        live += f" AND {inherited_filter(name, first, last)}"
    if the_plan.scan and any("trace_" in exprs[1] for exprs in keys.values()):
        # The trace-level fields of the traces read: all their spans lie within
        # QUERY_TRACE_MAX_DAYS of the days read (the slack).
        # The traces with a span that lacks the field, in any version (a superset: no FINAL).
        candidates = (f"trace_id IN (SELECT trace_id FROM spans WHERE org_id = {{org:UInt64}}"
                      f" AND toDate(start_time) >= {first} AND toDate(start_time) <= {last}"
                      f" AND {lacking})")
        spans += (f" LEFT ANY JOIN ({trace_fields_sql(first, last, candidates)})"
                  " AS trace_fields USING (trace_id)")
    for table, ranges, column, measures, side in (
            ("cost_hourly", the_plan.rollup, "hour", ROLLUP_MEASURES, 0),
            (spans, the_plan.scan, "start_time", SPAN_MEASURES, 1)):
        if ranges:
            selected = ", ".join(f"{exprs[side]} AS {name}" for name, exprs in keys.items())
            # Tombstones (a span's version moved to another day) are no spans; in the
            # rollups they make their day inexact, so that day is read from here.
            parts.append(f"SELECT {selected}, {measures} FROM {table}"
                         f" WHERE org_id = {{org:UInt64}}{live if side else ''}"
                         f" AND ({ranges_sql(column, ranges)})"
                         f" GROUP BY {names}")
    sums = ", ".join(f"sum({name}) AS {name}" for name in MEASURES)
    return (f"SELECT {names}, {sums} FROM ({' UNION ALL '.join(parts)})"
            f" GROUP BY {names} ORDER BY {names}")


def _query(the_plan: Plan, keys: dict[str, tuple[str, str]], org_id: int,
           lacking: str = "1", filters: dict | None = None) -> list[dict]:
    if not (the_plan.rollup or the_plan.scan):
        return []
    filters = filters or {}
    result = get_client().query(_union(the_plan=the_plan, keys=keys, lacking=lacking,
                                       filters=tuple(filters)),
                                parameters={"org": org_id,
                                            "slack": settings.QUERY_TRACE_MAX_DAYS,
                                            **filters})
    return list(result.named_results())


def _summed(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """`rows` summed per `keys`, in their order (as _query's GROUP BY and ORDER BY would)."""
    sums: dict[tuple, dict] = {}
    with localcontext(prec=60):  # Decimal(38, 12) sums, exact
        for row in rows:
            key = tuple(row[name] for name in keys)
            total = sums.get(key)
            if total is None:
                sums[key] = {**dict(zip(keys, key, strict=True)),
                             **{name: row[name] for name in MEASURES}}
            else:
                for name in MEASURES:
                    total[name] += row[name]
    return [sums[key] for key in sorted(sums)]


def _measures(row: dict) -> dict:
    return {"cost": f"{row['cost']:.12f}", **{name: row[name] for name in COUNTS}}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def compute_report(*, org_id: int, start: datetime, end: datetime, bucket: str,
                   group_by: str | None, filters: dict | None = None) -> dict:
    """Costs and tokens of an org's spans starting in [start, end), per bucket and group, with
    totals and the models no price matched. Equal, to the last decimal, to the sums over the
    stored spans (`spans FINAL`). `filters` (user_id, session_id, tag: see
    INHERITED_FILTERS) keep the spans of that user, session or tag, their own or else their
    trace's; the rollups cannot tell those, so a filtered report reads spans."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    filters = {name: value for name, value in (filters or {}).items()
               if name in INHERITED_FILTERS and value is not None}
    if filters:
        by_model = Plan([], [(start, end)])
    else:
        by_model = plan(start=start, end=end, exact_days=exact_days(org_id=org_id, start=start,
                                                                     end=end))
    rollup_group, span_group = GROUPS[group_by]
    to_bucket = BUCKETS[bucket]
    group_keys = {"bucket": (f"{to_bucket}(hour)", f"{to_bucket}(toDateTime(start_time))"),
                  "grp": (rollup_group, span_group)}
    model_keys = {"model_name": ("toString(model)", "toString(model)"),
                  "provider_name": ("toString(provider)", "toString(provider)")}
    if rollup_group is not None:
        # Both from the same plan: one read grouped by both, summed here per each.
        rows = _query(by_model, {**group_keys, **model_keys}, org_id, filters=filters)
        groups, models = _summed(rows, ("bucket", "grp")), _summed(rows, tuple(model_keys))
    else:
        # Users, sessions and tags of traces are not in the rollups: those groups read spans.
        groups = _query(Plan([], [(start, end)]), group_keys, org_id, LACKING[group_by],
                        filters)
        models = _query(by_model, model_keys, org_id, filters=filters)
    with localcontext(prec=60):  # Decimal(38, 12) sums, exact
        totals = {"cost": sum((row["cost"] for row in models), Decimal(0)),
                  **{name: sum(row[name] for row in models) for name in COUNTS}}
    return {
        "from": _iso(start), "to": _iso(end), "bucket": bucket, "group_by": group_by,
        "currency": Price.CURRENCY,
        "totals": _measures(totals),
        "buckets": [{"start": _iso(row["bucket"]), "group": row["grp"], **_measures(row)}
                    for row in groups],
        "unpriced_models": [
            {"model": row["model_name"], "provider": row["provider_name"],
             "spans": row["unpriced_spans"]}
            for row in models if row["unpriced_spans"]],
        "sources": {
            "rollup_hours": sum((b - a) // HOUR for a, b in by_model.rollup),
            "span_ranges": [{"from": _iso(a), "to": _iso(b)} for a, b in by_model.scan],
        },
    }


def group_totals(*, org_id: int, start: datetime, end: datetime,
                 group_by: str) -> list[dict]:
    """Per group, its measures over [start, end): what summing compute_report's buckets per
    group gives, to the last decimal, in one read (no buckets, no model totals), for a page
    that shows only the top groups of a window."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    rollup_group, span_group = GROUPS[group_by]
    if rollup_group is None:  # trace-level groups: from spans, as compute_report reads them
        the_plan = Plan([], [(start, end)])
    else:
        the_plan = plan(start=start, end=end,
                        exact_days=exact_days(org_id=org_id, start=start, end=end))
    rows = _query(the_plan, {"grp": (rollup_group, span_group)}, org_id,
                  LACKING.get(group_by, "1"))
    return [{"group": row["grp"], **_measures(row)} for row in rows]


def cost_report(*, org_id: int, start: datetime, end: datetime, bucket: str = "hour",
                group_by: str | None = None, requested: dict | None = None,
                cached: bool = True, filters: dict | None = None) -> tuple[bytes, str]:
    """(the report as JSON, "l2", "miss" or "bypass"): from the L2 cache (COST_CACHE_TTL_S)
    unless the org stored new costs since it was computed. Cached under `requested` (the
    window as the client asked for it, so a default window ending "now" hits the cache too),
    else under the resolved window; `cached` False computes afresh. `filters`: as
    compute_report's."""
    filters = filters or {}
    if not cached:
        return orjson.dumps(compute_report(org_id=org_id, start=start, end=end, bucket=bucket,
                                           group_by=group_by, filters=filters)), "bypass"
    # Read before computing: a report racing a drain is filed under the older generation.
    generation = _generation(org_id)
    window = requested if requested is not None else {"from": start, "to": end}
    params = {**window, "bucket": bucket, "group_by": group_by, "generation": generation,
              **filters}

    def compute() -> bytes:
        return orjson.dumps(compute_report(org_id=org_id, start=start, end=end, bucket=bucket,
                                           group_by=group_by, filters=filters))

    if generation < 0:
        return compute(), "miss"
    return get_or_compute(key=query_key("costs", org_id, params),
                          ttl_s=settings.COST_CACHE_TTL_S, compute=compute)
