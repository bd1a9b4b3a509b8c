"""The trace list: the query API's filters, its pages and its cache; the filters live in the
URL, so a link reproduces the view."""

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render

from dashboard import reads
from dashboard.access import Seat, org_page
from ingestion.query.params import TraceListParams

# Time range presets; "custom" takes `from` and `to` (UTC) from the URL.
PRESETS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1),
           "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_PRESET = "24h"
FILTERS = ("name", "user_id", "session_id", "model", "tag", "environment", "status")


def trace_query(query: QueryDict, now: datetime | None = None) -> tuple[dict, dict, dict]:
    """(the API's validated parameters, the form's values, errors by field) of a list URL.
    A preset ends at the next whole minute, so the views of one minute share a cached page."""
    values = {name: query.get(name, "") for name in (*FILTERS, "from", "to", "cursor")}
    preset = query.get("range", DEFAULT_PRESET)
    values["range"] = preset if preset in PRESETS or preset == "custom" else DEFAULT_PRESET
    data = {name: values[name] for name in (*FILTERS, "cursor") if values[name]}
    if values["range"] == "custom":
        data.update({name: values[name] for name in ("from", "to") if values[name]})
    else:
        now = now or datetime.now(UTC)
        end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        data.update({"from": (end - PRESETS[values["range"]]).isoformat(),
                     "to": end.isoformat()})
    serializer = TraceListParams(data=data)
    if not serializer.is_valid():
        return {}, values, {name: " ".join(map(str, errors))
                            for name, errors in serializer.errors.items()}
    return dict(serializer.validated_data), values, {}


def _row(item: dict, scores: list[dict]) -> dict:
    return {**item, "start_time": reads.when(item["start_time"]),
            "cost": reads.money(item["cost"]), "scores": scores,
            "tokens": item["input_tokens"] + item["output_tokens"]}


@org_page
def traces(request: HttpRequest, seat: Seat) -> HttpResponse:
    params, values, errors = trace_query(request.GET)
    page, rows, next_url = None, [], None
    if not errors:
        page = reads.trace_page(org_id=seat.org_id, params=params)
        found = reads.trace_scores(org_id=seat.org_id,
                                   trace_ids=[item["trace_id"] for item in page["items"]])
        rows = [_row(item, found.get(item["trace_id"], [])) for item in page["items"]]
        if page["next_cursor"]:
            # The next page names its window outright: a cursor belongs to one window, and
            # a shared link to page 2 shows page 2 of the same traces.
            kept = {name: values[name] for name in FILTERS if values[name]}
            next_url = "?" + urlencode({**kept, "range": "custom", "from": page["from"],
                                        "to": page["to"], "cursor": page["next_cursor"]})
    filtered = any(values[name] for name in FILTERS)
    return render(request, "dashboard/traces.html", {
        "rows": rows, "values": values, "errors": errors, "presets": list(PRESETS),
        "next_url": next_url, "paged": bool(values["cursor"]), "filtered": filtered,
        "window": page and (reads.when(page["from"]), reads.when(page["to"])),
        "first_url": "?" + urlencode({k: v for k, v in values.items()
                                      if v and k not in ("cursor",)}),
    })
