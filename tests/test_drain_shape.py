"""The drain's shape: one typed "batch stored" hand-off to the apps, gauges registered by
the apps, and `llmops` importing none of them."""

import ast
from pathlib import Path

import pytest
from django.conf import settings

from ingestion.services import batches
from ingestion.services.partitions import topic_id
from ingestion.services.rows import StoredSpan
from llmops import metrics
from tests.ingest_helpers import (
    client_for,
    count_rows,
    drain_everything,
    make_span,
    new_org,
    post_spans,
)

APPS = {"ingestion", "costs", "evaluation", "operations"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_llmops_metrics_imports_no_app():
    modules = imported_modules(Path(settings.BASE_DIR) / "llmops" / "metrics.py")
    assert not {name.split(".")[0] for name in modules} & APPS, modules


@pytest.mark.django_db
def test_every_app_gauge_is_in_the_scrape():
    text = metrics.render()[0].decode()
    for name in ("llmops_partition_lag", "llmops_dead_letters_parked",
                 "llmops_evaluation_queue_depth", "llmops_breaker_state",
                 "llmops_degradation_level"):
        assert f"# TYPE {name} gauge" in text, name


@pytest.mark.django_db
@pytest.mark.slow
def test_listeners_get_the_stored_spans_by_name_and_a_failing_one_loses_nothing(monkeypatch):
    drain_everything()
    heard: list[batches.BatchStored] = []

    def failing(batch):
        raise RuntimeError("a listener's bug")

    # Costs and evaluation stay registered; a failing listener comes first.
    monkeypatch.setattr(batches, "_listeners", [failing, *batches._listeners, heard.append])
    org, key = new_org()
    assert post_spans(client_for(key), [make_span("heard", i) for i in range(5)]) \
        .status_code == 202
    drain_everything()
    assert count_rows(org.id) == 5  # stored and committed despite the failing listener
    (batch,) = [b for b in heard if org.id in b.org_ids]
    assert batch.org_ids == {org.id}
    assert all(isinstance(span, StoredSpan) for span in batch.spans)
    assert sorted(span.span_id for span in batch.spans) == [f"heard-s{i}" for i in range(5)]
    assert topic_id(settings.KAFKA_SPANS_TOPIC) in batch.token
