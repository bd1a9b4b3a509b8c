"""/api/v1/scores: human and client scores in, every score of the key's org out, filtered."""

from datetime import timedelta

import pytest

from tests.eval_helpers import drain_queue, ingest, new_config
from tests.ingest_helpers import client_for, days_ago, iso_z, make_span, new_org

pytest_plugins = ["tests.eval_fixtures"]
pytestmark = pytest.mark.django_db(transaction=True)


def at(hour: int, minute: int = 0) -> str:
    """A time of a day last week: scores stored at fixed dates would fall out of retention."""
    return iso_z(days_ago(7) + timedelta(hours=hour, minutes=minute))


def post(client, scores: list[dict]):
    return client.post("/api/v1/scores", {"scores": scores}, format="json")


def get(client, **filters) -> list[dict]:
    response = client.get("/api/v1/scores", filters)
    assert response.status_code == 200, response.content
    return response.json()["scores"]


def test_scores_in_and_out_filtered_by_trace_span_evaluator_and_time(provider):
    org, key = new_org()
    client = client_for(key)
    response = post(client, [
        {"trace_id": "t1", "span_id": "s1", "name": "thumbs", "value": True, "source": "human",
         "comment": "spot on", "timestamp": at(10)},
        {"trace_id": "t1", "span_id": "s2", "name": "accuracy", "value": 0.25,
         "timestamp": at(11)},
        {"trace_id": "t2", "name": "tone", "value": "friendly", "data_type": "categorical",
         "timestamp": at(12)},
    ])
    assert response.status_code == 201, response.content
    assert len(response.json()["ids"]) == 3

    assert [s["evaluator"] for s in get(client)] == ["tone", "accuracy", "thumbs"]  # newest first
    assert {s["evaluator"] for s in get(client, trace_id="t1")} == {"thumbs", "accuracy"}
    (thumbs,) = get(client, trace_id="t1", span_id="s1")
    assert (thumbs["value"], thumbs["data_type"], thumbs["source"], thumbs["comment"]) == (
        True, "boolean", "human", "spot on")
    (tone,) = get(client, evaluator="tone")
    assert (tone["value"], tone["data_type"], tone["source"], tone["span_id"]) == (
        "friendly", "categorical", "client", "")
    assert [s["evaluator"] for s in get(client, since=at(10, 30),
                                        until=at(12))] == ["accuracy"]
    assert get(client, evaluator="thumbs", status="ok")[0]["status"] == "ok"


def test_evaluator_scores_come_back_with_their_status(provider):
    org, key = new_org()
    config = new_config(org, "json_valid")
    ingest(key, [make_span("api", 0, output='{"ok": true}'), make_span("api", 1)])
    drain_queue()
    scores = {s["span_id"]: s for s in get(client_for(key), evaluator=config.name)}
    assert scores["api-s0"]["value"] is True and scores["api-s1"]["value"] is False
    assert {s["source"] for s in scores.values()} == {"evaluator"}
    assert {s["evaluator_type"] for s in scores.values()} == {"json_valid"}


def test_the_org_comes_from_the_key_only(provider):
    org, key = new_org()
    other, other_key = new_org()
    response = post(client_for(key), [{"trace_id": "mine", "name": "n", "value": 1,
                                       "org_id": other.id}])
    assert response.status_code == 201
    assert len(get(client_for(key), trace_id="mine")) == 1
    assert get(client_for(other_key), trace_id="mine") == []


def test_sending_the_same_id_again_replaces_the_score(provider):
    _, key = new_org()
    client = client_for(key)
    assert post(client, [{"id": "fix-1", "trace_id": "t", "name": "grade", "value": 1,
                          "timestamp": at(10)}]).status_code == 201
    # A correction claiming an earlier time still wins: it was written later.
    assert post(client, [{"id": "fix-1", "trace_id": "t", "name": "grade", "value": 0,
                          "timestamp": at(9)}]).status_code == 201
    scores = get(client, trace_id="t")
    assert [(s["id"], s["value"]) for s in scores] == [("fix-1", 0.0)]


@pytest.mark.parametrize(("score", "field"), [
    ({"name": "n", "value": 1}, "trace_id"),
    ({"trace_id": "t", "value": 1}, "name"),
    ({"trace_id": "t", "name": "n", "value": None}, "value"),
    ({"trace_id": "t", "name": "n", "value": {"a": 1}}, "value"),
    ({"trace_id": "t", "name": "n", "value": "yes", "data_type": "boolean"}, "value"),
    ({"trace_id": "t", "name": "n", "value": 1, "source": "evaluator"}, "source"),
])
def test_bad_scores_are_refused_with_the_field(provider, score, field):
    _, key = new_org()
    response = post(client_for(key), [score])
    assert response.status_code == 400
    assert field in str(response.json())


def test_limits_and_authentication(provider, client):
    _, key = new_org()
    assert client.get("/api/v1/scores").status_code == 401
    assert client.post("/api/v1/scores", {"scores": []}, format="json",
                       HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 400
    too_many = [{"trace_id": "t", "name": "n", "value": 1}] * 1001
    assert post(client_for(key), too_many).status_code == 400
    assert client_for(key).get("/api/v1/scores", {"limit": 5000}).status_code == 400
