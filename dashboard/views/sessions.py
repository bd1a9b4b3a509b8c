"""Sessions: the recent ones, and one session read as a conversation (its traces in order,
with totals; each turn's words load as it scrolls into view)."""

from decimal import Decimal

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import reads
from dashboard.access import Seat, org_page
from dashboard.render import last_user_message
from dashboard.views.trace import _load
from dashboard.views.traces import PRESETS, trace_query


@org_page
def sessions(request: HttpRequest, seat: Seat) -> HttpResponse:
    """The sessions of the window's most recent traces (the trace list, one large page)."""
    query = request.GET.copy()
    query.pop("cursor", None)
    params, values, errors = trace_query(query)
    found: dict[str, dict] = {}
    if not errors:
        page = reads.trace_page(org_id=seat.org_id,
                                params={**params, "limit": settings.QUERY_MAX_LIMIT})
        for item in page["items"]:  # newest first
            if not item["session_id"]:
                continue
            entry = found.setdefault(item["session_id"], {
                "session_id": item["session_id"], "user_id": item["user_id"],
                "last": reads.when(item["start_time"]), "traces": 0, "cost": Decimal(0),
                "errors": 0})
            entry["traces"] += 1
            entry["cost"] += reads.money(item["cost"])
            entry["errors"] += item["status"] == "error"
    return render(request, "dashboard/sessions.html", {
        "sessions": list(found.values()), "values": values, "errors": errors,
        "presets": list(PRESETS), "scanned": settings.QUERY_MAX_LIMIT})


@org_page
def session(request: HttpRequest, seat: Seat) -> HttpResponse:
    session_id = request.GET.get("id", "")
    try:
        found = reads.session(org_id=seat.org_id, session_id=session_id)
    except reads.NotFound:
        raise Http404("no such session in this org") from None
    traces = [{**t, "start_time": reads.when(t["start_time"]), "end_time": reads.when(
        t["end_time"]), "cost": reads.money(t["cost"])} for t in found["traces"]]
    ends = [t["end_time"] or t["start_time"] for t in traces]
    totals = {
        "traces": len(traces), "spans": sum(t["span_count"] for t in traces),
        "input_tokens": sum(t["input_tokens"] for t in traces),
        "output_tokens": sum(t["output_tokens"] for t in traces),
        "cost": sum((t["cost"] for t in traces), Decimal(0)),
        "errors": sum(t["status"] == "error" for t in traces),
        "duration_s": (max(ends) - traces[0]["start_time"]).total_seconds() if traces else 0,
        "users": sorted({t["user_id"] for t in traces if t["user_id"]}),
    }
    return render(request, "dashboard/session.html", {
        "session_id": session_id, "traces": traces, "totals": totals,
        "truncated": found["truncated"]})


@org_page
def session_turn(request: HttpRequest, seat: Seat) -> HttpResponse:
    """One trace of a session as a turn: the person's last message and the answer."""
    found = _load(seat, request.GET.get("trace", ""))
    roots = found["spans"]
    root = roots[0] if roots else None
    if root is None:
        raise Http404("no spans")
    return render(request, "dashboard/_turn.html", {
        "said": last_user_message(root.get("input")), "answer": root.get("output"),
        "trace_id": found["trace_id"]})
