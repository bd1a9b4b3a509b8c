"""Sessions: the recent ones, and one session read as a conversation (its traces in order,
with totals; each turn's words load as it scrolls into view)."""

from decimal import Decimal

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import reads
from dashboard.access import Seat, org_page
from dashboard.render import last_user_message
from dashboard.views.trace import _load, _walk
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
        "duration": duration_text((max(ends) - traces[0]["start_time"]).total_seconds()
                                  if traces else 0),
        "users": sorted({t["user_id"] for t in traces if t["user_id"]}),
    }
    return render(request, "dashboard/session.html", {
        "session_id": session_id, "traces": traces, "totals": totals,
        "truncated": found["truncated"]})


@org_page
def session_turn(request: HttpRequest, seat: Seat) -> HttpResponse:
    """One trace of a session as a turn: what the person said last, and the answer. The
    root span's input and output when it has them (an agent's root often has neither), else
    the first span's input and the last span's output that were stored."""
    found = _load(seat, request.GET.get("trace", ""))
    spans = [span for span, _ in _walk(found["spans"])]
    said = next((s["input"] for s in spans if s.get("input") is not None), None)
    answer = next((s["output"] for s in reversed(spans) if s.get("output") is not None), None)
    if spans and spans[0].get("output") is not None:
        answer = spans[0]["output"]
    return render(request, "dashboard/_turn.html", {
        "said": last_user_message(said), "answer": answer, "trace_id": found["trace_id"]})


def duration_text(seconds: float) -> str:
    """A length of time as people say it: 4.2 s, 3 min 12 s, 5 h 2 min, 22 d 23 h."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, hours, days = int(seconds // 60), int(seconds // 3600), int(seconds // 86400)
    if hours == 0:
        return f"{minutes} min {int(seconds % 60)} s"
    if days == 0:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"
