"""CPU microseconds per span of the two doors on the bodies of `python -m bench ingest` (100
spans per request), measured as CPU time rather than throughput, which the other work on a
shared machine changes far less:

- `python -m bench.otlp_cpu`: what each door does before accept_spans, in this process: the
  JSON door's parse (parse_spans) against the OTLP door's decode and mapping (the compiled
  reader, and the Python reference beside it). No services needed.
- `python -m bench.otlp_cpu api`: the whole request, in the API's one gunicorn worker (its
  CPU time over the spans it accepted), for each door, on the bench's own stores.
"""

import os
import sys
import time
from http.client import HTTPConnection

ROUNDS, REQUESTS = 5, 200  # the API section: alternating rounds of REQUESTS requests a door


def per_span_us(work, spans: int, repeat: int = 7, loops: int = 30) -> float:
    """Best of `repeat` runs of `loops` calls, in process CPU microseconds per span."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(loops):
            work()
        best = min(best, (time.process_time() - started) / loops)
    return best / spans * 1e6


def before_accept() -> None:
    from bench.ingest import SPANS_PER_REQUEST, otlp_request_body, request_body
    from ingestion.otlp import reader
    from ingestion.otlp.decode import decode_protobuf
    from ingestion.otlp.export import map_decoded, read_protobuf
    from ingestion.views import parse_spans

    json_body, otlp_body = request_body("cpu", 0, otlp_ids=True), otlp_request_body("cpu", 0)
    figures = {
        "JSON door: parse_spans (orjson)": lambda: parse_spans(json_body),
        f"OTLP door: decode + map ({reader.NAME} reader)": lambda: read_protobuf(otlp_body),
        "OTLP door: decode + map (Python reference)":
            lambda: map_decoded(decode_protobuf(otlp_body)),
    }
    print("Before accept_spans, CPU per span (best of 7):")
    for label, work in figures.items():
        print(f"  {label}: {per_span_us(work, SPANS_PER_REQUEST):.2f} us")


def api() -> None:
    import psutil

    from bench.ingest import (
        API_PORT,
        SPANS_PER_REQUEST,
        bench_org,
        otlp_request_body,
        request_body,
        start_api,
        stop,
    )

    key = bench_org()
    json_body = request_body("cpu", 0, otlp_ids=True)  # the OTLP body's ids: see bench_api
    doors = {"JSON door (POST /api/v1/spans)": ("/api/v1/spans", json_body, "application/json"),
             "OTLP protobuf door (POST /v1/traces)": ("/v1/traces", otlp_request_body("cpu", 0),
                                                      "application/x-protobuf")}
    process = start_api(workers=1)
    try:
        (worker,) = psutil.Process(process.pid).children()
        connection = HTTPConnection("127.0.0.1", API_PORT, timeout=60)
        best = {name: float("inf") for name in doors}
        for _ in range(ROUNDS):
            for name, (path, body, content_type) in doors.items():
                headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
                before = sum(worker.cpu_times()[:2])
                for _ in range(REQUESTS):
                    connection.request("POST", path, body, headers)
                    response = connection.getresponse()
                    response.read()
                    assert response.status < 300, (path, response.status)
                used = sum(worker.cpu_times()[:2]) - before
                best[name] = min(best[name], used / (REQUESTS * SPANS_PER_REQUEST) * 1e6)
    finally:
        stop(process)
    print(f"The API's gunicorn worker, CPU per span (best of {ROUNDS} rounds of {REQUESTS} "
          f"requests of {SPANS_PER_REQUEST} spans):")
    for name, figure in best.items():
        print(f"  {name}: {figure:.1f} us")
    json_us, otlp_us = best.values()
    print(f"  -> OTLP door at {json_us / otlp_us:.0%} of the JSON door's spans per CPU second "
          "(target >= 90%)")


if __name__ == "__main__":
    if sys.argv[1:] == ["api"]:
        from bench import env

        env.setup()
        api()
    else:
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")
        django.setup()
        before_accept()
