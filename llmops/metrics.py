"""Prometheus metrics: counters and histograms recorded where things happen, in every
process (multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set), and gauges read at scrape
time from the stores that hold them (lag, degradation level, queue depth, breakers)."""

import logging
import os
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

logger = logging.getLogger(__name__)

SPANS_ACCEPTED = Counter("llmops_spans_accepted", "Spans accepted (acknowledged by Kafka)")
SPANS_REJECTED = Counter("llmops_spans_rejected", "Spans rejected for invalid fields")
SPANS_SAMPLED_OUT = Counter("llmops_spans_sampled_out", "Valid spans dropped by sampling")
INGEST_REFUSED = Counter("llmops_ingest_requests_refused", "Ingestion requests refused whole",
                         ["reason"])
KAFKA_DELIVERY_ERRORS = Counter("llmops_kafka_delivery_errors", "Messages Kafka did not take")
DRAIN_BATCH_SPANS = Histogram("llmops_drain_batch_spans", "Spans per drained batch",
                              buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000))
DRAIN_INSERT_SECONDS = Histogram("llmops_drain_insert_seconds",
                                 "ClickHouse insert time of a drained batch")
DEAD_LETTERS = Counter("llmops_dead_letters", "Messages parked in the dead-letter topic")
EVALUATIONS = Counter("llmops_evaluations", "Evaluation outcomes", ["evaluator", "status"])
CACHE_LOOKUPS = Counter("llmops_cache_lookups", "Cache lookups by where the answer came from "
                        "(l1, l2 or miss); the hit ratio is (l1 + l2) / all", ["cache", "result"])


GaugeProducer = Callable[[], Iterable[Metric]]
_gauges: list[GaugeProducer] = []


def register_gauges(produce: GaugeProducer) -> None:
    """Read `produce`'s gauges at each scrape. Apps register theirs from `AppConfig.ready()`,
    so this module imports no app."""
    if produce not in _gauges:
        _gauges.append(produce)


class ScrapeTimeCollector:
    """Values that live in Kafka, Redis or the DB, read when Prometheus asks."""

    def collect(self):
        for produce in list(_gauges):
            yield from _safely(produce)


def _safely(produce):
    # One unreadable store must not blank the whole scrape.
    try:
        yield from produce()
    except Exception as exc:
        logger.warning("metric %s unavailable: %s", produce.__name__, exc)


def render() -> tuple[bytes, str]:
    """Every process's counters (all of this machine's processes in multiprocess mode),
    then the scrape-time gauges."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    scrape = CollectorRegistry()
    scrape.register(ScrapeTimeCollector())
    return generate_latest(registry) + generate_latest(scrape), CONTENT_TYPE_LATEST
