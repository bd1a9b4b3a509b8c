"""Our SDK end to end: an app instrumented with `llmops_sdk` sends to the real API (gunicorn on
a free port, against this run's test stores) through its OTLP door, into Kafka and, drained,
into ClickHouse. What the app did is what is stored (tree, names, kinds, content, trace
fields, the OpenAI call's model and usage); a trace sent while the API is stopped for 10 s
arrives whole, each span once, after it is back; a full buffer drops and counts."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import llmops_sdk
import pytest
from django.conf import settings

from tests.ingest_helpers import client_for, count_rows, drain_everything, new_org, stored_spans
from tests.sdk_fakes import MODEL, FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)  # the API process must see the org


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveApi:
    """The API under gunicorn, as `make run` starts it, which a test can kill and start again
    on the same port."""

    def __init__(self, env: dict, log: Path) -> None:
        self.env = env
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [str(Path(settings.BASE_DIR) / ".venv" / "bin" / "gunicorn"),
                 "llmops.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
                 "--workers", "1", "--threads", "4", "--timeout", "60"],
                cwd=settings.BASE_DIR, env=self.env, start_new_session=True,
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the API exited: {self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{self.url}/health/live", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the API did not answer in 60 s: {self.log.read_text()[-3000:]}")

    def pause(self) -> None:
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def live_api(subprocess_env, tmp_path):
    api = LiveApi(subprocess_env, tmp_path / "api.log")
    api.start()
    yield api
    llmops_sdk.shutdown(timeout_s=2)
    api.kill()


@pytest.fixture
def fake_openai():
    server = FakeOpenAI()
    yield server
    server.close()


def stored_by_name(org_id: int) -> dict[str, dict]:
    rows = stored_spans(org_id)
    by_name = {row["name"]: row for row in rows}
    assert len(by_name) == len(rows), [row["name"] for row in rows]
    return by_name


def content(row: dict, which: str):
    text = row[f"{which}_content"]
    return json.loads(text) if row[f"{which}_format"] == "json" else text


def grown(before: dict) -> dict:
    return {name: value - before[name] for name, value in llmops_sdk.stats().items()
            if value != before[name]}


def test_an_instrumented_app_is_stored_as_it_ran(live_api, fake_openai):
    import openai

    org, key = new_org()
    openai_client = openai.OpenAI(api_key="sk-fake", base_url=fake_openai.base_url,
                                  max_retries=0)
    before = llmops_sdk.stats()
    assert llmops_sdk.init(api_key=key, endpoint=live_api.url, schedule_delay_ms=300,
                           service_name="support-bot", environment="staging")
    assert "OpenAIInstrumentor" in llmops_sdk.instrumented()
    ids = {}

    @llmops_sdk.observe(name="retrieve", kind="retrieval")
    def retrieve(question: str) -> list[str]:
        return [f"doc about {question}"]

    @llmops_sdk.observe(name="stream answer")
    def stream_answer(docs: list[str]):
        for doc in docs:
            reply = openai_client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": doc}])
            yield reply.choices[0].message.content

    @llmops_sdk.observe(name="summarize", kind="tool")
    async def summarize(parts: list[str]) -> str:
        await asyncio.sleep(0)
        return " / ".join(parts)

    @llmops_sdk.observe(name="handle question", kind="agent")
    def handle(question: str) -> str:
        ids["trace"], ids["root"] = llmops_sdk.current_ids()
        llmops_sdk.set_trace(user_id="user-42", session_id="session-9", tags=["beta", "eu"],
                             metadata={"plan": "pro"})
        parts = list(stream_answer(retrieve(question)))
        return asyncio.run(summarize(parts))

    assert handle("refunds") == "echo: doc about refunds"
    score_id = llmops_sdk.score("helpful", 0.75, trace_id=ids["trace"], comment="fine")
    assert score_id
    assert llmops_sdk.flush()
    assert grown(before) == {"spans_ended": 5, "spans_exported": 5,
                             "batches_exported": grown(before)["batches_exported"],
                             "scores_sent": 1}
    drain_everything()

    spans = stored_by_name(org.id)
    assert set(spans) == {"handle question", "retrieve", "stream answer", "summarize",
                          "ChatCompletion"}
    root = spans["handle question"]
    assert (root["trace_id"], root["span_id"], root["parent_span_id"]) == (
        ids["trace"], ids["root"], "")
    assert {row["trace_id"] for row in spans.values()} == {ids["trace"]}
    for name in ("retrieve", "stream answer", "summarize"):
        assert spans[name]["parent_span_id"] == root["span_id"], name
    llm = spans["ChatCompletion"]
    assert llm["parent_span_id"] == spans["stream answer"]["span_id"]
    assert {name: row["kind"] for name, row in spans.items()} == {
        "handle question": "agent", "retrieve": "retrieval", "stream answer": "chain",
        "summarize": "tool", "ChatCompletion": "llm"}
    assert content(root, "input") == {"question": "refunds"}
    assert content(root, "output") == "echo: doc about refunds"
    assert content(spans["retrieve"], "output") == ["doc about refunds"]
    assert content(spans["stream answer"], "output") == ["echo: doc about refunds"]
    assert content(spans["summarize"], "input") == {"parts": ["echo: doc about refunds"]}
    assert "doc about refunds" in json.dumps(content(llm, "input"))
    assert "echo: doc about refunds" in json.dumps(content(llm, "output"))
    for name, row in spans.items():
        assert (row["user_id"], row["session_id"]) == ("user-42", "session-9"), name
        assert sorted(row["tags"]) == ["beta", "eu"], name
        assert row["metadata"].get("plan") == "pro", name
        assert row["environment"] == "staging", name
        assert row["status"] == "ok", name
    assert (llm["model"], llm["provider"]) == (MODEL, "openai")
    assert (llm["input_tokens"], llm["output_tokens"], llm["cached_input_tokens"],
            llm["total_tokens"]) == (42, 7, 10, 49)
    scores = client_for(key).get("/api/v1/scores", {"trace_id": ids["trace"]}).json()["scores"]
    assert [(s["id"], s["evaluator"], s["value"], s["comment"]) for s in scores] == [
        (score_id, "helpful", 0.75, "fine")]


def run_app(spans_wanted: int) -> tuple[list[str], str]:
    """A small app: a root with children and grandchildren; returns the span ids it made."""
    made: list[str] = []

    @llmops_sdk.observe(name="child")
    def child(i: int) -> int:
        made.append(llmops_sdk.current_ids()[1])
        with llmops_sdk.span("grandchild", input=i):
            made.append(llmops_sdk.current_ids()[1])
        return i

    with llmops_sdk.span("root"):
        trace_id, root_id = llmops_sdk.current_ids()
        made.append(root_id)
        assert [child(i) for i in range((spans_wanted - 1) // 2)] == list(
            range((spans_wanted - 1) // 2))
    return made, trace_id


@pytest.mark.parametrize("stop", ["killed", "paused"])
def test_a_trace_sent_while_the_api_is_stopped_for_10_s_arrives_whole_once_it_is_back(
        live_api, stop):
    """Killed: connections are refused, the SDK retries with backoff. Paused (SIGSTOP): the
    request hangs until its 10 s timeout, and the paused server may still store it when it
    resumes, so the same spans can arrive twice: stored once all the same (FINAL)."""
    org, key = new_org()
    before = llmops_sdk.stats()
    assert llmops_sdk.init(api_key=key, endpoint=live_api.url, schedule_delay_ms=500,
                           instrument=False)
    if stop == "killed":
        live_api.kill()
    else:
        live_api.pause()
    stopped = time.monotonic()
    made, trace_id = run_app(41)  # nothing raises into the app meanwhile
    assert len(made) == len(set(made)) == 41
    time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
    if stop == "killed":
        assert llmops_sdk.stats()["retries"] > before["retries"], "no attempt while down"
        live_api.start()
    else:
        live_api.resume()
    assert llmops_sdk.flush()
    got = grown(before)
    assert got.get("batches_dropped", 0) == 0 and got.get("spans_dropped_queue_full", 0) == 0
    assert got["spans_exported"] == 41
    drain_everything()
    stored = stored_spans(org.id)  # FINAL: the newest version of each span
    assert sorted(row["span_id"] for row in stored) == sorted(made)
    assert {row["trace_id"] for row in stored} == {trace_id}
    if stop == "killed":
        assert count_rows(org.id) == 41  # sent once: nothing reached the dead API


def test_a_full_buffer_while_the_api_is_stopped_drops_the_oldest_and_counts_them(live_api):
    org, key = new_org()
    before = llmops_sdk.stats()
    assert llmops_sdk.init(api_key=key, endpoint=live_api.url, schedule_delay_ms=60_000,
                           max_queue_size=20, max_export_batch_size=10, instrument=False)
    live_api.kill()
    first = []
    for i in range(10):  # one full batch: the processor takes it and retries it
        with llmops_sdk.span(f"first {i}"):
            first.append(llmops_sdk.current_ids()[1])
    deadline = time.monotonic() + 10
    while llmops_sdk.stats()["retries"] == before["retries"] and time.monotonic() < deadline:
        time.sleep(0.05)
    later = []
    for i in range(35):  # the buffer holds 20: the 15 oldest of these make room
        with llmops_sdk.span(f"later {i}"):
            later.append(llmops_sdk.current_ids()[1])
    assert grown(before)["spans_dropped_queue_full"] == 15
    live_api.start()
    assert llmops_sdk.flush()
    drain_everything()
    assert sorted(row["span_id"] for row in stored_spans(org.id)) == sorted(first + later[15:])
    got = grown(before)
    assert (got["spans_exported"], got["spans_dropped_queue_full"]) == (30, 15)
    assert got.get("batches_dropped", 0) == 0


def test_a_429_from_the_api_waits_its_retry_after_and_keeps_the_batch(live_api):
    """The org's rate limit (10 spans per 3 s window here) refuses the second batch with 429
    and the window's Retry-After; the SDK waits it out and sends the same batch again."""
    live_api.kill()
    live_api.env = {**live_api.env, "RATE_LIMIT_WINDOW_S": "3"}
    live_api.start()
    org, key = new_org(ingest_rate_limit=10)
    before = llmops_sdk.stats()
    assert llmops_sdk.init(api_key=key, endpoint=live_api.url, schedule_delay_ms=60_000,
                           instrument=False)
    while not 0.1 < time.time() % 3 < 0.6:  # both batches inside one window
        time.sleep(0.02)
    first, _ = run_app(7)
    assert llmops_sdk.flush()
    second, _ = run_app(7)
    started = time.monotonic()
    assert llmops_sdk.flush()
    waited = time.monotonic() - started
    got = grown(before)
    assert got["retries"] >= 1 and 2 <= waited < 10, (got, waited)
    assert (got["spans_exported"], got.get("batches_dropped", 0)) == (14, 0)
    drain_everything()
    assert sorted(row["span_id"] for row in stored_spans(org.id)) == sorted(first + second)
