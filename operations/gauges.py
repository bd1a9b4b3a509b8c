"""The operations app's scrape-time gauge: the degradation level in force."""

from prometheus_client.core import GaugeMetricFamily


def degradation_gauges():
    from operations.models import DegradationState

    yield GaugeMetricFamily("llmops_degradation_level", "Degradation level in force (0-4)",
                            value=DegradationState.load().effective_level)
