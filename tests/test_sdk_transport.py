"""Our SDK (sdk/, `llmops_sdk`) against a loopback receiver standing in for our API's OTLP door
(the transport only: status codes, Retry-After, slowness): what it sends (OTLP protobuf,
gzip, Bearer key, our resource, the mapping table's attributes), when (every 5 s), and what
it does when the API refuses, asks to wait, or is gone: waits as told, keeps the batch,
drops only past its bounds and counts it, and never raises into the app."""

import asyncio
import gzip
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import llmops_sdk
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.sdk_fakes import MODEL, FakeOpenAI


def any_value(value):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def attributes(key_values) -> dict:
    return {kv.key: any_value(kv.value) for kv in key_values}


@dataclass
class Received:
    at: float
    path: str
    headers: dict
    resource: dict = field(default_factory=dict)
    spans: list[dict] = field(default_factory=list)


class Receiver:
    """A real HTTP server on 127.0.0.1 that decodes what the SDK sends and answers as told:
    `answers` are (status, headers) used one per request, then 200; `hold()` keeps requests
    waiting until `release()`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: list[tuple[int, dict]] = []
        self.released = threading.Event()
        self.released.set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers = receiver.record(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                receiver.released.wait(30)
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, path: str, headers: dict, raw: bytes) -> tuple[int, dict]:
        body = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
        request = ExportTraceServiceRequest.FromString(body)
        entry = Received(time.monotonic(), path, headers)
        for resource_spans in request.resource_spans:
            entry.resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    entry.spans.append({
                        "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(), "name": span.name,
                        "status": span.status.code, "status_message": span.status.message,
                        "attributes": attributes(span.attributes),
                        "events": [event.name for event in span.events]})
        with self._lock:
            self.received.append(entry)
            return self.answers.pop(0) if self.answers else (200, {})

    def hold(self) -> None:
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def spans(self) -> list[dict]:
        return [span for entry in self.received for span in entry.spans]

    def by_name(self) -> dict[str, dict]:
        return {span["name"]: span for span in self.spans()}

    def wait_for(self, requests: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < requests and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def sdk(receiver):
    """init() against the receiver, with a short flush delay unless a test says otherwise; the
    counters are read as differences (they count since the process started)."""
    def start(**options):
        options = {"api_key": "sk-test-key", "endpoint": receiver.url, "instrument": False,
                   "service_name": "sdk-tests", "environment": "staging",
                   "schedule_delay_ms": 200, **options}
        assert llmops_sdk.init(**options)
        return llmops_sdk.stats()

    yield start
    receiver.release()
    llmops_sdk.shutdown(timeout_s=2)


def grown(before: dict) -> dict:
    return {name: value - before[name] for name, value in llmops_sdk.stats().items()
            if value != before[name]}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@llmops_sdk.observe(kind="agent")
def plan(question: str, *, depth: int = 2) -> dict:
    return {"steps": [look_up(question, k) for k in range(depth)]}


@llmops_sdk.observe(name="look up", kind="tool")
def look_up(question: str, k: int) -> str:
    return f"{question}#{k}"


def test_spans_go_as_gzip_protobuf_to_v1_traces_with_the_key_and_our_resource(receiver, sdk):
    sdk()
    assert plan("why?") == {"steps": ["why?#0", "why?#1"]}
    assert llmops_sdk.flush()
    [request] = receiver.received
    assert request.path == "/v1/traces"
    assert request.headers["content-type"] == "application/x-protobuf"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["authorization"] == "Bearer sk-test-key"
    assert request.resource["service.name"] == "sdk-tests"
    assert request.resource["deployment.environment.name"] == "staging"
    assert request.resource["telemetry.sdk.name"] == "llmops-sdk"
    assert request.resource["telemetry.sdk.version"] == llmops_sdk.__version__
    spans = receiver.spans()
    root = next(span for span in spans if span["name"] == "plan")
    tools = [span for span in spans if span["name"] == "look up"]
    assert len(tools) == 2 and len(spans) == 3
    assert root["parent_span_id"] == ""
    assert {tool["parent_span_id"] for tool in tools} == {root["span_id"]}
    assert {span["trace_id"] for span in spans} == {root["trace_id"]}
    assert root["attributes"]["openinference.span.kind"] == "AGENT"
    assert json.loads(root["attributes"]["input.value"]) == {"question": "why?", "depth": 2}
    assert root["attributes"]["input.mime_type"] == "application/json"
    assert json.loads(root["attributes"]["output.value"]) == {"steps": ["why?#0", "why?#1"]}
    assert tools[0]["attributes"]["openinference.span.kind"] == "TOOL"
    assert {tool["attributes"]["output.value"] for tool in tools} == {"why?#0", "why?#1"}
    assert tools[0]["attributes"]["output.mime_type"] == "text/plain"


def test_the_buffer_is_sent_every_5_seconds_by_default(receiver, sdk):
    sdk(schedule_delay_ms=None)
    with llmops_sdk.span("one"):
        pass
    ended = time.monotonic()
    receiver.wait_for(1, timeout_s=8)
    assert receiver.received, "nothing sent within 8 s"
    waited = receiver.received[0].at - ended
    assert 3.5 < waited < 6.5, f"sent after {waited:.1f}s, not at the 5 s flush"


def test_generators_async_functions_and_errors_keep_their_spans(receiver, sdk):
    sdk()

    @llmops_sdk.observe()
    def tokens(n):
        for i in range(n):
            with llmops_sdk.span("inside the generator"):
                yield f"t{i}"

    @llmops_sdk.observe(kind="llm")
    async def ask(prompt):
        await asyncio.sleep(0)
        return {"answer": prompt.upper()}

    @llmops_sdk.observe()
    async def stream(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    class Broken(ValueError):
        pass

    @llmops_sdk.observe()
    def fails():
        raise Broken("the app's own error")

    async def collect():
        return [item async for item in stream(3)]

    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no repr")

    @llmops_sdk.observe()
    def odd_input(thing):
        return "handled"

    with llmops_sdk.span("root", input={"q": 1}) as root:
        assert list(tokens(2)) == ["t0", "t1"]
        assert asyncio.run(ask("hi")) == {"answer": "HI"}
        assert asyncio.run(collect()) == [0, 1, 2]
        with pytest.raises(Broken, match="the app's own error"):
            fails()
        assert odd_input(Unprintable()) == "handled"
        root.set_output("done")
    assert llmops_sdk.flush()
    spans = receiver.spans()
    named = receiver.by_name()
    root_id = named["root"]["span_id"]
    assert json.loads(named["root"]["attributes"]["input.value"]) == {"q": 1}
    assert named["root"]["attributes"]["output.value"] == "done"
    generator = named["test_generators_async_functions_and_errors_keep_their_spans.<locals>"
                      ".tokens"]
    assert json.loads(generator["attributes"]["output.value"]) == ["t0", "t1"]
    inside = [span for span in spans if span["name"] == "inside the generator"]
    assert len(inside) == 2
    assert {span["parent_span_id"] for span in inside} == {generator["span_id"]}
    asked = next(span for span in spans if span["name"].endswith(".ask"))
    assert asked["attributes"]["openinference.span.kind"] == "LLM"
    assert json.loads(asked["attributes"]["output.value"]) == {"answer": "HI"}
    streamed = next(span for span in spans if span["name"].endswith(".stream"))
    assert json.loads(streamed["attributes"]["output.value"]) == [0, 1, 2]
    failed = next(span for span in spans if span["name"].endswith(".fails"))
    assert failed["status"] == 2 and "the app's own error" in failed["status_message"]
    assert failed["events"] == ["exception"]
    assert "output.value" not in failed["attributes"]
    odd = next(span for span in spans if span["name"].endswith(".odd_input"))
    assert odd["attributes"]["input.value"] == "<dict that cannot be shown>"
    assert odd["attributes"]["output.value"] == "handled"
    for span in (generator, asked, streamed, failed, odd):
        assert span["parent_span_id"] == root_id, span["name"]
    assert len(spans) == 8


def test_set_trace_marks_the_current_span_and_every_later_span_of_its_trace(receiver, sdk):
    sdk()
    with llmops_sdk.span("request"):
        with llmops_sdk.span("before"):
            pass
        llmops_sdk.set_trace(user_id="u-7", session_id="s-3", tags=["beta", "eu"],
                             metadata={"plan": "pro", "seats": 3})
        with llmops_sdk.span("below"), llmops_sdk.span("deeper"):
            pass
        # Another thread, same trace (the context is handed over as apps do with executors).
        from opentelemetry import context
        ctx = context.get_current()

        def worker():
            token = context.attach(ctx)
            with llmops_sdk.span("in a thread"):
                pass
            context.detach(token)
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    with llmops_sdk.span("another trace"):
        pass
    assert llmops_sdk.flush()
    named = receiver.by_name()
    for name in ("request", "below", "deeper", "in a thread"):
        got = named[name]["attributes"]
        assert got["user.id"] == "u-7", name
        assert got["session.id"] == "s-3", name
        assert got["tag.tags"] == ["beta", "eu"], name
        assert json.loads(got["metadata"]) == {"plan": "pro", "seats": 3}, name
    assert "user.id" not in named["before"]["attributes"]  # ended before the call
    assert "user.id" not in named["another trace"]["attributes"]


def test_429_and_503_wait_their_retry_after_even_past_10_s_and_keep_the_batch(receiver, sdk):
    """The stock exporter gives a batch up when Retry-After runs past its 10 s deadline; ours
    waits and sends the same spans again."""
    before = sdk()
    receiver.answers = [(503, {"Retry-After": "11"}), (429, {"Retry-After": "1"})]
    with llmops_sdk.span("kept"):
        pass
    started = time.monotonic()
    assert llmops_sdk.flush()
    first, second, third = receiver.received
    assert 10.5 < second.at - first.at < 13, second.at - first.at
    assert 0.8 < third.at - second.at < 3, third.at - second.at
    assert first.spans == second.spans == third.spans
    assert [span["name"] for span in third.spans] == ["kept"]
    assert time.monotonic() - started < 20
    assert grown(before) == {"spans_ended": 1, "retries": 2, "spans_exported": 1,
                             "batches_exported": 1}


def test_a_batch_is_given_up_past_the_retry_budget_or_when_refused_and_counted(receiver, sdk):
    before = sdk(retry_budget_s=3)
    receiver.answers = [(503, {"Retry-After": "1"})] * 10
    for name in ("a", "b"):
        with llmops_sdk.span(name):
            pass
    started = time.monotonic()
    assert llmops_sdk.flush()
    assert 1.5 < time.monotonic() - started < 5
    assert 2 <= len(receiver.received) <= 4
    assert grown(before) == {"spans_ended": 2, "retries": len(receiver.received) - 1,
                             "batches_dropped": 1, "spans_dropped_after_retries": 2}
    # A refusal (400) is not retried: the API will not take that batch.
    receiver.received.clear()
    receiver.answers = [(400, {})]
    before = llmops_sdk.stats()
    with llmops_sdk.span("refused"):
        pass
    assert llmops_sdk.flush()
    assert len(receiver.received) == 1
    assert grown(before) == {"spans_ended": 1, "batches_dropped": 1,
                             "spans_dropped_after_retries": 1}


def test_a_full_buffer_drops_new_spans_and_counts_them(receiver, sdk):
    before = sdk(max_queue_size=10, max_export_batch_size=10, schedule_delay_ms=60_000)
    receiver.hold()
    for i in range(10):  # a full batch wakes the processor: it sends and waits on us
        with llmops_sdk.span(f"first {i}"):
            pass
    receiver.wait_for(1, timeout_s=5)
    assert len(receiver.received) == 1
    for i in range(15):  # the buffer holds 10: the 5 oldest make room for the newest
        with llmops_sdk.span(f"second {i}"):
            pass
    receiver.release()
    assert llmops_sdk.flush()
    names = [span["name"] for span in receiver.spans()]
    assert len(names) == len(set(names)) == 20
    assert set(names) == ({f"first {i}" for i in range(10)}
                          | {f"second {i}" for i in range(5, 15)})
    assert grown(before) == {"spans_ended": 25, "spans_dropped_queue_full": 5,
                             "spans_exported": 20, "batches_exported": 2}


def test_nothing_raises_into_the_app_when_the_endpoint_is_unreachable(sdk):
    before = sdk(endpoint=f"http://127.0.0.1:{closed_port()}", retry_budget_s=1,
                 request_timeout_s=1)

    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no repr")

    @llmops_sdk.observe()
    def handles(thing):
        return "handled"

    assert plan("q", depth=1) == {"steps": ["q#0"]}
    assert handles(Unprintable()) == "handled"  # its input cannot be captured: still runs
    with llmops_sdk.span("block") as block:
        block.set_output(Unprintable()).set_usage(input_tokens="many").set_model("m")
        llmops_sdk.set_trace(user_id="u", metadata={"x": Unprintable()})
        assert llmops_sdk.score("quality", 0.5) is None
    assert llmops_sdk.flush() in (True, False)
    llmops_sdk.shutdown(timeout_s=2)
    assert grown(before)["batches_dropped"] >= 1
    assert grown(before)["scores_failed"] == 1
    # Calls before init() or after shutdown() are harmless too.
    assert plan("again", depth=1) == {"steps": ["again#0"]}
    with llmops_sdk.span("no sdk"):
        llmops_sdk.set_trace(user_id="u")
    assert llmops_sdk.flush() is True
    assert llmops_sdk.init(api_key="", endpoint="http://127.0.0.1:1") is False


def test_the_buffer_is_flushed_at_exit(receiver, tmp_path):
    """A script that ends right after its last span (well within the 5 s flush delay) still
    sends it: the SDK flushes at exit."""
    name = f"last-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(f"""
        import llmops_sdk
        llmops_sdk.init(api_key="k", endpoint={receiver.url!r}, instrument=False)
        with llmops_sdk.span({name!r}):
            pass
    """))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 4.5
    assert [span["name"] for span in receiver.spans()] == [name]


@pytest.fixture
def fake_openai():
    server = FakeOpenAI()
    yield server
    server.close()


def test_the_openai_instrumentor_is_on_unless_turned_off(receiver, sdk, fake_openai):
    import openai

    client = openai.OpenAI(api_key="sk-fake", base_url=fake_openai.base_url, max_retries=0)
    sdk(instrument=True)
    assert llmops_sdk.instrumented() == ["OpenAIInstrumentor"]

    @llmops_sdk.observe()
    def chat(question):
        llmops_sdk.set_trace(user_id="u-1", session_id="s-1")
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
        return reply.choices[0].message.content

    assert chat("hello") == "echo: hello"
    assert llmops_sdk.flush()
    spans = receiver.spans()
    assert len(spans) == 2
    outer = next(span for span in spans if span["name"].endswith(".chat"))
    [llm] = [span for span in spans if span is not outer]
    assert llm["parent_span_id"] == outer["span_id"]
    got = llm["attributes"]
    assert got["openinference.span.kind"] == "LLM"
    assert got["llm.model_name"] == MODEL
    assert got["llm.system"] == "openai"
    assert (got["llm.token_count.prompt"], got["llm.token_count.completion"],
            got["llm.token_count.total"],
            got["llm.token_count.prompt_details.cache_read"]) == (42, 7, 49, 10)
    assert (got["user.id"], got["session.id"]) == ("u-1", "s-1")

    llmops_sdk.shutdown(timeout_s=2)
    receiver.received.clear()
    sdk(instrument=False)
    assert llmops_sdk.instrumented() == []
    assert chat("again") == "echo: again"
    assert llmops_sdk.flush()
    assert [span["name"] for span in receiver.spans()] == [outer["name"]]


def test_init_reads_the_environment_and_survives_bad_values(receiver, monkeypatch, caplog):
    monkeypatch.setenv("LLMOPS_API_KEY", "sk-from-env")
    monkeypatch.setenv("LLMOPS_ENDPOINT", receiver.url + "/")
    monkeypatch.setenv("LLMOPS_SERVICE_NAME", "env-service")
    monkeypatch.setenv("LLMOPS_SCHEDULE_DELAY_MS", "100")
    monkeypatch.setenv("LLMOPS_MAX_QUEUE_SIZE", "lots")  # not a number: the default, a warning
    monkeypatch.setenv("LLMOPS_INSTRUMENT", "false")
    try:
        assert llmops_sdk.init()
        assert llmops_sdk.instrumented() == []
        with llmops_sdk.span("from env"):
            pass
        receiver.wait_for(1, timeout_s=3)  # the 100 ms delay, not a flush
        [request] = receiver.received
        assert request.path == "/v1/traces"
        assert request.headers["authorization"] == "Bearer sk-from-env"
        assert request.resource["service.name"] == "env-service"
        assert "LLMOPS_MAX_QUEUE_SIZE='lots'" in caplog.text
    finally:
        llmops_sdk.shutdown(timeout_s=2)
