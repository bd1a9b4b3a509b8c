"""Which reader the OTLP protobuf door runs: the compiled one (ingestion/otlp/_wire.pyx, built
by `make ext`, part of `make install`) when it is built from the .pyx beside it, else the
Python reference (decode.py + mapping.map_span) with a warning at start-up.

The Python path stays as the runtime fallback so a checkout run without the build still
answers every request the same way (only slower); /metrics shows which one runs
(`llmops_otlp_reader{reader=...}`) and tests/test_otlp_wire.py fails when the build is missing
or stale, so the suite always runs the compiled reader.
"""

import hashlib
import logging
from pathlib import Path

logger = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("_wire.pyx")


def source_hash() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def _load():
    """(module or None, why not)."""
    try:
        from ingestion.otlp import _wire
    except ImportError as exc:
        return None, f"not built ({exc}): run `make ext`"
    if getattr(_wire, "SOURCE_HASH", None) != source_hash():
        return None, "built from another version of _wire.pyx: run `make ext`"
    return _wire, ""


wire, PROBLEM = _load()
NAME = "compiled" if wire is not None else "python"
if wire is None:
    logger.warning("OTLP protobuf door: the compiled reader is not in use (%s); the Python "
                   "reference reads requests instead, several times slower", PROBLEM)


def reader_gauges():
    """/metrics: llmops_otlp_reader{reader="compiled"} 1 (or "python", when not built)."""
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily("llmops_otlp_reader", "Which reader the OTLP protobuf door "
                               "runs (1): the compiled one, or the Python reference",
                               labels=["reader"])
    family.add_metric([NAME], 1)
    yield family
