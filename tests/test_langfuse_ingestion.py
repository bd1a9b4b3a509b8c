"""POST /api/public/ingestion (the Langfuse legacy batch), /api/public/scores and
/api/public/projects with hand-written bodies: every event type, the 207 shape, create and
update merged in any order and across batches, resends stored once, bad events named."""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from evaluation.services import scores
from ingestion.langfuse.merge import locked
from ingestion.models import ApiKey
from tests.ingest_helpers import drain_everything, new_org, stored_spans

pytestmark = pytest.mark.django_db


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def at(seconds: float) -> str:
    return iso(NOW + timedelta(seconds=seconds))


def langfuse_client(org) -> APIClient:
    _, raw = ApiKey.issue(org)
    key = ApiKey.objects.filter(org=org).latest("id")
    client = APIClient()
    token = base64.b64encode(f"{key.public_id}:{raw}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


def event(kind: str, body: dict, seconds: float = 0, event_id: str | None = None) -> dict:
    return {"id": event_id or str(uuid.uuid4()), "type": kind, "timestamp": at(seconds),
            "body": body}


def post_batch(client: APIClient, batch: list, **extra):
    return client.post("/api/public/ingestion", {"batch": batch, "metadata": {"sdk": "test"}},
                       format="json", **extra)


def content(row: dict, name: str):
    """A stored input or output as the client sent it: text as text, the rest as JSON."""
    text = row[f"{name}_content"]
    return text if row[f"{name}_format"] == "text" else json.loads(text)


def by_id(org) -> dict[str, dict]:
    return {row["span_id"]: row for row in stored_spans(org.id)}


@pytest.fixture
def org_and_client():
    org, _ = new_org()
    return org, langfuse_client(org)


def test_every_event_type_is_stored_and_answered_in_langfuses_207_shape(org_and_client):
    org, client = org_and_client
    drain_everything()
    trace = str(uuid.uuid4())
    ids = {kind: str(uuid.uuid4()) for kind in (
        "span", "generation", "event", "agent", "tool", "chain", "retriever", "evaluator",
        "embedding", "guardrail", "observation")}
    batch = [event("trace-create", {
        "id": trace, "timestamp": at(0), "name": "chat-turn", "userId": "u-7",
        "sessionId": "sess-7", "tags": ["prod", "beta"], "metadata": {"team": "search",
                                                                       "nested": {"a": 1}},
        "input": {"question": "hi"}, "output": "hello", "environment": "staging",
        "release": "r-1"})]
    for kind, the_id in ids.items():
        if kind == "observation":
            continue
        batch.append(event(f"{kind}-create", {
            "id": the_id, "traceId": trace, "name": f"{kind} step",
            "parentObservationId": ids["span"] if kind != "span" else None,
            "startTime": at(1), "endTime": at(2) if kind != "event" else None}))
    batch.append(event("observation-create", {
        "id": ids["observation"], "traceId": trace, "type": "TOOL", "name": "lookup",
        "startTime": at(3), "endTime": at(4)}))
    batch.append(event("sdk-log", {"log": "hello from the sdk"}))
    score_id = str(uuid.uuid4())
    batch.append(event("score-create", {"id": score_id, "traceId": trace, "name": "quality",
                                        "value": 0.75, "comment": "good"}))
    response = post_batch(client, batch)
    assert response.status_code == 207, response.content
    body = response.json()
    assert body["errors"] == []
    assert sorted(item["id"] for item in body["successes"]) == sorted(e["id"] for e in batch)
    assert {item["status"] for item in body["successes"]} == {201}
    drain_everything()
    rows = by_id(org)
    assert set(rows) == {trace, *ids.values()}
    root = rows[trace]
    assert (root["trace_id"], root["parent_span_id"], root["name"], root["kind"]) == (
        trace, "", "chat-turn", "chain")
    assert (root["user_id"], root["session_id"], list(root["tags"])) == (
        "u-7", "sess-7", ["prod", "beta"])
    assert root["environment"] == "staging"
    assert root["metadata"]["team"] == "search"
    assert json.loads(root["metadata"]["nested"]) == {"a": 1}
    assert root["metadata"]["langfuse.release"] == "r-1"
    assert content(root, "input") == {"question": "hi"}
    assert content(root, "output") == "hello"
    kinds = {kind: rows[the_id]["kind"] for kind, the_id in ids.items()}
    assert kinds == {"span": "other", "generation": "llm", "event": "other", "agent": "agent",
                     "tool": "tool", "chain": "chain", "retriever": "retrieval",
                     "evaluator": "other", "embedding": "embedding", "guardrail": "other",
                     "observation": "tool"}
    assert rows[ids["span"]]["parent_span_id"] == trace  # top level: under the trace
    assert rows[ids["tool"]]["parent_span_id"] == ids["span"]
    assert rows[ids["event"]]["end_time"] == rows[ids["event"]]["start_time"]
    assert rows[ids["span"]]["start_time"] == NOW + timedelta(seconds=1)
    (score,) = scores.read(org_id=org.id, trace_id=trace)
    assert (score["score_id"], score["evaluator"], score["value"], score["comment"],
            score["source"], score["data_type"]) == (score_id, "quality", 0.75, "good", "api",
                                                     "numeric")


def test_generation_fields_map_to_ours(org_and_client):
    org, client = org_and_client
    drain_everything()
    trace, gen, legacy = (str(uuid.uuid4()) for _ in range(3))
    response = post_batch(client, [
        event("generation-create", {
            "id": gen, "traceId": trace, "name": "llm call", "startTime": at(0),
            "endTime": at(2), "completionStartTime": at(1), "model": "gpt-4o",
            "modelParameters": {"temperature": 0.2, "max_tokens": 100, "stop": ["x"]},
            "input": [{"role": "user", "content": "Hi"}], "output": {"role": "assistant",
                                                                      "content": "Hello"},
            "usageDetails": {"input": 80, "input_cached_tokens": 20,
                             "cache_creation_input_tokens": 5, "output": 30,
                             "output_reasoning_tokens": 10, "total": 145},
            "costDetails": {"input": 0.001, "output": 0.002},
            "level": "ERROR", "statusMessage": "rate limited upstream", "version": "v3",
            "metadata": {"k": "v"}, "environment": "production"}),
        event("generation-create", {
            "id": legacy, "traceId": trace, "name": "legacy usage", "startTime": at(0),
            "endTime": at(1), "model": "gpt-4o-mini", "level": "WARNING",
            "metadata": ["not", "an", "object"],
            "usage": {"promptTokens": 11, "completionTokens": 4, "totalTokens": 15}}),
    ])
    assert response.json()["errors"] == [], response.content
    drain_everything()
    rows = by_id(org)
    row = rows[gen]
    # input adds the cached read and written tokens back; output the reasoning ones.
    assert (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"],
            row["total_tokens"]) == (105, 20, 40, 145)
    assert row["cost"] == Decimal("0.003")
    assert row["cost_source"] == "provided"
    assert (row["status"], row["status_message"]) == ("error", "rate limited upstream")
    assert (row["model"], row["environment"], row["kind"]) == ("gpt-4o", "production", "llm")
    assert row["metadata"]["k"] == "v"
    assert row["metadata"]["model_parameters.temperature"] == "0.2"
    assert row["metadata"]["model_parameters.max_tokens"] == "100"
    assert json.loads(row["metadata"]["model_parameters.stop"]) == ["x"]
    assert row["metadata"]["langfuse.version"] == "v3"
    assert row["metadata"]["langfuse.completion_start_time"] == at(1)
    assert content(row, "input") == [{"role": "user", "content": "Hi"}]
    assert content(row, "output") == {"role": "assistant", "content": "Hello"}
    old = rows[legacy]
    assert (old["input_tokens"], old["output_tokens"], old["total_tokens"]) == (11, 4, 15)
    assert (old["status"], old["metadata"]["langfuse.level"]) == ("ok", "WARNING")
    assert json.loads(old["metadata"]["metadata"]) == ["not", "an", "object"]


def test_an_update_before_its_create_in_another_request_is_merged(org_and_client):
    org, client = org_and_client
    drain_everything()
    trace, gen = str(uuid.uuid4()), str(uuid.uuid4())
    update = event("generation-update", {
        "id": gen, "traceId": trace, "endTime": at(5), "output": "the answer",
        "usage": {"input": 12, "output": 7, "unit": "TOKENS"}, "metadata": {"late": "yes"}},
        seconds=5)
    first = post_batch(client, [update])
    assert first.json() == {"successes": [{"id": update["id"], "status": 201}], "errors": []}
    create = event("generation-create", {
        "id": gen, "traceId": trace, "name": "answer", "startTime": at(0), "model": "gpt-4o",
        "input": "the question", "output": None, "metadata": {"early": "yes"}})
    second = post_batch(client, [create])
    assert second.json()["errors"] == []
    drain_everything()
    (row,) = stored_spans(org.id)
    assert (row["span_id"], row["name"], row["model"]) == (gen, "answer", "gpt-4o")
    assert row["start_time"] == NOW
    assert row["end_time"] == NOW + timedelta(seconds=5)
    assert content(row, "input") == "the question"
    assert content(row, "output") == "the answer"
    assert (row["input_tokens"], row["output_tokens"]) == (12, 7)
    assert (row["metadata"]["early"], row["metadata"]["late"]) == ("yes", "yes")
    # An older update resent after a newer one does not undo it.
    newer = event("generation-update", {"id": gen, "traceId": trace, "output": "revised"},
                  seconds=9)
    assert post_batch(client, [newer]).json()["errors"] == []
    assert post_batch(client, [update]).json()["errors"] == []
    drain_everything()
    (row,) = stored_spans(org.id)
    assert content(row, "output") == "revised"


def test_the_same_batch_twice_stores_the_same_spans_and_scores_once(org_and_client):
    org, client = org_and_client
    drain_everything()
    trace, span_id, score_id = (str(uuid.uuid4()) for _ in range(3))
    batch = [
        event("trace-create", {"id": trace, "name": "t", "userId": "u", "tags": ["a"],
                               "metadata": {"m": 1}}),
        event("span-create", {"id": span_id, "traceId": trace, "name": "s",
                              "startTime": at(1)}, seconds=1),
        event("span-update", {"id": span_id, "traceId": trace, "endTime": at(3),
                              "output": {"ok": True}}, seconds=3),
        event("score-create", {"id": score_id, "traceId": trace, "observationId": span_id,
                               "name": "thumbs", "value": 1, "dataType": "BOOLEAN"}),
    ]
    first = post_batch(client, batch).json()
    drain_everything()
    once = by_id(org)
    second = post_batch(client, batch).json()
    assert first == second and first["errors"] == []
    drain_everything()
    twice = by_id(org)
    assert set(twice) == {trace, span_id}
    volatile = {"received_at", "ingested_at", "version"}
    for the_id, row in once.items():
        assert {k: v for k, v in row.items() if k not in volatile} == {
            k: v for k, v in twice[the_id].items() if k not in volatile}
    assert list(twice[trace]["tags"]) == ["a"]
    assert twice[span_id]["end_time"] == NOW + timedelta(seconds=3)
    (score,) = scores.read(org_id=org.id, trace_id=trace)
    assert (score["span_id"], score["data_type"], score["value"]) == (span_id, "boolean", 1.0)


def test_a_bad_event_is_named_and_the_good_ones_are_stored(org_and_client):
    org, client = org_and_client
    drain_everything()
    trace, good, old = (str(uuid.uuid4()) for _ in range(3))
    batch = [
        event("trace-create", {"id": trace, "name": "t"}),
        event("span-create", {"id": good, "traceId": trace, "name": "fine", "startTime": at(1)}),
        event("span-create", {"id": str(uuid.uuid4()), "traceId": trace,
                              "startTime": "yesterday-ish"}, event_id="bad-time"),
        event("span-create", {"id": old, "traceId": trace, "name": "too old",
                              "startTime": iso(NOW - timedelta(days=4000))}, event_id="too-old"),
        event("generation-create", {"id": str(uuid.uuid4()), "traceId": trace,
                                    "usageDetails": {"input": "lots"}}, event_id="bad-usage"),
        event("span-frobnicate", {"id": "x"}, event_id="bad-type"),
        event("score-create", {"traceId": trace, "name": "q", "value": "NaN-ish",
                               "dataType": "NUMERIC"}, event_id="bad-score"),
        {"id": "no-body", "type": "span-create"},
        event("span-create", {"traceId": trace, "name": "no id"}, event_id="no-id"),
    ]
    response = post_batch(client, batch)
    assert response.status_code == 207
    body = response.json()
    errors = {item["id"]: item for item in body["errors"]}
    assert set(errors) == {"bad-time", "too-old", "bad-usage", "bad-type", "bad-score",
                           "no-body", "no-id"}
    assert {item["status"] for item in errors.values()} == {400}
    assert "body.startTime" in errors["bad-time"]["message"]
    assert f"span {old} refused" in errors["too-old"]["message"]
    assert "start_time" in errors["too-old"]["error"]
    assert "body.usageDetails.input" in errors["bad-usage"]["message"]
    assert "unknown event type" in errors["bad-type"]["message"]
    assert "body.value" in errors["bad-score"]["message"]
    assert "body" in errors["no-body"]["message"]
    assert "body.id" in errors["no-id"]["message"]
    assert all(set(item) == {"id", "status", "message", "error"} for item in errors.values())
    assert {item["id"] for item in body["successes"]} == {batch[0]["id"], batch[1]["id"]}
    drain_everything()
    assert set(by_id(org)) == {trace, good}


def test_truncated_content_is_stored_and_named(org_and_client):
    org, client = org_and_client
    drain_everything()
    trace, span_id = str(uuid.uuid4()), str(uuid.uuid4())
    with override_settings(INGEST_MAX_CONTENT_BYTES=1000):
        response = post_batch(client, [event("span-create", {
            "id": span_id, "traceId": trace, "name": "big", "startTime": at(0),
            "input": "x" * 5000})])
    (success,) = response.json()["successes"]
    assert "input truncated" in success["message"] and span_id in success["message"]
    drain_everything()
    (row,) = stored_spans(org.id)
    assert "[truncated by llmops" in content(row, "input")


def test_bodies_over_langfuses_limit_are_413(org_and_client):
    _, client = org_and_client
    with override_settings(LANGFUSE_MAX_BODY_BYTES=2000):
        response = post_batch(client, [event("sdk-log", {"log": "x" * 3000})])
    assert response.status_code == 413
    assert "LANGFUSE_MAX_BODY_BYTES" in response.json()["detail"]
    assert post_batch(client, [event("sdk-log", {"log": "x"})]).status_code == 207


def test_public_scores_one_or_a_list(org_and_client):
    org, client = org_and_client
    trace = str(uuid.uuid4())
    one = client.post("/api/public/scores", {
        "traceId": trace, "name": "helpful", "value": 0.5, "comment": "ok"}, format="json")
    assert one.status_code == 200, one.content
    single_id = one.json()["id"]
    many = client.post("/api/public/scores", [
        {"id": "s-bool", "traceId": trace, "observationId": "obs-1", "name": "correct",
         "value": 1, "dataType": "BOOLEAN"},
        {"id": "s-cat", "traceId": trace, "name": "tone", "value": "friendly",
         "dataType": "CATEGORICAL"},
    ], format="json")
    assert many.status_code == 202 and many.json()["message"] == "Accepted"
    partly = client.post("/api/public/scores", [
        {"id": "s-2", "traceId": trace, "name": "n", "value": 3},
        {"traceId": trace, "name": "bad", "value": True, "dataType": "NUMERIC"},
    ], format="json")
    assert partly.status_code == 207
    assert (partly.json()["accepted"], partly.json()["rejected"]) == (1, 1)
    assert "body.value" in partly.json()["errors"][0]["message"]
    refused = client.post("/api/public/scores", {"name": "no trace", "value": 1}, format="json")
    assert refused.status_code == 400 and "body.traceId" in refused.json()["detail"]
    stored = {row["score_id"]: row for row in scores.read(org_id=org.id, trace_id=trace)}
    assert set(stored) == {single_id, "s-bool", "s-cat", "s-2"}
    assert (stored[single_id]["value"], stored[single_id]["comment"]) == (0.5, "ok")
    assert (stored["s-bool"]["span_id"], stored["s-bool"]["data_type"]) == ("obs-1", "boolean")
    assert (stored["s-cat"]["string_value"], stored["s-cat"]["data_type"]) == (
        "friendly", "categorical")
    assert {row["source"] for row in stored.values()} == {"api"}


def test_a_request_that_cannot_take_an_observations_lock_in_time_is_a_503(org_and_client):
    org, client = org_and_client
    the_id = str(uuid.uuid4())
    batch = [event("span-create", {"id": the_id, "traceId": "t", "name": "s",
                                   "startTime": at(0)})]
    with override_settings(LANGFUSE_MERGE_LOCK_WAIT_S=0.2), locked(org.id, [("obs", the_id)]):
        response = post_batch(client, batch)
    assert response.status_code == 503 and response["Retry-After"]
    assert f"observation {the_id} is being merged by another request" in response.json()[
        "detail"]
    assert post_batch(client, batch).json()["errors"] == []


def test_score_environment_metadata_and_config_id_are_kept_and_read_back(org_and_client):
    org, client = org_and_client
    trace = str(uuid.uuid4())
    context = {"environment": "staging", "configId": "cfg-7",
               "metadata": {"reviewer": "ana", "round": 2, "tags": ["a"]}}
    one = client.post("/api/public/scores", {"id": "direct", "traceId": trace, "name": "q",
                                             "value": 0.9, **context}, format="json")
    assert one.status_code == 200, one.content
    batch = post_batch(client, [event("score-create", {
        "id": "batched", "traceId": trace, "name": "q", "value": 0.4, **context,
        "metadata": "plain text"})])
    assert batch.status_code == 207 and batch.json()["errors"] == [], batch.json()
    bad = client.post("/api/public/scores", {"traceId": trace, "name": "q", "value": 1,
                                             "environment": 5}, format="json")
    assert bad.status_code == 400 and "body.environment" in bad.json()["detail"]
    stored = {row["score_id"]: row for row in scores.read(org_id=org.id, trace_id=trace)}
    assert set(stored) == {"direct", "batched"}
    for row in stored.values():
        assert (row["environment"], row["config_id"]) == ("staging", "cfg-7")
    assert stored["direct"]["metadata"] == {"reviewer": "ana", "round": "2", "tags": '["a"]'}
    assert stored["batched"]["metadata"] == {"metadata": "plain text"}
    # And through our API, as a user reads them.
    _, raw = ApiKey.issue(org)
    listed = APIClient()
    listed.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    answer = listed.get("/api/v1/scores", {"trace_id": trace})
    assert answer.status_code == 200, answer.content
    read = {score["id"]: score for score in answer.json()["scores"]}
    assert (read["direct"]["environment"], read["direct"]["config_id"],
            read["direct"]["metadata"]["reviewer"]) == ("staging", "cfg-7", "ana")
