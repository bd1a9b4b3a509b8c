"""A stand-in for the external LLM provider (outside the platform, so the one thing tests fake):
a real OpenAI-compatible HTTP server on 127.0.0.1 serving /v1/chat/completions and
/v1/embeddings, with settable latency, error rate, 429 + Retry-After and malformed answers,
and a log of every call received, with the time it arrived."""

import hashlib
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORTS = range(18900, 19000)


@dataclass
class Call:
    at: float  # time.time() on arrival
    path: str
    key: str  # hash of what was asked: the attempts of one evaluation share it
    status: int
    body: dict = field(repr=False)


@dataclass
class Behaviour:
    latency_s: float = 0.0
    slow_fraction: float = 1.0  # share of calls given `latency_s`, spread evenly
    error_rate: float = 0.0  # share of calls answered 500, spread evenly (deterministic)
    fail_first: int = 0  # the first N calls of each distinct request answer 500
    too_many: int = 0  # the next N calls answer 429
    retry_after: str = "1"
    malformed: str = ""  # "not_json" | "no_choices" | "prose" | "no_score"
    score: object = 0.8


def _spread(n: int, rate: float) -> bool:
    """True for the share `rate` of calls 0, 1, 2..., evenly: 0.6 -> 3 of every 5."""
    return math.floor((n + 1) * rate + 1e-9) > math.floor(n * rate + 1e-9)


def embedding_of(text: str, size: int = 32) -> list[float]:
    """Similar texts, similar vectors: character bigrams hashed into `size` buckets."""
    vector = [0.0] * size
    for i in range(len(text) - 1):
        vector[hashlib.blake2b(text[i:i + 2].encode(), digest_size=2).digest()[0] % size] += 1
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class FakeProvider:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self._calls: list[Call] = []
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self.server = self._bind()
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _bind(self) -> ThreadingHTTPServer:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers, body, delay = provider.answer(self.path, raw)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        start = random.randrange(len(PORTS))
        for offset in range(len(PORTS)):
            port = PORTS[(start + offset) % len(PORTS)]
            try:
                server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            except OSError:
                continue
            server.daemon_threads = True
            return server
        raise RuntimeError(f"no free port in {PORTS}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def configure(self, **behaviour) -> None:
        """New behaviour, a fresh call log and fresh counters."""
        with self._lock:
            self.behaviour = Behaviour(**behaviour)
            self._calls.clear()
            self._seen.clear()

    def set(self, **changes) -> None:
        """Change some behaviour, keeping the log and counters."""
        with self._lock:
            for name, value in changes.items():
                setattr(self.behaviour, name, value)

    def calls(self, path: str = "") -> list[Call]:
        with self._lock:
            return [call for call in self._calls if path in call.path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, raw: bytes) -> tuple[int, dict, bytes, float]:
        try:
            request = json.loads(raw)
        except ValueError:
            request = {}
        asked = request.get("messages") or request.get("input") or ""
        key = hashlib.blake2b(json.dumps(asked, sort_keys=True).encode(),
                              digest_size=8).hexdigest()
        with self._lock:
            b = self.behaviour
            n = len(self._calls)
            attempt = self._seen.get(key, 0)
            self._seen[key] = attempt + 1
            delay = b.latency_s if _spread(n, b.slow_fraction) else 0.0
            headers = {"Content-Type": "application/json"}
            if b.too_many > 0:
                b.too_many -= 1
                status, body = 429, b'{"error": {"message": "rate limited"}}'
                headers["Retry-After"] = b.retry_after
            elif attempt < b.fail_first or _spread(n, b.error_rate):
                status, body = 500, b'{"error": {"message": "internal error"}}'
            else:
                status, body = 200, self._success(path, request, b)
            self._calls.append(Call(time.time(), path, key, status, request))
        return status, headers, body, delay

    @staticmethod
    def _success(path: str, request: dict, b: Behaviour) -> bytes:
        if path.endswith("/embeddings"):
            text = request.get("input", "")
            return json.dumps({"object": "list", "data": [
                {"object": "embedding", "index": 0, "embedding": embedding_of(text)}]}).encode()
        if b.malformed == "not_json":
            return b"<html>502 Bad Gateway</html>"
        if b.malformed == "no_choices":
            return b'{"id": "x", "choices": []}'
        content = {"prose": "I think it is quite good.",
                   "no_score": json.dumps({"verdict": "good"})}.get(
            b.malformed, json.dumps({"score": b.score, "reasoning": "fake judge"}))
        return json.dumps({"id": "chatcmpl-fake", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content},
             "finish_reason": "stop"}]}).encode()
