"""The SDK's settings: an argument of `init()` wins, then an LLMOPS_* environment variable,
then the default (the design document's 5 s local buffer)."""

import logging
import os
from dataclasses import dataclass

log = logging.getLogger("llmops_sdk")

DEFAULT_ENDPOINT = "http://localhost:8000"


@dataclass(frozen=True)
class Config:
    api_key: str
    endpoint: str
    service_name: str
    environment: str
    # The batch processor: the local buffer, flushed every schedule_delay_ms.
    max_queue_size: int
    max_export_batch_size: int
    schedule_delay_ms: int
    # One HTTP attempt, and the total time one batch may spend on retries before it is given
    # up (counted in stats()): long enough to ride out an API restart.
    request_timeout_s: float
    retry_budget_s: float
    # At exit: how long the last flush may take when the API does not answer.
    exit_timeout_s: float
    instrument: bool

    @property
    def traces_url(self) -> str:
        return self.endpoint.rstrip("/") + "/v1/traces"

    @property
    def scores_url(self) -> str:
        return self.endpoint.rstrip("/") + "/api/v1/scores"


def _setting(value, name: str, default, kind=str):
    if value is not None:
        return kind(value)
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        if kind is bool:
            return raw.strip().lower() not in {"0", "false", "no", "off"}
        return kind(raw)
    except ValueError:
        log.warning("llmops_sdk: %s=%r is not a %s; using %r", name, raw, kind.__name__, default)
        return default


def load(*, api_key=None, endpoint=None, service_name=None, environment=None,
         max_queue_size=None, max_export_batch_size=None, schedule_delay_ms=None,
         request_timeout_s=None, retry_budget_s=None, exit_timeout_s=None,
         instrument=None) -> Config:
    return Config(
        api_key=_setting(api_key, "LLMOPS_API_KEY", ""),
        endpoint=_setting(endpoint, "LLMOPS_ENDPOINT", DEFAULT_ENDPOINT),
        service_name=_setting(service_name, "LLMOPS_SERVICE_NAME",
                              os.environ.get("OTEL_SERVICE_NAME") or "unknown_service"),
        environment=_setting(environment, "LLMOPS_ENVIRONMENT", "default"),
        max_queue_size=_setting(max_queue_size, "LLMOPS_MAX_QUEUE_SIZE", 2048, int),
        max_export_batch_size=_setting(max_export_batch_size, "LLMOPS_MAX_EXPORT_BATCH_SIZE",
                                       512, int),
        schedule_delay_ms=_setting(schedule_delay_ms, "LLMOPS_SCHEDULE_DELAY_MS", 5000, int),
        request_timeout_s=_setting(request_timeout_s, "LLMOPS_REQUEST_TIMEOUT_S", 10.0, float),
        retry_budget_s=_setting(retry_budget_s, "LLMOPS_RETRY_BUDGET_S", 120.0, float),
        exit_timeout_s=_setting(exit_timeout_s, "LLMOPS_EXIT_TIMEOUT_S", 10.0, float),
        instrument=_setting(instrument, "LLMOPS_INSTRUMENT", True, bool),
    )
