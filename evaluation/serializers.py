"""Shapes of the scores API: what clients send, what they filter on."""

import math
from datetime import UTC, datetime, timedelta

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from evaluation.services.scores import STATUSES
from ingestion.services.accept import retention_days
from llmops.params import EARLIEST, LATEST, QueryParams


def storable_time(value):
    """A time ClickHouse can hold and compare (else it fails the query: a 500, not a 400)."""
    if value is not None and not EARLIEST <= value <= LATEST:
        raise serializers.ValidationError(
            f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return value

MAX_SCORES_PER_REQUEST = 1000


@extend_schema_field({"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}],
                      "nullable": True})
def kept_time(value: datetime) -> datetime:
    """A score's time, which its TTL counts from: one the TTL would delete at once is
    refused, as spans are, rather than acknowledged and lost."""
    now = datetime.now(UTC)
    days = retention_days()
    earliest = now - timedelta(days=days)
    latest = now + timedelta(seconds=settings.INGEST_MAX_FUTURE_S)
    if not earliest <= value <= latest:
        raise serializers.ValidationError(
            f"must be between {earliest:%Y-%m-%dT%H:%M:%SZ} and {latest:%Y-%m-%dT%H:%M:%SZ}: "
            f"scores are kept {days} days and may be at most {settings.INGEST_MAX_FUTURE_S} s "
            "ahead")
    return value


class ScoreValue(serializers.JSONField):
    pass


class ScoreIn(serializers.Serializer):
    trace_id = serializers.CharField(max_length=128)
    span_id = serializers.CharField(max_length=128, required=False, default="", allow_blank=True)
    name = serializers.CharField(max_length=100)
    value = ScoreValue(help_text="A finite number, a boolean or a non-blank label.")
    data_type = serializers.ChoiceField(["numeric", "categorical", "boolean"], required=False)
    comment = serializers.CharField(max_length=4000, required=False, default="",
                                    allow_blank=True)
    source = serializers.ChoiceField(["human", "client"], default="client")
    id = serializers.CharField(max_length=128, required=False,
                               help_text="Sending the same id again replaces the score.")
    timestamp = serializers.DateTimeField(
        required=False, validators=[kept_time],
        help_text="Default: now. Within the retention and at most INGEST_MAX_FUTURE_S ahead.")

    def validate(self, data: dict) -> dict:
        value = data["value"]
        if isinstance(value, bool):
            kind = "boolean"
        elif isinstance(value, int | float) and math.isfinite(value):
            kind = "numeric"
        elif isinstance(value, str) and value.strip():
            kind = "categorical"
        else:
            raise serializers.ValidationError({"value": "a finite number, a boolean or a label"})
        if data.get("data_type", kind) != kind:
            raise serializers.ValidationError({"value": f"not a {data['data_type']} value"})
        data["data_type"] = kind
        return data


class ScoresIn(serializers.Serializer):
    scores = ScoreIn(many=True, allow_empty=False, max_length=MAX_SCORES_PER_REQUEST)


class ScoreFilters(QueryParams):
    """Unknown parameters are refused (QueryParams): `?trace=` must not list every score."""

    trace_id = serializers.CharField(max_length=128, required=False, default="")
    span_id = serializers.CharField(max_length=128, required=False, default="")
    evaluator = serializers.CharField(max_length=100, required=False, default="")
    status = serializers.ChoiceField(STATUSES, required=False, default="")
    # The table keeps no time of writing apart from `timestamp` (the client's, else the time
    # the score was written): the filter and its help say so.
    since = serializers.DateTimeField(
        required=False, default=None, validators=[storable_time],
        help_text="Scores whose `timestamp` is at or after this time (the `timestamp` the "
                  "client sent, else when the score was written).")
    until = serializers.DateTimeField(
        required=False, default=None, validators=[storable_time],
        help_text="Scores whose `timestamp` is before this time.")
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=100)


class ScoreIds(serializers.Serializer):
    ids = serializers.ListField(child=serializers.CharField(),
                                help_text="The scores' ids, in the order sent.")


class ScoreOut(serializers.Serializer):
    id = serializers.CharField()
    trace_id = serializers.CharField()
    span_id = serializers.CharField()
    evaluator = serializers.CharField(help_text="The score's name.")
    evaluator_type = serializers.CharField()
    source = serializers.CharField(help_text="human, client, or evaluator")
    status = serializers.ChoiceField(STATUSES)
    data_type = serializers.CharField(help_text="numeric, categorical or boolean")
    value = ScoreValue(help_text="A number, a label or a boolean; null for a failed score.")
    comment = serializers.CharField()
    latency_ms = serializers.FloatField()
    model = serializers.CharField()
    timestamp = serializers.DateTimeField()
    environment = serializers.CharField(help_text="As the client sent it; empty if not.")
    metadata = serializers.DictField(child=serializers.CharField(),
                                     help_text="The client's metadata (values as text).")
    config_id = serializers.CharField(help_text="The client's score config id, if any.")


class ScoreList(serializers.Serializer):
    scores = ScoreOut(many=True, help_text="Newest first.")


def score_out(row: dict) -> dict:
    kind = row["data_type"]
    value = row["value"]
    if kind == "categorical":
        value = row["string_value"]
    elif kind == "boolean" and value is not None:
        value = bool(value)
    return {
        "id": row["score_id"], "trace_id": row["trace_id"], "span_id": row["span_id"],
        "evaluator": row["evaluator"], "evaluator_type": row["evaluator_type"],
        "source": row["source"], "status": row["status"], "data_type": kind, "value": value,
        "comment": row["comment"], "latency_ms": round(row["latency_ms"], 3),
        "model": row["model"], "timestamp": row["timestamp"].isoformat(),
        "environment": row["environment"], "metadata": row["metadata"],
        "config_id": row["config_id"],
    }


