"""One trace: its span tree beside a waterfall; a span's details load on click (htmx), so a
trace of thousands of spans and 200 KB payloads renders only the span being read."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import reads
from dashboard.access import Seat, org_page

# The tree indents at most this many levels; deeper spans show their depth instead.
MAX_INDENT = 24


def _load(seat: Seat, trace_id: str) -> dict:
    try:
        return reads.trace(org_id=seat.org_id, trace_id=trace_id)
    except reads.NotFound:
        raise Http404("no such trace in this org") from None


def _walk(spans: list[dict]):
    """(span, depth) in tree order, without recursion (trees can be very deep)."""
    stack = [(span, 0) for span in reversed(spans)]
    while stack:
        span, depth = stack.pop()
        yield span, depth
        stack.extend((child, depth + 1) for child in reversed(span["children"]))


def waterfall(found: dict) -> list[dict]:
    """A row per span in tree order, with its bar's offset and width in % of the trace."""
    start = reads.when(found["start_time"])
    ends = [reads.when(s["end_time"]) or reads.when(s["start_time"])
            for s, _ in _walk(found["spans"])]
    total_ms = max(((max(ends) - start).total_seconds() * 1000) if ends else 0, 0.001)
    rows = []
    for span, depth in _walk(found["spans"]):
        offset = (reads.when(span["start_time"]) - start).total_seconds() * 1000
        duration = span["duration_ms"]
        rows.append({
            "span_id": span["span_id"], "name": span["name"], "kind": span["kind"],
            "status": span["status"], "model": span["model"], "depth": depth,
            "indent": min(depth, MAX_INDENT), "duration_ms": duration,
            "left": round(100 * offset / total_ms, 3),
            "width": round(100 * (duration or 0) / total_ms, 3),
        })
    return rows


def find_span(found: dict, span_id: str) -> dict | None:
    return next((span for span, _ in _walk(found["spans"]) if span["span_id"] == span_id),
                None)


def _span_context(seat: Seat, found: dict, span: dict) -> dict:
    pricing = reads.span_pricing(org_id=seat.org_id, trace_id=found["trace_id"])
    scores = reads.span_scores(org_id=seat.org_id, trace_id=found["trace_id"])
    return {"span": {**span, "start_time": reads.when(span["start_time"]),
                     "end_time": reads.when(span["end_time"]),
                     "cost": reads.money(span["cost"]), "children": len(span["children"])},
            "pricing": pricing.get(span["span_id"], {}),
            "scores": scores.get(span["span_id"], []),
            "trace_id": found["trace_id"]}


@org_page
def trace(request: HttpRequest, seat: Seat, trace_id: str) -> HttpResponse:
    found = _load(seat, trace_id)
    rows = waterfall(found)
    chosen = request.GET.get("span") or (rows[0]["span_id"] if rows else "")
    span = find_span(found, chosen) or (find_span(found, rows[0]["span_id"]) if rows else None)
    context = {"trace": {**found, "start_time": reads.when(found["start_time"]),
                         "cost": reads.money(found["cost"])},
               "rows": rows, "chosen": span and span["span_id"],
               "trace_scores": reads.span_scores(org_id=seat.org_id,
                                                 trace_id=trace_id).get("", [])}
    if span is not None:
        context.update(_span_context(seat, found, span))
    return render(request, "dashboard/trace.html", context)


@org_page
def trace_span(request: HttpRequest, seat: Seat) -> HttpResponse:
    """The details of one span (the htmx panel), read from the same cached trace."""
    found = _load(seat, request.GET.get("trace", ""))
    span = find_span(found, request.GET.get("span", ""))
    if span is None:
        raise Http404("no such span in this trace")
    return render(request, "dashboard/_span.html", _span_context(seat, found, span))
