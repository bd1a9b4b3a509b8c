"""Built-in scorers (regex, json_valid, contains, length): local, cheap, deterministic."""

import re
from dataclasses import dataclass

import orjson

from evaluation.models import EvaluatorConfig, EvaluatorType


@dataclass(frozen=True)
class Outcome:
    """What one evaluation gave: a value (or none) and a status with its reason."""

    status: str  # ok | skipped | failed | fallback
    data_type: str = ""  # numeric | categorical | boolean
    value: float | None = None
    string_value: str = ""
    comment: str = ""
    model: str = ""


def boolean(passed: bool, comment: str = "") -> Outcome:
    return Outcome("ok", "boolean", float(passed), comment=comment)


def numeric(value: float, comment: str = "", *, status: str = "ok", model: str = "") -> Outcome:
    return Outcome(status, "numeric", float(value), comment=comment, model=model)


def regex(text: str, pattern: str) -> Outcome:
    match = re.search(pattern, text)
    return boolean(match is not None, f"matched {match.group(0)[:200]!r}" if match else "no match")


def contains(text: str, needle: str) -> Outcome:
    return boolean(needle in text)


def json_valid(text: str) -> Outcome:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return boolean(False, str(exc)[:500])
    return boolean(True)


def length(text: str, min_length: int | None, max_length: int | None) -> Outcome:
    size = len(text)
    if min_length is not None and size < min_length:
        return numeric(size, f"below the minimum of {min_length}")
    if max_length is not None and size > max_length:
        return numeric(size, f"above the maximum of {max_length}")
    return numeric(size)


def score(config: EvaluatorConfig, text: str) -> Outcome:
    """Run the built-in scorer of `config` on `text`."""
    kind = config.evaluator_type
    if kind == EvaluatorType.REGEX:
        return regex(text, config.pattern)
    if kind == EvaluatorType.CONTAINS:
        return contains(text, config.pattern)
    if kind == EvaluatorType.JSON_VALID:
        return json_valid(text)
    if kind == EvaluatorType.LENGTH:
        return length(text, config.min_length, config.max_length)
    raise ValueError(f"{kind} is not a built-in scorer")
