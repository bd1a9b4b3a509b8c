"""Prometheus metrics: counters and histograms recorded where things happen, in every
process (multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set), and gauges read at scrape
time from the stores that hold them (lag, degradation level, queue depth, breakers)."""

import logging
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

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


class ScrapeTimeCollector:
    """Values that live in Kafka, Redis or the DB, read when Prometheus asks."""

    def collect(self):
        yield from _safely(self._lag)
        yield from _safely(self._degradation)
        yield from _safely(self._evaluation_queue)
        yield from _safely(self._breakers)

    def _lag(self):
        from ingestion.services.drain import partition_lags

        family = GaugeMetricFamily("llmops_partition_lag", "Spans not yet drained",
                                   labels=["partition"])
        for lag in partition_lags():
            family.add_metric([str(lag.partition)], lag.lag)
        yield family

    def _degradation(self):
        from operations.models import DegradationState

        yield GaugeMetricFamily("llmops_degradation_level", "Degradation level in force (0-4)",
                                value=DegradationState.load().effective_level)

    def _evaluation_queue(self):
        from evaluation.services.queue import depth

        yield GaugeMetricFamily("llmops_evaluation_queue_depth",
                                "Evaluations waiting to run", value=depth())


    def _breakers(self):
        from evaluation.services.breakers import EMBEDDING_API, LLM_EVALUATION, get_breaker

        family = GaugeMetricFamily(
            "llmops_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            labels=["breaker"])
        for name in (LLM_EVALUATION, EMBEDDING_API):
            family.add_metric([name], BREAKER_STATES.get(get_breaker(name).state, -1))
        yield family


BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


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
