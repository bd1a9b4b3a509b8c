"""Langfuse bodies (camelCase, as the v2 SDKs send them) to our span fields and score rows.
Pure functions: a bad field raises BadEvent naming it, nothing here touches a store."""

import math
from datetime import UTC, datetime
from typing import Any

import orjson

# The observation types of `<type>-create` / `-update` events, to our span kinds.
OBSERVATION_KINDS = {
    "span": "other", "generation": "llm", "event": "other", "agent": "agent", "tool": "tool",
    "chain": "chain", "retriever": "retrieval", "evaluator": "other",
    "embedding": "embedding", "guardrail": "other",
}
# A trace-create becomes the trace's root span (span id = the trace id): a container.
TRACE_KIND = "chain"

# usageDetails keys (Langfuse's, OpenAI's and Anthropic's spellings). Langfuse's `input`
# excludes the cached tokens and `output` the reasoning ones: they are added back, since our
# input_tokens / output_tokens count them (OpenAI's convention).
CACHE_READ_KEYS = ("input_cached_tokens", "cache_read_input_tokens", "input_cache_read")
CACHE_WRITE_KEYS = ("input_cache_creation", "cache_creation_input_tokens", "input_cache_write")
REASONING_KEYS = ("output_reasoning_tokens", "output_reasoning")


class BadEvent(Exception):
    """An event that cannot be stored, and why (the 207's error message)."""


def parse_time(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadEvent(f"{field}: expected an ISO 8601 time, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadEvent(f"{field}: not an ISO 8601 time: {value[:64]!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def tokens(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadEvent(f"{field}: expected a number of tokens")
    try:
        number = float(value)
    except ValueError as exc:
        raise BadEvent(f"{field}: expected a number of tokens, got {value[:32]!r}") from exc
    if not math.isfinite(number) or number < 0:
        raise BadEvent(f"{field}: expected a non-negative number of tokens")
    return int(number)


def money(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadEvent(f"{field}: expected a number of USD")
    try:
        number = float(value)
    except ValueError as exc:
        raise BadEvent(f"{field}: expected a number of USD, got {value[:32]!r}") from exc
    if not math.isfinite(number) or number < 0:
        raise BadEvent(f"{field}: expected a non-negative number of USD")
    return number


def scalar(value: Any) -> str | int | float | bool | None:
    """A metadata value as our metadata holds it: scalars kept, the rest as JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return orjson.dumps(value, default=str).decode()


def _sum(details: dict, keys: tuple[str, ...], prefix: str) -> int:
    return sum(tokens(details.get(key), f"{prefix}.{key}") or 0 for key in keys)


def usage_from_details(details: Any) -> dict:
    """Our usage from `usageDetails` (token counts by kind)."""
    if not isinstance(details, dict):
        raise BadEvent("body.usageDetails: expected an object of token counts")
    prefix = "body.usageDetails"
    cached = _sum(details, CACHE_READ_KEYS, prefix)
    written = _sum(details, CACHE_WRITE_KEYS, prefix)
    reasoning = _sum(details, REASONING_KEYS, prefix)
    usage = {}
    if "input" in details:
        usage["input_tokens"] = tokens(details["input"], f"{prefix}.input") + cached + written
    elif "prompt_tokens" in details:  # OpenAI's: counts the cached ones already
        usage["input_tokens"] = tokens(details["prompt_tokens"], f"{prefix}.prompt_tokens")
    elif "input_tokens" in details:  # Anthropic's: like Langfuse's `input`, without the cache
        usage["input_tokens"] = (tokens(details["input_tokens"], f"{prefix}.input_tokens")
                                 + cached + written)
    if "output" in details:
        usage["output_tokens"] = tokens(details["output"], f"{prefix}.output") + reasoning
    elif "completion_tokens" in details:
        usage["output_tokens"] = tokens(details["completion_tokens"],
                                        f"{prefix}.completion_tokens")
    elif "output_tokens" in details:
        usage["output_tokens"] = tokens(details["output_tokens"], f"{prefix}.output_tokens")
    if cached:
        usage["cached_input_tokens"] = cached
    if written:
        usage["cache_write_tokens"] = written
    for key in ("total", "total_tokens"):
        if key in details:
            usage["total_tokens"] = tokens(details[key], f"{prefix}.{key}")
            break
    return usage


def usage_from_legacy(usage: Any) -> tuple[dict, float | None]:
    """Our usage and a cost from `usage`: {input, output, total, unit, *Cost} or OpenAI's
    {promptTokens, completionTokens, totalTokens}. Counts in another unit than tokens
    (characters, images...) are not tokens: only their cost is kept."""
    if not isinstance(usage, dict):
        raise BadEvent("body.usage: expected an object")
    out = {}
    unit = usage.get("unit")
    if unit in (None, "TOKENS"):
        for ours, names in (("input_tokens", ("input", "promptTokens")),
                            ("output_tokens", ("output", "completionTokens")),
                            ("total_tokens", ("total", "totalTokens"))):
            for name in names:
                if usage.get(name) is not None:
                    out[ours] = tokens(usage[name], f"body.usage.{name}")
                    break
    cost = money(usage.get("totalCost"), "body.usage.totalCost")
    if cost is None and (usage.get("inputCost") is not None or usage.get("outputCost") is not None):
        cost = ((money(usage.get("inputCost"), "body.usage.inputCost") or 0)
                + (money(usage.get("outputCost"), "body.usage.outputCost") or 0))
    return out, cost


def cost_from_details(details: Any) -> float | None:
    """`costDetails.total`, else the sum of its parts (every key of it is a part of the cost,
    unlike usage keys, which overlap)."""
    if not isinstance(details, dict):
        raise BadEvent("body.costDetails: expected an object of USD amounts")
    if details.get("total") is not None:
        return money(details["total"], "body.costDetails.total")
    parts = [money(value, f"body.costDetails.{key}") for key, value in details.items()]
    parts = [part for part in parts if part is not None]
    return sum(parts) if parts else None


def check_observation_body(body: dict) -> None:
    """Refuse an event whose fields could never make a span, before it is merged."""
    for field in ("startTime", "endTime", "completionStartTime"):
        parse_time(body.get(field), f"body.{field}")
    if body.get("usageDetails") is not None:
        usage_from_details(body["usageDetails"])
    if body.get("usage") is not None:
        usage_from_legacy(body["usage"])
    if body.get("costDetails") is not None:
        cost_from_details(body["costDetails"])
    for field in ("name", "model", "statusMessage", "environment", "traceId",
                  "parentObservationId", "level", "version"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise BadEvent(f"body.{field}: expected a string")


def check_trace_body(body: dict) -> None:
    parse_time(body.get("timestamp"), "body.timestamp")
    for field in ("name", "userId", "sessionId", "environment", "release", "version"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise BadEvent(f"body.{field}: expected a string")
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, list)
                             or not all(isinstance(tag, str) for tag in tags)):
        raise BadEvent("body.tags: expected a list of strings")


def _metadata(merged_meta: dict, extra: dict) -> dict:
    """Merged metadata keys, then `extra`. Metadata that was not an object (a string, a list)
    is kept whole under the key `metadata` (it comes in `extra`)."""
    metadata = {str(key): scalar(value) for key, value in merged_meta.items()}
    metadata.update({key: scalar(value) for key, value in extra.items() if value is not None})
    return metadata


def observation_span(*, kind: str, fields: dict, metadata: dict, first_seen: datetime) -> dict:
    """Our span from an observation's merged body. `first_seen`: the time of its first event,
    the start of a span whose create (with its startTime) has not arrived yet."""
    start = parse_time(fields.get("startTime"), "body.startTime") or first_seen
    end = parse_time(fields.get("endTime"), "body.endTime")
    if kind == "event" and end is None:
        end = start  # an event is a point in time
    trace_id = fields["traceId"]
    parent = fields.get("parentObservationId") or trace_id  # top level: under the trace
    span = {
        "trace_id": trace_id, "span_id": fields["id"], "parent_span_id": parent,
        "name": fields.get("name") or "", "kind": OBSERVATION_KINDS.get(kind, "other"),
        "start_time": start.isoformat(), "end_time": end.isoformat() if end else None,
        "status": "error" if fields.get("level") == "ERROR" else "ok",
        "status_message": fields.get("statusMessage") or "",
        "model": fields.get("model") or "",
        "input": fields.get("input"), "output": fields.get("output"),
        "environment": fields.get("environment") or "default",
    }
    usage, cost = {}, None
    if fields.get("usage") is not None:
        usage, cost = usage_from_legacy(fields["usage"])
    if fields.get("usageDetails") is not None:
        usage = usage_from_details(fields["usageDetails"]) or usage
    if fields.get("costDetails") is not None:
        cost = cost_from_details(fields["costDetails"])
    if usage:
        span["usage"] = usage
    if cost is not None:
        span["cost"] = cost
    parameters = fields.get("modelParameters")
    extra = {"metadata": fields.get("metadata"),  # only there when not an object
             "langfuse.observation_type": kind, "langfuse.version": fields.get("version"),
             "langfuse.completion_start_time": fields.get("completionStartTime"),
             "langfuse.prompt_name": fields.get("promptName"),
             "langfuse.prompt_version": fields.get("promptVersion")}
    if fields.get("level") not in (None, "DEFAULT", "ERROR"):
        extra["langfuse.level"] = fields["level"]
    if isinstance(parameters, dict):
        extra.update({f"model_parameters.{key}": value for key, value in parameters.items()})
    elif parameters is not None:
        extra["model_parameters"] = parameters
    span["metadata"] = _metadata(metadata, extra)
    return span


def trace_span(*, fields: dict, metadata: dict, tags: list[str], first_seen: datetime) -> dict:
    """The trace's root span from a trace's merged body: it carries the trace-level fields
    (name, user, session, tags, metadata, input/output), which count for the whole trace."""
    start = parse_time(fields.get("timestamp"), "body.timestamp") or first_seen
    extra = {"metadata": fields.get("metadata"), "langfuse.release": fields.get("release"),
             "langfuse.version": fields.get("version")}
    if fields.get("public") is not None:
        extra["langfuse.public"] = fields["public"]
    return {
        "trace_id": fields["id"], "span_id": fields["id"], "parent_span_id": None,
        "name": fields.get("name") or "", "kind": TRACE_KIND, "start_time": start.isoformat(),
        "input": fields.get("input"), "output": fields.get("output"),
        "user_id": fields.get("userId") or "", "session_id": fields.get("sessionId") or "",
        "tags": tags, "metadata": _metadata(metadata, extra),
        "environment": fields.get("environment") or "default",
    }


SCORE_TYPES = {"NUMERIC": "numeric", "BOOLEAN": "boolean", "CATEGORICAL": "categorical",
               "TEXT": "categorical", "CORRECTION": "categorical"}


def score_fields(body: Any, fallback_id: str) -> dict:
    """A Langfuse score body as our score's fields (evaluation.services.scores.row)."""
    if not isinstance(body, dict):
        raise BadEvent("body: expected an object")
    trace_id = body.get("traceId")
    if not isinstance(trace_id, str) or not trace_id:
        raise BadEvent("body.traceId: required (scores are kept per trace here)")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadEvent("body.name: required")
    if len(name) > 100:
        raise BadEvent("body.name: at most 100 characters")
    observation = body.get("observationId") or ""
    if not isinstance(observation, str):
        raise BadEvent("body.observationId: expected a string")
    comment = body.get("comment") or ""
    if not isinstance(comment, str):
        raise BadEvent("body.comment: expected a string")
    score_id = body.get("id") or fallback_id
    if not isinstance(score_id, str) or not score_id or len(score_id) > 128:
        raise BadEvent("body.id: expected a string of at most 128 characters")
    value = body.get("value")
    declared = body.get("dataType")
    if declared is not None and declared not in SCORE_TYPES:
        raise BadEvent(f"body.dataType: one of {', '.join(SCORE_TYPES)}")
    if declared is None:
        declared = "CATEGORICAL" if isinstance(value, str) else "NUMERIC"
    data_type = SCORE_TYPES[declared]
    if data_type == "categorical":
        label = value if isinstance(value, str) else body.get("stringValue")
        if not isinstance(label, str) or not label.strip():
            raise BadEvent("body.value: a non-blank string for a categorical score")
        number, string_value = None, label.strip()
    else:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value):
            raise BadEvent("body.value: a finite number")
        if data_type == "boolean" and value not in (0, 1):
            raise BadEvent("body.value: 1 or 0 for a boolean score")
        number, string_value = float(value), ""
    return {"trace_id": trace_id, "span_id": observation, "evaluator": name.strip(),
            "score_id": score_id, "data_type": data_type, "value": number,
            "string_value": string_value, "comment": comment,
            "timestamp": parse_time(body.get("timestamp"), "body.timestamp"),
            "environment": _score_text(body, "environment", 128),
            "config_id": _score_text(body, "configId", 128),
            "metadata": _score_metadata(body.get("metadata"))}


def _score_text(body: dict, name: str, limit: int) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise BadEvent(f"body.{name}: expected a string of at most {limit} characters")
    return value


def _score_metadata(metadata: Any) -> dict[str, str]:
    """A score's metadata as the scores table keeps it: text values (JSON for the rest); a
    value that is not an object is kept whole under `metadata`."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        metadata = {"metadata": metadata}
    return {str(key): value if isinstance(value, str) else orjson.dumps(value).decode()
            for key, value in metadata.items()}
