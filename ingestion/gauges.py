"""The ingestion app's scrape-time gauges: drain lag per partition, dead letters parked."""

from prometheus_client.core import GaugeMetricFamily

from ingestion.services.dead_letters import dead_letter_count
from ingestion.services.partitions import partition_lags


def lag_gauges():
    family = GaugeMetricFamily("llmops_partition_lag", "Spans not yet drained",
                               labels=["partition"])
    for lag in partition_lags():
        family.add_metric([str(lag.partition)], lag.lag)
    yield family


def dead_letter_gauges():
    count = dead_letter_count()
    yield GaugeMetricFamily("llmops_dead_letters_parked",
                            "Messages the dead-letter topic holds", value=count.parked)
    yield GaugeMetricFamily("llmops_dead_letters_not_replayed",
                            "Parked messages not re-published yet", value=count.not_replayed)
