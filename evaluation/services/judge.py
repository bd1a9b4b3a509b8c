"""The LLM judge: an OpenAI-compatible chat completion asked for a JSON score."""

import math
import re

import orjson
from django.conf import settings

from evaluation.services import provider
from evaluation.services.provider import MalformedAnswer
from evaluation.services.scorers import Outcome

DEFAULT_TEMPLATE = """Rate how well the answer responds to the request, from 0 (wrong or \
useless) to 1 (correct, complete and helpful).

Request:
{{input}}

Answer:
{{output}}"""
SYSTEM_PROMPT = (
    "You are a strict evaluator. Reply with one JSON object and nothing else: "
    '{"score": <a number, true/false, or a short label>, "reasoning": "<one or two sentences>"}'
)
_VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def render(template: str, variables: dict[str, str]) -> str:
    """{{name}} -> its value; an unknown name stays as written."""
    return _VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), template)


def judge(*, prompt: str, model: str, org_id: int) -> Outcome:
    """Ask the judge; a readable score, or MalformedAnswer / the provider's exceptions."""
    answer = provider.post(provider.JUDGE, "/chat/completions", {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                     {"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": settings.LLM_JUDGE_MAX_TOKENS,
        "response_format": {"type": "json_object"},
    }, org_id=org_id)
    return parse_verdict(answer, model=model)


def parse_verdict(answer: dict, *, model: str) -> Outcome:
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise MalformedAnswer("no choices[0].message.content in the judge's answer") from None
    if not isinstance(content, str):
        raise MalformedAnswer("the judge's message content is not text")
    fenced = _FENCE.match(content)  # models often wrap JSON in a code fence
    try:
        verdict = orjson.loads(fenced.group(1) if fenced else content)
    except orjson.JSONDecodeError:
        raise MalformedAnswer(f"the judge's answer is not JSON: {content[:200]!r}") from None
    if not isinstance(verdict, dict) or "score" not in verdict:
        raise MalformedAnswer(f"no score in the judge's answer: {content[:200]!r}")
    score = verdict["score"]
    reasoning = str(verdict.get("reasoning", ""))[:2000]
    if isinstance(score, bool):
        return Outcome("ok", "boolean", float(score), comment=reasoning, model=model)
    if isinstance(score, int | float) and math.isfinite(score):
        return Outcome("ok", "numeric", float(score), comment=reasoning, model=model)
    if isinstance(score, str) and score.strip():
        return Outcome("ok", "categorical", string_value=score.strip()[:200], comment=reasoning,
                       model=model)
    raise MalformedAnswer(f"the judge's score is not a number, boolean or label: {score!r}")
