"""Degradation triggers on measured values: each moves the level and changes what ingestion
does; a manual level holds; the level comes back down after the cause, without flapping."""

import time

import pytest
from django.test import override_settings

from operations.models import DegradationChange, DegradationLevel, DegradationState
from operations.services.degradation import (
    Measurements,
    apply_triggers,
    current_level,
    set_manual_level,
)
from operations.services.measure import measure
from tests.ingest_helpers import (
    client_for,
    drain_everything,
    make_span,
    new_org,
    post_spans,
    stored_spans,
)

pytestmark = pytest.mark.django_db

CALM = Measurements(evaluation_queue_depth=0, ingestion_lag=0, storage_used_pct=10.0,
                    critical_failure="")


def level() -> int:
    return DegradationState.load().effective_level


def traces(count: int, prefix: str) -> list[dict]:
    return [make_span(f"{prefix}-{t}", 0) for t in range(count)]


@override_settings(DEGRADATION_INGESTION_LAG_THRESHOLD=150, DEGRADATION_COOLDOWN_S=1)
def test_ingestion_lag_moves_to_reduced_sampling_and_back_after_the_cooldown():
    drain_everything()
    org, key = new_org()
    client = client_for(key)
    assert post_spans(client, traces(300, "lag")).status_code == 202  # not drained: lag 300
    measured = measure()
    assert measured.ingestion_lag >= 300
    assert apply_triggers(measured).effective_level == DegradationLevel.REDUCED_SAMPLING
    assert current_level() == DegradationLevel.REDUCED_SAMPLING

    body = post_spans(client, traces(500, "sampled")).json()
    assert body["accepted"] == 500 and body["sampled_out"] >= 480  # 1 % kept

    drain_everything()
    assert measure().ingestion_lag == 0
    assert apply_triggers(measure()).effective_level == DegradationLevel.REDUCED_SAMPLING
    time.sleep(1.1)
    assert apply_triggers(measure()).effective_level == DegradationLevel.NORMAL
    changes = list(DegradationChange.objects.order_by("at").values_list(
        "from_level", "to_level", "changed_by"))
    assert changes == [(0, 2, "triggers"), (2, 0, "triggers")]
    assert DegradationChange.objects.order_by("at").first().reason.startswith("ingestion lag")


@override_settings(DEGRADATION_STORAGE_PCT_THRESHOLD=0.001)
def test_storage_over_threshold_keeps_spans_but_not_their_content():
    drain_everything()
    org, key = new_org()
    measured = measure()
    assert measured.storage_used_pct > 0.001
    assert apply_triggers(measured).effective_level == DegradationLevel.ESSENTIAL_ONLY
    assert post_spans(client_for(key), traces(1000, "ess")).status_code == 202
    drain_everything()
    rows = stored_spans(org.id)
    assert rows and all(r["input_hash"] == "" and r["output_hash"] == "" for r in rows)


@override_settings(CLICKHOUSE_URL="http://default:@127.0.0.1:9/llmops_test",
                   DEGRADATION_CRITICAL_FAILURE_S=0)
def test_clickhouse_unreachable_makes_the_platform_read_only():
    _, key = new_org()
    measured = measure()
    assert "ClickHouse unreachable" in measured.critical_failure
    assert apply_triggers(measured).effective_level == DegradationLevel.READ_ONLY
    response = post_spans(client_for(key), traces(1, "ro"))
    assert response.status_code == 503 and response["Retry-After"]


def test_a_short_outage_is_not_yet_critical():
    with override_settings(CLICKHOUSE_URL="http://default:@127.0.0.1:9/llmops_test",
                           DEGRADATION_CRITICAL_FAILURE_S=60):
        assert measure().critical_failure == ""


@override_settings(DEGRADATION_EVAL_QUEUE_THRESHOLD=5)
def test_evaluation_queue_depth_moves_to_reduced_evaluation():
    from celery_app import app
    from evaluation.services import queue

    queue.publish([{"waiting": n} for n in range(10)], size=1)  # no worker consumes them
    try:
        measured = measure()
        assert measured.evaluation_queue_depth >= 10
        assert apply_triggers(measured).effective_level == DegradationLevel.REDUCED_EVALUATION
    finally:
        app.control.purge()
    assert "evaluation queue depth" in DegradationState.load().reason
    assert measure().evaluation_queue_depth == 0
    assert apply_triggers(CALM).effective_level == DegradationLevel.REDUCED_EVALUATION  # cooldown


def test_the_highest_trigger_wins():
    both = Measurements(evaluation_queue_depth=200_000, ingestion_lag=2_000_000,
                        storage_used_pct=95, critical_failure="")
    assert apply_triggers(both).effective_level == DegradationLevel.ESSENTIAL_ONLY


@override_settings(DEGRADATION_COOLDOWN_S=0)
def test_no_flapping_around_a_threshold():
    """Values that hover just above and below the threshold move the level once: a trigger
    clears only under DEGRADATION_CLEAR_RATIO of its threshold."""
    for depth in [100_500, 99_000, 100_200, 95_000, 100_100, 90_000]:
        apply_triggers(Measurements(evaluation_queue_depth=depth, ingestion_lag=0,
                                    storage_used_pct=10, critical_failure=""))
    assert level() == DegradationLevel.REDUCED_EVALUATION
    assert DegradationChange.objects.count() == 1
    apply_triggers(CALM)
    apply_triggers(CALM)
    assert level() == DegradationLevel.NORMAL
    assert DegradationChange.objects.count() == 2


def test_a_manual_level_holds_against_the_triggers_until_cleared():
    set_manual_level(DegradationLevel.REDUCED_EVALUATION, reason="maintenance",
                     changed_by="ops@example.com")
    critical = Measurements(evaluation_queue_depth=0, ingestion_lag=0, storage_used_pct=10,
                            critical_failure="Kafka unreachable for 99s")
    assert apply_triggers(critical).effective_level == DegradationLevel.REDUCED_EVALUATION
    assert DegradationState.load().level == DegradationLevel.READ_ONLY  # what triggers want
    set_manual_level(None, reason="maintenance over", changed_by="ops@example.com")
    assert level() == DegradationLevel.READ_ONLY
    manual = DegradationChange.objects.filter(manual=True).order_by("at")
    assert [(c.from_level, c.to_level, c.changed_by) for c in manual] == [
        (0, 1, "ops@example.com"), (1, 4, "ops@example.com")]


def test_defaults_are_the_design_document_thresholds(settings):
    assert settings.DEGRADATION_EVAL_QUEUE_THRESHOLD == 100_000
    assert settings.DEGRADATION_INGESTION_LAG_THRESHOLD == 1_000_000
    assert settings.DEGRADATION_STORAGE_PCT_THRESHOLD == 90.0
