"""A stand-in for the OpenAI API (outside the platform, the one thing tests fake): a real HTTP
server on 127.0.0.1 (a free port) answering POST /v1/chat/completions the way OpenAI does,
usage with `prompt_tokens_details.cached_tokens` included, and logging each request."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What every answer reports; the tests compare the stored spans with these.
PROMPT_TOKENS = 1200
CACHED_TOKENS = 1024
COMPLETION_TOKENS = 42
REASONING_TOKENS = 0
ANSWER = "Your invoice's extra charge is the annual renewal; reply DISPUTE to contest it."
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"


def completion_for(request: dict) -> dict:
    return {
        "id": "chatcmpl-fake-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": RESPONSE_MODEL,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": ANSWER, "refusal": None}}],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": REASONING_TOKENS,
                                          "audio_tokens": 0},
        },
    }


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"] or 0)))
                fake.requests.append({"path": self.path, "body": body})
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._answer(404, {"error": {"message": f"no route {self.path}"}})
                    return
                self._answer(200, completion_for(body))

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
