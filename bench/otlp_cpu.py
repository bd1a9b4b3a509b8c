"""CPU microseconds per span that each door spends before accept_spans, on the bodies of
`python -m bench ingest` (100 spans per request): the JSON door's parse (parse_spans) against
the OTLP door's decode and mapping (the compiled reader, and the Python reference beside it).
No services needed: `python -m bench.otlp_cpu`."""

import os
import time

import django


def per_span_us(work, spans: int, repeat: int = 7, loops: int = 30) -> float:
    """Best of `repeat` runs of `loops` calls, in process CPU microseconds per span."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(loops):
            work()
        best = min(best, (time.process_time() - started) / loops)
    return best / spans * 1e6


def run() -> None:
    from bench.ingest import SPANS_PER_REQUEST, otlp_request_body, request_body
    from ingestion.otlp import reader
    from ingestion.otlp.decode import decode_protobuf
    from ingestion.otlp.export import map_decoded, read_protobuf
    from ingestion.views import parse_spans

    json_body, otlp_body = request_body("cpu", 0), otlp_request_body("cpu", 0)
    figures = {
        "JSON door: parse_spans (orjson)": lambda: parse_spans(json_body),
        f"OTLP door: decode + map ({reader.NAME} reader)": lambda: read_protobuf(otlp_body),
        "OTLP door: decode + map (Python reference)":
            lambda: map_decoded(decode_protobuf(otlp_body)),
    }
    for label, work in figures.items():
        print(f"  {label}: {per_span_us(work, SPANS_PER_REQUEST):.2f} us CPU per span")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")
    django.setup()
    run()
