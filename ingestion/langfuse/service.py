"""The Langfuse legacy batch (POST /api/public/ingestion): events to spans and scores.

Each trace and observation is merged with its earlier events (merge.py) and published whole
through accept_spans, so validation, sampling, the degradation gate, quota, truncation and
the Kafka guarantee are those of POST /api/v1/spans: an event is a success only once the
span it belongs to is acknowledged by Kafka. Scores are written through the evaluation app."""

import logging
from collections import defaultdict
from datetime import UTC, datetime

from rest_framework import serializers

from evaluation.serializers import kept_time
from evaluation.services import scores
from ingestion.langfuse.mapping import (
    OBSERVATION_KINDS,
    BadEvent,
    check_observation_body,
    check_trace_body,
    observation_span,
    score_fields,
    trace_span,
)
from ingestion.langfuse.merge import Event, Merged, event_time, locked, merge
from ingestion.services.accept import accept_spans
from ingestion.services.tenancy import OrgContext

logger = logging.getLogger(__name__)

MAX_ID_LENGTH = 128


def error(envelope_id: str, status: int, message: str, detail=None) -> dict:
    """One entry of the 207's `errors`, as Langfuse clients read it."""
    return {"id": envelope_id, "status": status, "message": message,
            "error": detail if detail is not None else message}


def classify(envelope_type: str, body: dict) -> tuple[str, bool]:
    """(kind, is_update) of a trace or observation event; BadEvent for any other type."""
    if envelope_type == "trace-create":
        return "trace", False
    base, _, action = envelope_type.rpartition("-")
    if action in ("create", "update"):
        if base == "observation":
            kind = str(body.get("type") or "span").lower()
            if kind not in OBSERVATION_KINDS:
                raise BadEvent(f"body.type: one of {', '.join(OBSERVATION_KINDS).upper()}")
            return kind, action == "update"
        if base in OBSERVATION_KINDS and (action == "create" or base in ("span", "generation")):
            return base, action == "update"
    raise BadEvent(f"unknown event type {envelope_type[:64]!r}")


def object_id(body: dict) -> str:
    value = body.get("id")
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise BadEvent(f"body.id: required, a string of at most {MAX_ID_LENGTH} characters")
    return value


def ingest_batch(*, org: OrgContext, batch: list) -> dict:
    """The 207 body for `batch`: {"successes": [{id, status}], "errors": [{id, status,
    message, error}]}, by envelope id. Raises what accept_spans raises (rate limit, read-only,
    Kafka unavailable): then nothing of the batch counts as stored and the client resends."""
    successes, errors = [], []
    groups: dict[tuple[bool, str], list[tuple[str, Event]]] = defaultdict(list)
    score_events = []
    for position, envelope in enumerate(batch):
        if not isinstance(envelope, dict):
            errors.append(error("", 400, f"batch[{position}]: expected an event object"))
            continue
        envelope_id = envelope.get("id")
        envelope_id = envelope_id if isinstance(envelope_id, str) else ""
        try:
            envelope_type, body = envelope.get("type"), envelope.get("body")
            if not envelope_id:
                raise BadEvent("id: every event needs an id (a string)")
            if not isinstance(envelope_type, str):
                raise BadEvent("type: required, e.g. trace-create or span-update")
            if not isinstance(body, dict):
                raise BadEvent("body: expected an object")
            timestamp = event_time(envelope)
            if envelope_type == "sdk-log":
                logger.info("langfuse sdk-log from org %s: %.500s", org.slug, body.get("log"))
                successes.append({"id": envelope_id, "status": 201})
                continue
            if envelope_type == "score-create":
                fields = score_fields(body, envelope_id)
                fields["timestamp"] = (fields["timestamp"]
                                       or datetime.fromtimestamp(timestamp or _now(), UTC))
                score_events.append((envelope_id, fields))
                continue
            kind, is_update = classify(envelope_type, body)
            if kind == "trace":
                check_trace_body(body)
            else:
                check_observation_body(body)
            groups[(kind == "trace", object_id(body))].append(
                (envelope_id, Event(kind, is_update, timestamp, body)))
        except BadEvent as exc:
            errors.append(error(envelope_id, 400, f"{envelope_type}: {exc}"
                                if isinstance(envelope.get("type"), str) else str(exc)))
    _store_spans(org, groups, successes, errors)
    _store_scores(org, score_events, successes, errors)
    return {"successes": successes, "errors": errors}


def _now() -> float:
    return datetime.now(UTC).timestamp()


def span_of(state: Merged) -> dict | None:
    """The span of a merged body; None while it cannot be one yet (an update whose create,
    with its trace id, has not arrived: it waits in Redis)."""
    fields = state.values()
    if state.kind == "trace":
        return trace_span(fields=fields, metadata=state.metadata_values(), tags=state.tags,
                          first_seen=state.first_seen_time)
    if not isinstance(fields.get("traceId"), str) or not fields["traceId"]:
        return None
    return observation_span(kind=state.kind, fields=fields, metadata=state.metadata_values(),
                            first_seen=state.first_seen_time)


def _store_spans(org: OrgContext, groups: dict, successes: list, errors: list) -> None:
    objects = [("trace" if is_trace else "obs", the_id) for is_trace, the_id in groups]
    with locked(org.org_id, objects):
        _merge_and_publish(org, groups, successes, errors)


def _merge_and_publish(org: OrgContext, groups: dict, successes: list, errors: list) -> None:
    spans, owners = [], []
    for (_, the_id), events in groups.items():
        envelope_ids = [envelope_id for envelope_id, _ in events]
        try:
            span = span_of(merge(org.org_id, the_id, [event for _, event in events]))
        except BadEvent as exc:
            errors.extend(error(envelope_id, 400, str(exc)) for envelope_id in envelope_ids)
            continue
        if span is None:  # kept for its create; stored in Redis: a success
            successes.extend({"id": envelope_id, "status": 201} for envelope_id in envelope_ids)
            continue
        spans.append(span)
        owners.append(envelope_ids)
    if not spans:
        return
    result = accept_spans(org=org, spans=spans)
    refused = {item["index"]: item["errors"] for item in result.rejected}
    cut = {item["index"]: item["fields"] for item in result.truncated}
    for index, envelope_ids in enumerate(owners):
        span_id = spans[index]["span_id"]
        if index in refused:
            reasons = "; ".join(f"{name}: {why}" for name, why in refused[index].items())
            errors.extend(error(envelope_id, 400, f"span {span_id} refused: {reasons}",
                                refused[index]) for envelope_id in envelope_ids)
            continue
        for envelope_id in envelope_ids:
            entry = {"id": envelope_id, "status": 201}
            if index in cut:
                entry["message"] = (f"span {span_id} stored with {' and '.join(cut[index])} "
                                    "truncated (INGEST_MAX_CONTENT_BYTES)")
            successes.append(entry)


def _store_scores(org: OrgContext, events: list, successes: list, errors: list) -> None:
    rows, stored = [], []
    for envelope_id, fields in events:
        try:
            kept_time(fields["timestamp"])
        except serializers.ValidationError as exc:
            errors.append(error(envelope_id, 400, f"score-create: body.timestamp {exc.detail[0]}"))
            continue
        rows.append(score_row(org, fields))
        stored.append(envelope_id)
    if not rows:
        return
    try:
        scores.write(rows)
    except scores.ScoresNotStored as exc:
        errors.extend(error(envelope_id, 503, f"score not stored, retry: {exc}")
                      for envelope_id in stored)
        return
    successes.extend({"id": envelope_id, "status": 201} for envelope_id in stored)


def score_row(org: OrgContext, fields: dict) -> list:
    at = fields["timestamp"]
    return scores.row(org_id=org.org_id, trace_id=fields["trace_id"], span_id=fields["span_id"],
                      evaluator=fields["evaluator"], score_id=fields["score_id"], status="ok",
                      source="api", span_time=at, timestamp=at, data_type=fields["data_type"],
                      value=fields["value"], string_value=fields["string_value"],
                      comment=fields["comment"], environment=fields["environment"],
                      metadata=fields["metadata"], config_id=fields["config_id"])
