"""A drain always makes progress (issue 15): a batch that takes longer than the lease TTL,
or than what is left of the drain's budget, is stored and committed once, not read and
inserted again by every drain after it. Checked in Kafka's offsets and ClickHouse's rows."""

import pytest
from django.conf import settings

from ingestion.services.drain import PartitionDrainer
from ingestion.services.partitions import inflight_key
from llmops.redis import get_redis
from tests.ingest_helpers import count_rows, drain_everything, new_org
from tests.test_drain_guarantees import committed, in_thread, produce, span_message

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
SPANS = 20


def drain_a_few_times(partition: int, budget_s: float, times: int = 3) -> list[str]:
    """The drains a worker would run one after another; how each stopped."""
    return [in_thread(lambda: PartitionDrainer(partition).run(budget_s=budget_s)).stopped
            for _ in range(times)]


def assert_stored_once(org_id: int, partition: int, start: int, stops: list[str]) -> None:
    assert committed(partition) == start + SPANS, stops
    assert not get_redis().exists(inflight_key(settings.KAFKA_SPANS_TOPIC, partition)), stops
    assert count_rows(org_id, final=True) == SPANS


def test_a_batch_longer_than_the_lease_ttl_keeps_its_lease_and_is_stored_once(settings):
    drain_everything()
    org, _ = new_org()
    partition = 4
    start = committed(partition)
    produce([span_message(org.id, "long-batch", i) for i in range(SPANS)], partition=partition)
    # Every batch takes longer than the TTL: its first span waits 1.5 s for more than there are.
    settings.DRAIN_LEASE_TTL_S = 0.3
    settings.DRAIN_BATCH_WAIT_MS = 1500
    settings.DRAIN_BATCH_SIZE = 10_000

    stops = drain_a_few_times(partition, budget_s=5)
    assert_stored_once(org.id, partition, start, stops)
    assert "interrupted" not in " ".join(stops), stops


def test_a_batch_past_the_budget_is_finished_once_not_replayed_by_every_drain(settings):
    drain_everything()
    org, _ = new_org()
    partition = 5
    start = committed(partition)
    produce([span_message(org.id, "budget", i) for i in range(SPANS)], partition=partition)
    # The batch alone (its first span waits 1.5 s for more) outlasts each drain's 0.2 s budget.
    settings.DRAIN_BATCH_WAIT_MS = 1500
    settings.DRAIN_BATCH_SIZE = 10_000

    stops = drain_a_few_times(partition, budget_s=0.2)
    assert_stored_once(org.id, partition, start, stops)
