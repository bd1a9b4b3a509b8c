"""One call to an external model API (judge, embeddings) under its breaker, rate limits,
timeout and the `external_api` retry policy."""

import email.utils
import logging
import time
from dataclasses import dataclass

import orjson
import urllib3
from django.conf import settings

from evaluation.services import ratelimit
from evaluation.services.breakers import EMBEDDING_API, LLM_EVALUATION, get_breaker
from llmops.retry import RetryPolicy

logger = logging.getLogger(__name__)

# Thread-safe; urllib3's own retries are off, the policy below decides.
_http = urllib3.PoolManager(maxsize=32, retries=False)


class ProviderError(Exception):
    """No answer from the provider. `retryable`: another attempt (or a later replay) may pass."""

    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


class MalformedAnswer(Exception):
    """The provider answered, but not with what was asked for; never retried."""


@dataclass(frozen=True)
class Api:
    name: str  # the rate limits' name
    breaker: str
    url_setting: str
    key_setting: str

    def url(self, path: str) -> str:
        return getattr(settings, self.url_setting).rstrip("/") + path


JUDGE = Api("llm_judge", LLM_EVALUATION, "LLM_JUDGE_BASE_URL", "LLM_JUDGE_API_KEY")
EMBEDDINGS = Api("embedding", EMBEDDING_API, "EMBEDDING_BASE_URL", "EMBEDDING_API_KEY")


def retry_after_seconds(value: str | None) -> float:
    """Retry-After as delta-seconds or an HTTP date; 0 when absent or unreadable."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return 0.0


def post(api: Api, path: str, payload: dict, *, org_id: int) -> dict:
    """POST JSON and return the JSON answer. Raises BreakerOpen (refused, nothing sent),
    RateLimitWaitTooLong, ProviderError (after the policy's attempts) or MalformedAnswer."""
    policy = RetryPolicy.from_settings(settings.EXTERNAL_API_RETRY)
    return policy.call(
        lambda: _attempt(api, path, payload, org_id),
        retryable=lambda exc: isinstance(exc, ProviderError) and exc.retryable,
        name=f"{api.name} {path}",
    )


def _attempt(api: Api, path: str, payload: dict, org_id: int) -> dict:
    breaker = get_breaker(api.breaker)
    ticket = breaker.permit()
    try:
        ratelimit.take(api=api.name, org_id=org_id)
    except BaseException:
        breaker.release(ticket)
        raise
    headers = {"Content-Type": "application/json"}
    key = getattr(settings, api.key_setting)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    started = time.monotonic()
    try:
        response = _http.request(
            "POST", api.url(path), body=orjson.dumps(payload), headers=headers,
            timeout=urllib3.Timeout(total=settings.EXTERNAL_API_TIMEOUT_MS / 1000))
    except urllib3.exceptions.HTTPError as exc:  # refused, reset, timed out
        breaker.record(ticket, failed=True, seconds=time.monotonic() - started)
        raise ProviderError(f"{api.name} unreachable: {exc}", retryable=True) from exc
    seconds = time.monotonic() - started
    status = response.status
    if status == 429:
        # Flow control, not an outage: no failure for the breaker, and every worker waits.
        breaker.record(ticket, failed=False, seconds=seconds)
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if wait:
            ratelimit.block(api=api.name, seconds=wait)
        raise ProviderError(f"{api.name} answered 429 (Retry-After {wait:g}s)", retryable=True)
    breaker.record(ticket, failed=status >= 500, seconds=seconds)
    if status >= 400:
        detail = response.data[:300].decode(errors="replace")
        # 5xx and 408 are the provider's trouble; another 4xx is our request's and stays.
        raise ProviderError(f"{api.name} answered HTTP {status}: {detail}",
                            retryable=status >= 500 or status == 408)
    try:
        return orjson.loads(response.data)
    except orjson.JSONDecodeError as exc:
        raise MalformedAnswer(
            f"{api.name} answer is not JSON: {response.data[:100]!r}") from exc
