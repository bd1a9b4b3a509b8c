"""What the Overview, Costs, Quality and Operations pages show, read through the API's own
selectors and caches: span metrics (ingestion.query.selectors, cached under the metrics
endpoint's keys), the cost report (costs.services.reports, its generation-checked cache),
scores (the `scores` table the scores API reads), evaluator configs and breakers, and the
operations state. Every query is bound to the org passed in (the signed-in user's current
org); nothing here takes an org from the request.

Chart series are uPlot's shape: [[x seconds...], [y...], ...], every bucket of the window on
the x axis (counts 0, figures without data None, drawn as gaps)."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
from django.conf import settings
from django.urls import reverse

from costs.services.reports import _generation as _cost_generation  # the reports' own
from costs.services.reports import cost_report, group_totals
from evaluation.models import EvaluatorConfig
from ingestion.query import hourly, selectors
from ingestion.query.selectors import FINAL_SETTINGS, at, micros
from ingestion.query.views import CACHE_VERSION, cached_body
from operations.services.flags import flag_for

logger = logging.getLogger(__name__)

# Window presets: (length, span-metrics bucket, cost-report bucket).
WINDOWS = {
    "1h": (timedelta(hours=1), "minute", "hour"),
    "24h": (timedelta(hours=24), "hour", "hour"),
    "7d": (timedelta(days=7), "hour", "day"),
    "30d": (timedelta(days=30), "day", "day"),
}
DEFAULT_WINDOW = "24h"
BUCKET_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
BUCKET_FUNCTIONS = {"minute": "toStartOfMinute", "hour": "toStartOfHour", "day": "toStartOfDay"}
COST_GROUPS = ("model", "user", "session", "environment", "tag")
# Threads reading a page's independent parts at once (each keeps its ClickHouse client).
_pool = ThreadPoolExecutor(max_workers=settings.DASHBOARD_READ_THREADS,
                           thread_name_prefix="dashboard-read")
# Cache namespace of the pages' own aggregates (traces per bucket, names, scores).
PAGE_CACHE = "dash-charts:v1"


@dataclass(frozen=True)
class Window:
    key: str
    start: datetime
    end: datetime
    bucket: str  # span metrics
    cost_bucket: str  # cost report (hours or days)

    def ticks(self, bucket: str) -> list[int]:
        """Every bucket start of the window, in seconds since the epoch."""
        width = BUCKET_SECONDS[bucket]
        first = int(self.start.timestamp()) // width * width
        return list(range(first, int(self.end.timestamp()), width))


def window(key: str | None, now: datetime | None = None) -> Window:
    """The preset `key` (unknown: the default) ending at the next whole minute, so the
    requests of one minute share their cached answers."""
    key = key if key in WINDOWS else DEFAULT_WINDOW
    length, bucket, cost_bucket = WINDOWS[key]
    now = now or datetime.now(UTC)
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return Window(key, end - length, end, bucket, cost_bucket)


def _cached(namespace: str, org_id: int, params: dict, ttl_s: float,
            compute: Callable[[], object]) -> object:
    """An answer from the API's query cache, parsed."""
    body, _ = cached_body(namespace=namespace, org_id=org_id, params=params, ttl_s=ttl_s,
                          compute=compute)
    return orjson.loads(body)


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _report(org_id: int, win: Window, group_by: str | None, bucket: str | None = None) -> dict:
    body, _ = cost_report(org_id=org_id, start=win.start, end=win.end,
                          bucket=bucket or win.cost_bucket, group_by=group_by,
                          cached=flag_for("query-cache-enabled", org_id))
    return orjson.loads(body)


def _units(cost: str) -> int:
    """A report's cost ("0.004575000000", always 12 decimals) in 1e-12 USD: summed as
    integers, exactly, and much faster than Decimals over thousands of rows."""
    whole, _, fraction = cost.partition(".")
    sign = -1 if whole.startswith("-") else 1
    return sign * (abs(int(whole)) * 10**12 + int(fraction.ljust(12, "0")))


def _group_totals(report: dict) -> list[dict]:
    """The report's buckets summed per group, most costly first."""
    sums: dict[str, dict] = {}
    for row in report["buckets"]:
        total = sums.get(row["group"])
        if total is None:
            total = sums[row["group"]] = {"group": row["group"], "cost": 0, "spans": 0,
                                          "input_tokens": 0, "output_tokens": 0,
                                          "unpriced_spans": 0}
        total["cost"] += _units(row["cost"])
        total["spans"] += row["spans"]
        total["input_tokens"] += row["input_tokens"]
        total["output_tokens"] += row["output_tokens"]
        total["unpriced_spans"] += row["unpriced_spans"]
    ranked = sorted(sums.values(), key=lambda t: (-t["cost"], t["group"]))
    for total in ranked:
        total["cost"] = Decimal(total["cost"]).scaleb(-12)
    return ranked


def _top_groups(org_id: int, win: Window, group_by: str) -> list[dict]:
    """The top groups of the window by cost: the cost report's figures summed per group in
    one read (a month's report by user is a row per user and day, and its model totals and
    exact-days check are not needed here)."""
    def compute() -> list:
        totals = group_totals(org_id=org_id, start=win.start, end=win.end, group_by=group_by)
        return _group_totals({"buckets": totals})[:settings.DASHBOARD_TOP_N]

    rows = _by_generation(org_id, {"what": f"top-{group_by}", "from": win.start,
                                   "to": win.end, "n": settings.DASHBOARD_TOP_N}, compute)
    return [{**row, "cost": Decimal(row["cost"])} for row in rows]


def _stacked(report: dict, ticks: list[int], groups: list[str]) -> list[list]:
    """uPlot data: one cost series (float USD) per group of `groups`, the rest as "other"
    when there is any."""
    index = {tick: i for i, tick in enumerate(ticks)}
    series = {group: [0.0] * len(ticks) for group in groups}
    other = [0.0] * len(ticks)
    for row in report["buckets"]:
        i = index.get(_epoch(row["start"]))
        if i is None:
            continue
        target = series.get(row["group"], other)
        target[i] += float(row["cost"])
    data = [ticks, *series.values()]
    if any(other):
        data.append(other)
    return data


# -- overview ---------------------------------------------------------------------------

def span_metrics(org_id: int, win: Window) -> dict:
    """The metrics endpoint's answer for the window, from its cache (same key as the API's
    `GET /api/v1/metrics?from=..&to=..&bucket=..`)."""
    params = {"from": win.start, "to": win.end, "bucket": win.bucket, "group_by": "none"}
    return _cached(f"metrics:v{CACHE_VERSION}", org_id, params,
                   settings.QUERY_METRICS_CACHE_TTL_S,
                   lambda: selectors.span_metrics(org_id=org_id, params=params))


def _from_rollup(win: Window) -> bool:
    """Whether the window's aggregates read the hourly rollup (ingestion.query.hourly), as the
    metrics endpoint does."""
    return hourly.serves(start=win.start, end=win.end, bucket=win.bucket)


def _costs_by_model(org_id: int, win: Window) -> dict:
    """The cost report by model as the Overview uses it (its buckets and total cost), from the
    hourly span rollup when it serves the window (no user in its key: far fewer rows than
    the cost rollups'), cached beside the cost reports (dropped when new costs land)."""
    if not (_from_rollup(win) and win.cost_bucket in hourly.BUCKETS):
        return _report(org_id, win, "model")
    return _by_generation(org_id, {"what": "costs-by-model", "from": win.start, "to": win.end,
                                   "bucket": win.cost_bucket},
                          lambda: hourly.cost_by_model(org_id=org_id, start=win.start,
                                                       end=win.end, bucket=win.cost_bucket))


def traces_per_bucket(org_id: int, win: Window) -> dict[int, int]:
    """Traces per bucket, each counted at its first span in the window."""
    def compute() -> list:
        if _from_rollup(win):
            counts = hourly.traces_per_bucket(org_id=org_id, start=win.start, end=win.end,
                                              bucket=win.bucket)
            return [{"tick": tick, "traces": n} for tick, n in counts.items()]
        return selectors._rows(f"""
            SELECT toUnixTimestamp({BUCKET_FUNCTIONS[win.bucket]}(first_start)) AS tick,
                count() AS traces
            FROM (
                SELECT trace_id, min(start_time) AS first_start
                FROM spans FINAL
                WHERE org_id = {{org:UInt64}} AND is_deleted = 0
                    AND start_time >= {at('start')} AND start_time < {at('end')}
                GROUP BY trace_id
                {FINAL_SETTINGS})
            GROUP BY tick
        """, {"org": org_id, "start": micros(win.start), "end": micros(win.end)})

    rows = _cached(PAGE_CACHE, org_id, {"what": "traces", "from": win.start, "to": win.end,
                                        "bucket": win.bucket},
                   settings.QUERY_METRICS_CACHE_TTL_S, compute)
    return {row["tick"]: row["traces"] for row in rows}


def top_names(org_id: int, win: Window) -> list[dict]:
    """Span names by cost over the window, most costly first."""
    def compute() -> list:
        if _from_rollup(win):
            return hourly.top_names(org_id=org_id, start=win.start, end=win.end,
                                    limit=settings.DASHBOARD_TOP_N)
        return selectors._rows(f"""
            SELECT name AS grp, sum(cost) AS cost, count() AS spans
            FROM spans FINAL
            WHERE org_id = {{org:UInt64}} AND is_deleted = 0
                AND start_time >= {at('start')} AND start_time < {at('end')}
            GROUP BY name
            ORDER BY cost DESC, spans DESC, name
            LIMIT {{limit:UInt32}}
            {FINAL_SETTINGS}
        """, {"org": org_id, "start": micros(win.start), "end": micros(win.end),
              "limit": settings.DASHBOARD_TOP_N})

    rows = _cached(PAGE_CACHE, org_id, {"what": "names", "from": win.start, "to": win.end,
                                        "n": settings.DASHBOARD_TOP_N},
                   settings.QUERY_METRICS_CACHE_TTL_S, compute)
    return [{"group": row["grp"], "spans": row["spans"], "cost": Decimal(row["cost"])}
            for row in rows]


def overview(org_id: int, win: Window) -> dict:
    # The five reads are independent: run side by side, the page waits for the slowest
    # (the cost report) rather than for their sum. Only ClickHouse and Redis are used in
    # the threads (no Django DB connection to leak): the flag is read here first.
    flag_for("query-cache-enabled", org_id)
    pending = {name: _pool.submit(read, org_id, win) for name, read in (
        ("metrics", span_metrics), ("traces", traces_per_bucket), ("names", top_names),
        ("models", _costs_by_model),
        ("users", lambda o, w: _top_groups(o, w, "user")))}
    got = {name: future.result() for name, future in pending.items()}
    metrics, traces = got["metrics"]["series"], got["traces"]
    ticks = win.ticks(win.bucket)
    index = {tick: i for i, tick in enumerate(ticks)}
    blank = [None] * len(ticks)
    spans, errors, rate = [0] * len(ticks), [0] * len(ticks), list(blank)
    p50, p95, p99 = list(blank), list(blank), list(blank)
    tokens_in, tokens_out = [0] * len(ticks), [0] * len(ticks)
    for point in metrics:
        i = index.get(_epoch(point["bucket_start"]))
        if i is None:
            continue
        spans[i], errors[i] = point["span_count"], point["error_count"]
        rate[i] = round(point["error_rate"] * 100, 3)
        latency = point["latency_ms"]
        p50[i], p95[i], p99[i] = latency["p50"], latency["p95"], latency["p99"]
        tokens_in[i], tokens_out[i] = point["input_tokens"], point["output_tokens"]
    trace_counts = [traces.get(tick, 0) for tick in ticks]

    by_model, by_user = got["models"], got["users"]
    models, users = _group_totals(by_model), by_user
    top_n = settings.DASHBOARD_TOP_N
    shown = [m["group"] for m in models[:top_n]]
    total_spans = sum(spans)
    return {
        "totals": {
            "spans": total_spans,
            "traces": sum(trace_counts),
            "errors": sum(errors),
            "error_rate": (sum(errors) / total_spans * 100) if total_spans else 0.0,
            "tokens": sum(tokens_in) + sum(tokens_out),
            "cost": Decimal(by_model["totals"]["cost"]),
        },
        "charts": {
            "volume": {"data": [ticks, spans, trace_counts], "labels": ["spans", "traces"]},
            "errors": {"data": [ticks, rate], "labels": ["error rate %"]},
            "latency": {"data": [ticks, p50, p95, p99], "labels": ["p50 ms", "p95 ms", "p99 ms"]},
            "tokens": {"data": [ticks, tokens_in, tokens_out], "labels": ["input", "output"]},
            "cost": {"data": _stacked(by_model, win.ticks(win.cost_bucket), shown),
                     "labels": [name or "(no model)" for name in shown] + ["other"]},
        },
        "top_models": models[:top_n],
        "top_users": users[:top_n],
        "top_names": got["names"],
    }


# -- costs ------------------------------------------------------------------------------

def price_add_url(model: str, provider: str) -> str:
    """The admin's "add price" form, filled in with the model (and provider when known)."""
    from urllib.parse import urlencode

    query = {"model_name": model, "model_pattern": model}
    if provider:
        query["provider"] = provider
    return f"{reverse('admin:costs_price_add')}?{urlencode(query)}"


def _by_generation(org_id: int, what: dict, compute: Callable[[], object]) -> object:
    """What a page derives from a cost report, cached beside it: keyed on the org's cost
    generation too, so it is dropped exactly when the report is (new costs stored)."""
    generation = _cost_generation(org_id)
    if generation < 0 or not flag_for("query-cache-enabled", org_id):
        return orjson.loads(selectors.to_json(compute()))
    return _cached(PAGE_CACHE, org_id, {**what, "generation": generation},
                   settings.COST_CACHE_TTL_S, compute)


def costs(org_id: int, win: Window, group_by: str) -> dict:
    group_by = group_by if group_by in COST_GROUPS else "model"

    def compute() -> dict:
        # A month by user is a row per user and day: the page keeps what it shows of it.
        report = _report(org_id, win, group_by)
        groups = _group_totals(report)
        shown = [g["group"] for g in groups[:settings.DASHBOARD_TOP_N]]
        return {
            "group_by": group_by,
            "currency": report["currency"],
            "totals": report["totals"],
            "groups": groups[:settings.DASHBOARD_COST_TABLE_ROWS],
            "group_count": len(groups),
            "chart": {"data": _stacked(report, win.ticks(win.cost_bucket), shown),
                      "labels": [name or "(none)" for name in shown] + ["other"]},
            "unpriced": report["unpriced_models"],
        }

    page = _by_generation(org_id, {"what": "costs", "from": win.start, "to": win.end,
                                   "group_by": group_by,
                                   "rows": settings.DASHBOARD_COST_TABLE_ROWS,
                                   "n": settings.DASHBOARD_TOP_N}, compute)
    page["totals"]["cost"] = Decimal(page["totals"]["cost"])
    for row in page["groups"]:
        row["cost"] = Decimal(row["cost"])
    for row in page["unpriced"]:
        row["add_url"] = price_add_url(row["model"], row["provider"])
    return page


# -- quality ----------------------------------------------------------------------------

def _score_rows(org_id: int, win: Window, what: str, sql: str, **extra) -> list[dict]:
    parameters = {"org": org_id, "start": micros(win.start), "end": micros(win.end), **extra}

    def compute() -> list:
        return selectors._rows(sql, parameters)

    return _cached(PAGE_CACHE, org_id, {"what": what, "from": win.start, "to": win.end,
                                        **extra},
                   settings.QUERY_METRICS_CACHE_TTL_S, compute)


SCORES_IN_WINDOW = f"""FROM scores FINAL
    WHERE org_id = {{org:UInt64}}
        AND timestamp >= {at('start')} AND timestamp < {at('end')}"""


def _histogram(values: list[tuple[float, int]], bins: int) -> dict:
    low, high = min(v for v, _ in values), max(v for v, _ in values)
    if high == low:
        return {"edges": [low], "counts": [sum(n for _, n in values)]}
    width = (high - low) / bins
    counts = [0] * bins
    for value, n in values:
        counts[min(bins - 1, math.floor((value - low) / width))] += n
    return {"edges": [round(low + i * width, 4) for i in range(bins)], "counts": counts}


def quality(org_id: int, win: Window) -> dict:
    bucket = BUCKET_FUNCTIONS[win.bucket]
    over_time = _score_rows(org_id, win, "scores-over-time", f"""
        SELECT toUnixTimestamp({bucket}(timestamp)) AS tick, evaluator, avg(value) AS mean,
            count() AS scores
        {SCORES_IN_WINDOW} AND status IN ('ok', 'fallback') AND value IS NOT NULL
        GROUP BY tick, evaluator ORDER BY tick, evaluator""", bucket=win.bucket)
    by_evaluator = _score_rows(org_id, win, "scores-by-evaluator", f"""
        SELECT evaluator, any(evaluator_type) AS evaluator_type,
            countIf(status = 'ok') AS ok, countIf(status = 'fallback') AS fallback,
            countIf(status = 'failed') AS failed, countIf(status = 'skipped') AS skipped,
            avgIf(value, status IN ('ok', 'fallback') AND value IS NOT NULL) AS mean,
            toUnixTimestamp(max(timestamp)) AS last
        {SCORES_IN_WINDOW}
        GROUP BY evaluator ORDER BY evaluator""")
    values = _score_rows(org_id, win, "score-values", f"""
        SELECT evaluator, value, string_value, count() AS n
        {SCORES_IN_WINDOW} AND status IN ('ok', 'fallback')
        GROUP BY evaluator, value, string_value
        ORDER BY evaluator, n DESC
        LIMIT {{values:UInt32}} BY evaluator""", values=10_000)

    ticks = win.ticks(win.bucket)
    index = {tick: i for i, tick in enumerate(ticks)}
    names = sorted({row["evaluator"] for row in over_time})
    series = {name: [None] * len(ticks) for name in names}
    for row in over_time:
        i = index.get(row["tick"])
        if i is not None:
            series[row["evaluator"]][i] = None if row["mean"] is None else round(row["mean"], 4)

    numeric: dict[str, list] = defaultdict(list)
    labelled: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for row in values:
        if row["string_value"] or row["value"] is None:
            labelled[row["evaluator"]][row["string_value"] or "(none)"] += row["n"]
        else:
            numeric[row["evaluator"]].append((row["value"], row["n"]))
    distributions = [
        {"name": name, "kind": "numeric", **_histogram(pairs, settings.DASHBOARD_SCORE_BINS)}
        for name, pairs in sorted(numeric.items())]
    distributions += [
        {"name": name, "kind": "categorical", "edges": list(counts),
         "counts": list(counts.values())}
        for name, counts in sorted(labelled.items())]

    for item in distributions:  # a bar chart each: bars at 0..n-1, labelled by the ticks
        item["chart"] = {"data": [list(range(len(item["counts"]))), item["counts"]],
                         "labels": ["scores"], "kind": "bars",
                         "ticks": [str(edge) for edge in item["edges"]]}
    outcomes = {row["evaluator"]: row for row in by_evaluator}
    configs = [{"config": config, "outcomes": outcomes.get(config.name)}
               for config in EvaluatorConfig.objects.filter(org_id=org_id).order_by("name")]
    return {
        "over_time": {"data": [ticks, *series.values()], "labels": names},
        "by_evaluator": by_evaluator,
        "distributions": distributions,
        "configs": configs,
        "breakers": breaker_states(),
    }


def breaker_states() -> list[dict]:
    """The fleet breakers guarding the external evaluators: their state from Redis."""
    from evaluation.services.breakers import EMBEDDING_API, LLM_EVALUATION, get_breaker

    states = []
    for name in (LLM_EVALUATION, EMBEDDING_API):
        try:
            breaker = get_breaker(name)
            states.append({"name": name, "state": breaker.state, "open_s": breaker.open_s})
        except Exception as exc:  # Redis down: say so, the page still renders
            logger.warning("breaker %s state unavailable: %s", name, exc)
            states.append({"name": name, "state": "unknown", "open_s": None})
    return states


# -- operations (staff) -----------------------------------------------------------------

def operations() -> dict:
    """Platform-wide state for staff: degradation, lag, dead letters, backups. Kafka being
    down shows as "unavailable" rather than failing the page an operator needs most then."""
    from ingestion.services.dead_letters import dead_letter_count
    from ingestion.services.partitions import partition_lags
    from operations.models import (
        BackupRun,
        DegradationChange,
        DegradationLevel,
        DegradationState,
    )

    history = settings.DASHBOARD_OPS_HISTORY
    state = DegradationState.load()
    try:
        lags = partition_lags()
        lag_error = ""
    except Exception as exc:
        lags, lag_error = [], str(exc)
    try:
        dead = dead_letter_count()
        dead_error = ""
    except Exception as exc:
        dead, dead_error = None, str(exc)
    return {
        "state": state,
        "level_label": DegradationLevel(state.effective_level).label,
        "changes": list(DegradationChange.objects.all()[:history]),
        "lags": lags,
        "lag_total": sum(lag.lag for lag in lags),
        "lag_error": lag_error,
        "dead_letters": dead,
        "dead_error": dead_error,
        "backups": list(BackupRun.objects.all()[:history]),
        "flower_url": settings.DASHBOARD_FLOWER_URL,
    }
