"""The evaluation app's scrape-time gauges: queue depth and circuit breaker states."""

from prometheus_client.core import GaugeMetricFamily

BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


def queue_gauges():
    from evaluation.services.queue import depth

    yield GaugeMetricFamily("llmops_evaluation_queue_depth",
                            "Evaluations waiting to run", value=depth())


def breaker_gauges():
    from evaluation.services.breakers import EMBEDDING_API, LLM_EVALUATION, get_breaker

    family = GaugeMetricFamily(
        "llmops_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open",
        labels=["breaker"])
    for name in (LLM_EVALUATION, EMBEDDING_API):
        family.add_metric([name], BREAKER_STATES.get(get_breaker(name).state, -1))
    yield family
