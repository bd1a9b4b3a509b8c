"""The real Langfuse SDKs, unchanged but for host and keys, against a live API (gunicorn on a
free port, on this test run's stores): langfuse 2.60.10 (its own virtualenv, cached under
var/venvs/langfuse2) through POST /api/public/ingestion, langfuse 5.x (the shared venv)
through its OTLP exporter at /api/public/otel/v1/traces and POST /api/public/scores. Every
stored field is compared with what the client sent."""

import base64
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from evaluation.services import scores
from ingestion.langfuse.merge import locked
from ingestion.models import ApiKey
from tests.ingest_helpers import drain_everything, new_org, stored_spans

pytestmark = pytest.mark.django_db(transaction=True)

LANGFUSE2 = "2.60.10"
VENV2 = Path(settings.BASE_DIR) / "var" / "venvs" / "langfuse2"


def langfuse2_python() -> Path:
    """The langfuse 2.x virtualenv's python: created once, reused by later runs."""
    python = VENV2 / "bin" / "python"
    check = [str(python), "-c", f"import langfuse.version as v; assert v.__version__ == "
                                f"'{LANGFUSE2}'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV2)], check=True)
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q",
                                f"langfuse=={LANGFUSE2}"], capture_output=True, text=True)
    assert installed.returncode == 0, f"pip install langfuse=={LANGFUSE2}: {installed.stderr}"
    return python


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def live_api(subprocess_env):
    """The API under gunicorn on a free loopback port, on this run's test stores."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "llmops.wsgi:application",
         "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4",
         "--timeout", "60"],
        cwd=settings.BASE_DIR, env=subprocess_env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health/live", timeout=2):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the API did not start: {server.stdout.read()}")
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(timeout=20)


def run_client(python: Path | str, script: str, env: dict) -> dict:
    """Run `script` with `python`; it prints one JSON line of what it sent, last."""
    result = subprocess.run([str(python), "-c", textwrap.dedent(script)],
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def keys_for(org) -> dict:
    _, secret = ApiKey.issue(org)
    key = ApiKey.objects.filter(org=org).latest("id")
    return {"LF_PUBLIC": key.public_id, "LF_SECRET": secret}


def content(row: dict, name: str):
    text = row[f"{name}_content"]
    return text if row[f"{name}_format"] == "text" else json.loads(text)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


LANGFUSE2_SCRIPT = """
    import json, logging, os, sys
    from datetime import datetime
    from langfuse import Langfuse

    errors = []
    class Collect(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                errors.append(record.getMessage())
    logging.getLogger("langfuse").addHandler(Collect())

    base = datetime.fromisoformat(os.environ["BASE"])
    ids = json.loads(os.environ["IDS"])
    at = lambda seconds: base.replace(second=seconds)
    lf = Langfuse(public_key=os.environ["LF_PUBLIC"], secret_key=os.environ["LF_SECRET"],
                  host=os.environ["HOST"], flush_at=100, flush_interval=0.5, max_retries=1)
    assert lf.auth_check()
    trace = lf.trace(id=ids["trace"], name="support-chat", user_id="user-42",
                     session_id="sess-42", tags=["prod", "v2"], metadata={"team": "search"},
                     input={"question": "Where is my order?"}, timestamp=at(0),
                     release="2026.11")
    span = trace.span(id=ids["span"], name="retrieve", start_time=at(1),
                      input={"query": "order"}, metadata={"index": "orders"})
    span.end(end_time=at(2), output=["doc-1", "doc-2"])
    generation = span.generation(
        id=ids["generation"], name="answer", start_time=at(2), model="gpt-4o-mini",
        model_parameters={"temperature": 0.1, "max_tokens": 256},
        input=[{"role": "user", "content": "Where is my order?"}])
    generation.end(end_time=at(4), output={"role": "assistant", "content": "On its way."},
                   usage_details={"input": 50, "input_cached_tokens": 30, "output": 12,
                                  "output_reasoning_tokens": 8, "total": 100},
                   cost_details={"input": 0.0004, "output": 0.0002, "total": 0.0006},
                   level="WARNING", status_message="slow upstream")
    trace.event(id=ids["event"], name="cache-hit", start_time=at(3),
                input={"key": "order-7"}, level="ERROR", status_message="stale entry")
    trace.update(output="On its way.")
    trace.score(id=ids["score"], name="helpfulness", value=0.9, comment="clear answer")
    generation.score(id=ids["label"], name="tone", value="friendly", data_type="CATEGORICAL")
    lf.flush()
    lf.shutdown()
    print(json.dumps({"errors": errors}))
"""


def test_langfuse_2_trace_span_generation_event_and_scores(live_api):
    python = langfuse2_python()
    org, _ = new_org()
    drain_everything()
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    ids = {name: str(uuid.uuid4()) for name in (
        "trace", "span", "generation", "event", "score", "label")}
    sent = run_client(python, LANGFUSE2_SCRIPT, {
        **keys_for(org), "HOST": live_api, "BASE": base.isoformat(), "IDS": json.dumps(ids)})
    assert sent["errors"] == []
    drain_everything()
    rows = {row["span_id"]: row for row in stored_spans(org.id)}
    assert set(rows) == {ids["trace"], ids["span"], ids["generation"], ids["event"]}
    assert {row["trace_id"] for row in rows.values()} == {ids["trace"]}
    trace = rows[ids["trace"]]
    assert (trace["name"], trace["kind"], trace["parent_span_id"]) == (
        "support-chat", "chain", "")
    assert (trace["user_id"], trace["session_id"], list(trace["tags"])) == (
        "user-42", "sess-42", ["prod", "v2"])
    assert trace["metadata"]["team"] == "search"
    assert trace["metadata"]["langfuse.release"] == "2026.11"
    assert trace["start_time"] == base
    assert content(trace, "input") == {"question": "Where is my order?"}
    assert content(trace, "output") == "On its way."  # from trace.update(): merged
    span = rows[ids["span"]]
    assert (span["name"], span["kind"], span["parent_span_id"]) == (
        "retrieve", "other", ids["trace"])
    assert (span["start_time"], span["end_time"]) == (base.replace(second=1),
                                                       base.replace(second=2))
    assert content(span, "input") == {"query": "order"}
    assert content(span, "output") == ["doc-1", "doc-2"]  # from span.end(): merged
    assert span["metadata"]["index"] == "orders"
    gen = rows[ids["generation"]]
    assert (gen["name"], gen["kind"], gen["parent_span_id"], gen["model"]) == (
        "answer", "llm", ids["span"], "gpt-4o-mini")
    assert (gen["start_time"], gen["end_time"]) == (base.replace(second=2),
                                                     base.replace(second=4))
    assert content(gen, "input") == [{"role": "user", "content": "Where is my order?"}]
    # Everything below came in the generation-update (generation.end()), merged in.
    assert content(gen, "output") == {"role": "assistant", "content": "On its way."}
    assert (gen["input_tokens"], gen["cached_input_tokens"], gen["output_tokens"],
            gen["total_tokens"]) == (80, 30, 20, 100)
    assert (gen["cost"], gen["cost_source"]) == (Decimal("0.0006"), "provided")
    assert (gen["status"], gen["status_message"]) == ("ok", "slow upstream")
    assert gen["metadata"]["langfuse.level"] == "WARNING"
    assert gen["metadata"]["model_parameters.temperature"] == "0.1"
    assert gen["metadata"]["model_parameters.max_tokens"] == "256"
    event = rows[ids["event"]]
    assert (event["name"], event["parent_span_id"], event["status"],
            event["status_message"]) == ("cache-hit", ids["trace"], "error", "stale entry")
    assert event["start_time"] == event["end_time"] == base.replace(second=3)
    assert content(event, "input") == {"key": "order-7"}
    stored = {row["score_id"]: row for row in scores.read(org_id=org.id,
                                                           trace_id=ids["trace"])}
    assert set(stored) == {ids["score"], ids["label"]}
    score, label = stored[ids["score"]], stored[ids["label"]]
    assert (score["evaluator"], score["value"], score["comment"], score["span_id"],
            score["data_type"], score["source"]) == (
        "helpfulness", 0.9, "clear answer", "", "numeric", "api")
    assert (label["evaluator"], label["string_value"], label["span_id"],
            label["data_type"]) == ("tone", "friendly", ids["generation"], "categorical")


LANGFUSE5_SCRIPT = """
    import json, logging, os
    from langfuse import Langfuse, propagate_attributes

    errors = []
    class Collect(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                errors.append(record.getMessage())
    logging.getLogger("langfuse").addHandler(Collect())
    logging.getLogger("opentelemetry").addHandler(Collect())

    lf = Langfuse(public_key=os.environ["LF_PUBLIC"], secret_key=os.environ["LF_SECRET"],
                  host=os.environ["HOST"], environment="staging", release="r-5")
    assert lf.auth_check()
    with lf.start_as_current_observation(as_type="span", name="handle-request",
                                         input={"question": "Is it in stock?"}) as root:
        with propagate_attributes(user_id="user-5", session_id="sess-5", tags=["v5", "prod"],
                                  metadata={"team": "search"}, trace_name="stock-check"):
            with lf.start_as_current_observation(as_type="tool", name="lookup",
                                                 input={"sku": 7}) as tool:
                tool.update(output={"in_stock": True})
            with lf.start_as_current_observation(as_type="retriever", name="search",
                                                 level="ERROR",
                                                 status_message="index down") as retriever:
                pass
            with lf.start_as_current_observation(
                    as_type="generation", name="answer", model="gpt-4o",
                    model_parameters={"temperature": 0.3},
                    input=[{"role": "user", "content": "Is it in stock?"}]) as generation:
                generation.update(
                    output={"role": "assistant", "content": "Yes."},
                    usage_details={"input": 40, "input_cached_tokens": 60, "output": 10,
                                   "output_reasoning_tokens": 5, "total": 115},
                    cost_details={"input": 0.001, "output": 0.0002, "total": 0.0012})
            root.update(output="Yes.")
    lf.create_score(name="accuracy", value=0.8, trace_id=root.trace_id,
                    observation_id=generation.id, comment="checked", score_id=os.environ["SCORE"])
    lf.create_score(name="resolved", value=1, data_type="BOOLEAN", trace_id=root.trace_id)
    lf.flush()
    lf.shutdown()
    print(json.dumps({"errors": errors, "trace": root.trace_id, "root": root.id,
                      "tool": tool.id, "generation": generation.id,
                      "retriever": retriever.id}))
"""


def test_langfuse_5_through_otlp_nested_generation_attributes_and_scores(live_api):
    org, _ = new_org()
    drain_everything()
    score_id = str(uuid.uuid4())
    sent = run_client(sys.executable, LANGFUSE5_SCRIPT,
                      {**keys_for(org), "HOST": live_api, "SCORE": score_id})
    assert sent["errors"] == []
    drain_everything()
    rows = {row["span_id"]: row for row in stored_spans(org.id)}
    assert set(rows) == {sent["root"], sent["tool"], sent["generation"], sent["retriever"]}
    assert {row["trace_id"] for row in rows.values()} == {sent["trace"]}
    root, tool, gen = rows[sent["root"]], rows[sent["tool"]], rows[sent["generation"]]
    assert (root["name"], root["kind"], root["parent_span_id"]) == ("handle-request", "other", "")
    assert (tool["name"], tool["kind"], tool["parent_span_id"]) == ("lookup", "tool",
                                                                    sent["root"])
    assert (gen["name"], gen["kind"], gen["parent_span_id"]) == ("answer", "llm", sent["root"])
    retriever = rows[sent["retriever"]]
    assert (retriever["kind"], retriever["status"], retriever["status_message"]) == (
        "retrieval", "error", "index down")
    assert content(root, "input") == {"question": "Is it in stock?"}
    assert content(root, "output") == "Yes."
    assert content(tool, "input") == {"sku": 7}
    assert content(tool, "output") == {"in_stock": True}
    assert content(gen, "input") == [{"role": "user", "content": "Is it in stock?"}]
    assert content(gen, "output") == {"role": "assistant", "content": "Yes."}
    assert gen["model"] == "gpt-4o"
    assert gen["metadata"]["model_parameters.temperature"] == "0.3"  # as the legacy door
    # usage_details: `input` excludes the cached tokens and `output` the reasoning ones.
    assert (gen["input_tokens"], gen["cached_input_tokens"], gen["output_tokens"],
            gen["total_tokens"]) == (100, 60, 15, 115)
    assert (gen["cost"], gen["cost_source"]) == (Decimal("0.0012"), "provided")
    # propagate_attributes: on every span opened inside it (and on the root it was set on).
    for row in (root, tool, gen, retriever):
        assert (row["user_id"], row["session_id"], sorted(row["tags"])) == (
            "user-5", "sess-5", ["prod", "v5"]), row["span_id"]
        assert row["metadata"]["team"] == "search", row["metadata"]
        # The key the trace-level reads name a trace by (ingestion.query.selectors).
        assert row["metadata"]["trace.name"] == "stock-check"
        assert row["environment"] == "staging"
    stored = {row["evaluator"]: row for row in scores.read(org_id=org.id,
                                                           trace_id=sent["trace"])}
    assert set(stored) == {"accuracy", "resolved"}
    accuracy, resolved = stored["accuracy"], stored["resolved"]
    assert (accuracy["score_id"], accuracy["value"], accuracy["span_id"], accuracy["comment"],
            accuracy["data_type"], accuracy["source"]) == (
        score_id, 0.8, sent["generation"], "checked", "numeric", "api")
    assert (resolved["value"], resolved["data_type"], resolved["span_id"]) == (
        1.0, "boolean", "")



def basic_token(org) -> str:
    keys = keys_for(org)
    return base64.b64encode(f"{keys['LF_PUBLIC']}:{keys['LF_SECRET']}".encode()).decode()


def send_batch(url: str, token: str, batch: list) -> dict:
    request = urllib.request.Request(
        f"{url}/api/public/ingestion", data=json.dumps({"batch": batch}).encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 207
        return json.loads(response.read())


def test_concurrent_updates_of_one_observation_end_with_every_field(live_api):
    """Requests that merge the same observation at once: the version published last (the
    one reads take) holds what every one of them merged."""
    org, _ = new_org()
    drain_everything()
    token = basic_token(org)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    trace, gen = str(uuid.uuid4()), str(uuid.uuid4())

    def update(index: int) -> dict:
        return send_batch(live_api, token, [{
            "id": str(uuid.uuid4()), "type": "generation-update",
            "timestamp": iso(start + timedelta(seconds=index)),
            "body": {"id": gen, "traceId": trace, "output": f"output {index}",
                     "metadata": {f"k{index}": index}}}])

    created = send_batch(live_api, token, [{
        "id": str(uuid.uuid4()), "type": "generation-create", "timestamp": iso(start),
        "body": {"id": gen, "traceId": trace, "name": "g", "startTime": iso(start)}}])
    assert created["errors"] == []
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(update, range(1, 17)))
    assert all(answer["errors"] == [] for answer in answers), answers
    drain_everything()
    (row,) = stored_spans(org.id)
    assert {key: row["metadata"][key] for key in row["metadata"] if key.startswith("k")} == {
        f"k{index}": str(index) for index in range(1, 17)}
    assert content(row, "output") == "output 16"  # the latest event's


def test_a_request_waits_while_another_merges_and_publishes_the_same_observation(live_api):
    """The lock that orders publishes: held here (as a request merging the observation
    would hold it), another request for that observation waits for it, then stores."""
    org, _ = new_org()
    drain_everything()
    token = basic_token(org)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    trace, gen = str(uuid.uuid4()), str(uuid.uuid4())
    batch = [{"id": "e-1", "type": "span-create", "timestamp": iso(start),
              "body": {"id": gen, "traceId": trace, "name": "s", "startTime": iso(start)}}]
    with ThreadPoolExecutor(1) as pool:
        with locked(org.id, [("obs", gen)]):
            answer = pool.submit(send_batch, live_api, token, batch)
            time.sleep(1.5)
            assert not answer.done()
        assert answer.result(timeout=30) == {"successes": [{"id": "e-1", "status": 201}],
                                             "errors": []}
    drain_everything()
    assert [row["span_id"] for row in stored_spans(org.id)] == [gen]
