"""The Overview, Costs, Quality and Operations pages through Django's test client: what a
signed-in member reads there matches what their org stored (sent through the real API and
drained into ClickHouse), never another org's, and Operations is for staff only."""

import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from evaluation.models import EvaluatorConfig
from ingestion.models import ApiKey
from tests.ingest_helpers import client_for, drain_everything, iso_z, new_org, post_spans

pytestmark = pytest.mark.django_db(transaction=True)

# What the demo org stores: costs sent by the client, so the totals are known exactly.
COSTS_BY_USER = {"user-ann": "0.750000", "user-bob": "0.125000"}
NUMERIC_SCORES = [0.1, 0.5, 0.9, 0.9]
LABEL_SCORES = ["polite", "polite", "rude"]


def span(trace: str, index: int, *, user: str, model: str, cost: float | None,
         minutes_ago: float, status: str = "ok") -> dict:
    start = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    body = {
        "trace_id": trace, "span_id": f"{trace}-{index}",
        "parent_span_id": f"{trace}-0" if index else None,
        "name": "answer question" if index == 0 else "call model", "kind": "llm",
        "start_time": iso_z(start), "end_time": iso_z(start + timedelta(milliseconds=300)),
        "status": status, "model": model, "provider": "openai",
        "usage": {"input_tokens": 100, "output_tokens": 20}, "user_id": user,
        "session_id": f"s-{trace}", "environment": "production", "tags": ["prod"],
    }
    if cost is not None:
        body["cost"] = cost
    return body


def create_member(org, *, staff: bool = False, role: str = "viewer") -> tuple[str, str]:
    """A user of `org` with `role` (and Django staff rights if `staff`): email, password."""
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    password = "pw-" + uuid.uuid4().hex
    call_command("create_user", email, "--org", org.slug, "--role", role, "--password",
                 password, stdout=StringIO())
    if staff:
        get_user_model().objects.filter(username=email).update(is_staff=True)
    return email, password


def member(org, *, staff: bool = False, role: str = "viewer") -> Client:
    """A signed-in member of `org` (through the sign-in form, as a person)."""
    email, password = create_member(org, staff=staff, role=role)
    client = Client()
    answer = client.post("/sign-in/", {"username": email, "password": password})
    assert answer.status_code == 302, answer.content[:300]
    return client


def store_demo(org_key: str) -> dict:
    """Three traces of two users (one span of a model no price matches), scores of two
    names, all within the last hour; drained, so the pages can read them."""
    api = client_for(org_key)
    a, b, c = (uuid.uuid4().hex for _ in range(3))
    spans = [
        span(a, 0, user="user-ann", model="gpt-4o", cost=0.5, minutes_ago=30),
        span(a, 1, user="user-ann", model="gpt-4o", cost=0.25, minutes_ago=29.9,
             status="error"),
        span(b, 0, user="user-bob", model="claude-3-5-sonnet", cost=0.125, minutes_ago=20),
        span(c, 0, user="user-ann", model="charts-finetune-x", cost=None, minutes_ago=10),
    ]
    answer = post_spans(api, spans)
    assert answer.status_code == 202, answer.content
    scores = [{"trace_id": a, "name": "helpfulness", "value": v} for v in NUMERIC_SCORES]
    scores += [{"trace_id": b, "name": "tone", "value": v} for v in LABEL_SCORES]
    answer = api.post("/api/v1/scores", {"scores": scores}, format="json")
    assert answer.status_code == 201, answer.content
    drain_everything()
    return {"traces": 3, "spans": len(spans), "trace_ids": (a, b, c)}


@pytest.fixture
def demo():
    org, key = new_org(name="charts demo")
    other, other_key = new_org(name="charts other")
    facts = store_demo(key)
    # Another org's spans in the same window: none of them may show on the demo org's pages.
    post_spans(client_for(other_key), [span(uuid.uuid4().hex, 0, user="user-ann",
                                            model="gpt-4o", cost=9.0, minutes_ago=15)])
    drain_everything()
    return {"org": org, "other": other, **facts}


def test_overview_counts_the_orgs_spans_traces_and_cost(demo):
    page = member(demo["org"]).get("/overview/?window=1h")
    assert page.status_code == 200
    overview = page.context["page"]
    assert overview["totals"]["spans"] == 4
    assert overview["totals"]["traces"] == 3
    assert overview["totals"]["errors"] == 1
    assert str(overview["totals"]["cost"]) == "0.875000000000"
    spans_series = overview["charts"]["volume"]["data"][1]
    assert len(spans_series) == len(overview["charts"]["volume"]["data"][0]) == 60
    assert sum(spans_series) == 4
    assert [m["group"] for m in overview["top_models"]][:2] == ["gpt-4o", "claude-3-5-sonnet"]
    assert overview["top_users"][0]["group"] == "user-ann"
    html = page.content.decode()
    assert 'id="chart-volume"' in html and "uPlot.iife.min" in html
    assert "9.0" not in html  # the other org's cost


def test_costs_grouped_by_user_show_each_users_total_and_the_unpriced_model(demo):
    page = member(demo["org"]).get("/costs/?window=24h&group_by=user")
    assert page.status_code == 200
    groups = {row["group"]: f"{row['cost']:.6f}" for row in page.context["page"]["groups"]}
    assert groups == COSTS_BY_USER
    html = page.content.decode()
    assert 'data-group="user-ann"' in html and "0.750000" in html
    unpriced = page.context["page"]["unpriced"]
    assert [row["model"] for row in unpriced] == ["charts-finetune-x"]
    assert "/admin/costs/price/add/?model_name=charts-finetune-x" in html


def test_quality_shows_each_score_names_distribution(demo):
    EvaluatorConfig.objects.create(org=demo["org"], name="helpfulness",
                                   evaluator_type="llm_judge")
    EvaluatorConfig.objects.create(org=demo["other"], name="other-orgs-evaluator",
                                   evaluator_type="regex", pattern="x")
    page = member(demo["org"]).get("/quality/?window=1h")
    assert page.status_code == 200
    quality = page.context["page"]
    by_name = {item["name"]: item for item in quality["distributions"]}
    assert sum(by_name["helpfulness"]["counts"]) == len(NUMERIC_SCORES)
    assert by_name["helpfulness"]["counts"][-1] == 2  # the two 0.9s in the top bin
    assert dict(zip(by_name["tone"]["edges"], by_name["tone"]["counts"], strict=True)) == {
        "polite": 2, "rude": 1}
    assert {b["name"]: b["state"] for b in quality["breakers"]} == {
        "llm_evaluation": "closed", "embedding_api": "closed"}
    html = page.content.decode()
    assert 'id="chart-dist-helpfulness"' in html
    # The org's evaluator configs with their outcomes in the window; not another org's.
    assert [(c["config"].name, c["outcomes"]["ok"]) for c in quality["configs"]] == [
        ("helpfulness", len(NUMERIC_SCORES))]
    assert "4 ok, 0 failed, 0 skipped" in html and "other-orgs-evaluator" not in html


def test_an_org_without_data_sees_what_to_do():
    org, _ = new_org(name="charts empty")
    client = member(org)
    assert b"No spans in this window" in client.get("/overview/").content
    assert b"No costs in this window" in client.get("/costs/").content
    assert b"No scores in this window" in client.get("/quality/").content


def test_operations_is_for_staff_only(demo):
    assert member(demo["org"], role="admin").get("/operations/").status_code == 404
    page = member(demo["org"], staff=True).get("/operations/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="degradation-level"' in html and "0: Normal" in html
    assert 'id="partition-lag"' in html and "/admin/" in html


def test_the_window_selector_swaps_only_the_body_for_htmx(demo):
    client = member(demo["org"])
    part = client.get("/costs/?window=1h&group_by=model", HTTP_HX_REQUEST="true")
    assert part.status_code == 200
    html = part.content.decode()
    assert html.lstrip().startswith('<section id="charts-body">')
    assert "<html" not in html


def test_new_costs_show_at_once_though_the_page_is_cached(demo):
    client = member(demo["org"])
    first = client.get("/costs/?window=24h&group_by=user").context["page"]
    assert f"{first['groups'][1]['cost']:.6f}" == COSTS_BY_USER["user-bob"]
    key = ApiKey.issue(demo["org"])[1]
    post_spans(client_for(key), [span(uuid.uuid4().hex, 0, user="user-bob", model="gpt-4o",
                                      cost=0.5, minutes_ago=5)])
    drain_everything()  # the drain bumps the org's cost generation: cached pages are dropped
    again = client.get("/costs/?window=24h&group_by=user").context["page"]
    assert {row["group"]: f"{row['cost']:.6f}" for row in again["groups"]} == {
        "user-ann": "0.750000", "user-bob": "0.625000"}
    overview = client.get("/overview/?window=24h").context["page"]
    assert [(row["group"], f"{row['cost']:.6f}") for row in overview["top_users"]] == [
        ("user-ann", "0.750000"), ("user-bob", "0.625000")]


def test_the_pages_escape_what_a_span_carries():
    org, key = new_org(name="charts hostile")
    hostile = "<script>alert(1)</script>"
    post_spans(client_for(key), [span(uuid.uuid4().hex, 0, user=hostile, model=hostile,
                                      cost=0.5, minutes_ago=5)])
    drain_everything()
    client = member(org)
    for path in ("/overview/?window=1h", "/costs/?window=1h&group_by=user",
                 "/costs/?window=1h&group_by=model"):
        html = client.get(path).content.decode()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path  # shown, as text
        assert hostile not in html, path  # neither in the tables nor in the charts' JSON


def test_quality_says_when_a_breaker_is_open():
    from evaluation.services.breakers import LLM_EVALUATION, get_breaker

    breaker = get_breaker(LLM_EVALUATION)
    breaker.reset()
    try:
        for _ in range(settings.LLM_EVAL_BREAKER["minimum_calls"]):
            breaker.record(breaker.permit(), failed=True, seconds=0.1)
        assert breaker.state == "open"
        org, _ = new_org(name="charts breaker")
        html = member(org).get("/quality/").content.decode()
        assert 'data-breaker="llm_evaluation">llm_evaluation: <strong>open</strong>' in html
        assert "skipped while it is open" in html
    finally:
        breaker.reset()
