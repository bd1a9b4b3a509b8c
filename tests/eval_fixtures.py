"""Fixtures for evaluation tests (a plugin: `pytest_plugins = ["tests.eval_fixtures"]`)."""

import pytest

from tests.eval_helpers import reset_evaluation_state
from tests.fake_provider import FakeProvider

# Every duration of the evaluation path shrunk, so a test takes seconds, not minutes.
FAST_RETRY = {"max_attempts": 3, "initial_backoff_ms": 50, "max_backoff_ms": 200,
              "backoff_multiplier": 2.0, "jitter_factor": 0.2}


@pytest.fixture(scope="session")
def provider_server():
    server = FakeProvider()
    yield server
    server.close()


@pytest.fixture
def provider(provider_server, settings):
    """The fake provider, reset, with the platform pointed at it and fast, wide-open limits."""
    provider_server.configure()
    settings.LLM_JUDGE_BASE_URL = settings.EMBEDDING_BASE_URL = provider_server.url
    settings.EXTERNAL_API_RETRY = FAST_RETRY
    settings.EXTERNAL_API_TIMEOUT_MS = 10_000
    settings.LLM_PROVIDER_RATE_PER_S = settings.EMBEDDING_RATE_PER_S = 1000.0
    settings.LLM_ORG_RATE_PER_S = 1000.0
    settings.LLM_EVAL_BREAKER = {**settings.LLM_EVAL_BREAKER,
                                 "wait_duration_in_open_state_ms": 2000}
    settings.EMBEDDING_BREAKER = {**settings.EMBEDDING_BREAKER,
                                  "wait_duration_in_open_state_ms": 2000}
    reset_evaluation_state()
    yield provider_server
    reset_evaluation_state()
