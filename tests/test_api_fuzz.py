"""The API fuzzed from its own OpenAPI schema (schemathesis, in-process over WSGI): every
endpoint, with a valid API key, answers no 5xx and only what its schema documents."""

from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
import yaml
from django.core import signals
from django.core.management import call_command
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from llmops.wsgi import application
from tests.ingest_helpers import client_for, drain_everything, make_span, new_org, post_spans

# Per endpoint, derandomized (the same cases every run); the file takes about a minute.
EXAMPLES_PER_ENDPOINT = 250
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


pytestmark = pytest.mark.django_db


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@pytest.fixture
def api_key():
    # As Django's test client does: the app must not close the test's connection (and with
    # it the transaction holding the org) at the end of each request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    _, key = new_org()
    yield key
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES_PER_ENDPOINT, deadline=None, derandomize=True,
                     suppress_health_check=list(HealthCheck))
def test_no_5xx_and_every_answer_matches_the_schema(case, api_key):
    response = case.call(headers={"Authorization": f"Bearer {api_key}"})
    case.validate_response(response, checks=CHECKS)


# Found by the fuzzer (each was a 500): a window's end at year 1 has no default start, and
# ClickHouse cannot compare a score's time before 1970.
@pytest.mark.parametrize(("path", "params", "field"), [
    ("/api/v1/costs", {"to": "0001-01-01T00:00:00Z"}, "to"),
    ("/api/v1/metrics", {"to": "0001-01-01T00:00:00Z"}, "to"),
    ("/api/v1/traces", {"to": "0001-01-01T00:00:00Z"}, "to"),
    ("/api/v1/scores", {"since": "0721-05-10T12:37:13Z"}, "since"),
])
def test_times_out_of_the_stores_range_are_a_400_naming_the_parameter(api_key, path, params,
                                                                      field):
    response = client_for(api_key).get(path, params)
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_a_score_time_out_of_the_stores_range_is_a_400(api_key):
    response = client_for(api_key).post("/api/v1/scores", {"scores": [
        {"trace_id": "t", "name": "n", "value": 1, "timestamp": "0001-01-01T00:00:00Z"}]},
        format="json")
    assert response.status_code == 400, response.content
    assert "timestamp" in str(response.json())


def test_the_schema_is_valid_openapi_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file",
                 str(tmp_path / "schema.yaml"))
    paths = yaml.safe_load((tmp_path / "schema.yaml").read_text())["paths"]
    post = paths["/api/v1/spans"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SpansIn"}
    assert set(post["responses"]) >= {"202", "207", "400", "401", "413", "429", "503"}
    scores = paths["/api/v1/scores"]["post"]
    assert scores["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ScoresIn"}


@pytest.mark.django_db(transaction=True)  # the drain's threads read the org's prices
def test_answers_over_stored_spans_match_the_schema():
    """The fuzzer's org has no stored spans: here the query answers carry real items."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        org, key = new_org()
        now = datetime.now(UTC) - timedelta(minutes=10)
        spans = [make_span("doc", i, start_time=iso(now + timedelta(seconds=i)),
                           end_time=iso(now + timedelta(seconds=i, milliseconds=300)),
                           cost=0.01 if i == 2 else None) for i in range(4)]
        spans.append(make_span("doc2", 0, start_time=iso(now), end_time=None, usage=None,
                               model="", metadata={}, tags=[]))
        assert post_spans(client_for(key), spans).status_code == 202
        drain_everything()
        assert client_for(key).post("/api/v1/scores", {"scores": [
            {"trace_id": "doc", "span_id": "doc-s1", "name": "helpful", "value": 0.5},
            {"trace_id": "doc", "name": "tone", "value": "warm"},
            {"trace_id": "doc", "name": "ok", "value": True}]}, format="json").status_code == 201
        window = {"from": iso(now - timedelta(hours=1)), "to": iso(now + timedelta(hours=1))}
        calls = [
            ("/api/v1/traces", {}, window),
            ("/api/v1/traces/{trace_id}", {"trace_id": "doc"}, {}),
            ("/api/v1/spans", {}, window),
            ("/api/v1/sessions/{session_id}", {"session_id": "sess-doc"}, {}),
            ("/api/v1/metrics", {}, {**window, "bucket": "minute", "group_by": "model"}),
            ("/api/v1/costs", {}, {**window, "group_by": "model"}),
            ("/api/v1/scores", {}, {"trace_id": "doc"}),
        ]
        for path, path_parameters, query in calls:
            case = schema[path]["GET"].Case(path_parameters=path_parameters, query=query)
            response = case.call(headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200, (path, response.text)
            assert response.json(), path
            case.validate_response(response, checks=CHECKS)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
