"""Running queued evaluations: fetch the spans' content, score each, write the scores.
An evaluation's trouble becomes its score's status and reason, never the worker's crash."""

import logging
import time
from datetime import UTC, datetime

from django.conf import settings

from evaluation.models import EvaluatorConfig, EvaluatorType
from evaluation.services import embeddings, judge, matching, queue, retrylog, scorers, scores
from evaluation.services.breakers import EMBEDDING_API, LLM_EVALUATION, BreakerOpen
from evaluation.services.provider import MalformedAnswer, ProviderError
from evaluation.services.ratelimit import RateLimitWaitTooLong
from evaluation.services.scorers import Outcome
from llmops.clickhouse import get_client
from llmops.metrics import EVALUATIONS
from operations.models import DegradationLevel
from operations.services.degradation import current_level

logger = logging.getLogger(__name__)


def fetch_texts(items: list[dict]) -> dict[tuple[int, str], str]:
    """{(org id, content hash): text} for the inputs and outputs of `items`, in one query."""
    pairs = {(item["org_id"], item[field]) for item in items
             for field in ("input_hash", "output_hash") if item[field]}
    if not pairs:
        return {}
    # No FINAL: rows of one hash differ only in last_seen, never in content.
    result = get_client().query(
        "SELECT org_id, content_hash, content FROM span_content"
        " WHERE (org_id, content_hash) IN {pairs:Array(Tuple(UInt64, String))}",
        parameters={"pairs": sorted(pairs)},
    )
    return {(org_id, digest): content for org_id, digest, content in result.result_rows}


def run_evaluations(*, items: list[dict], batch_id: str = "") -> int:
    """Evaluate `items` (as matching.items_for makes them) and store their scores; external
    evaluations beyond EVALUATION_EXTERNAL_TASK_SIZE go back to the queue as their own tasks."""
    external = [item for item in items if item["external"]]
    split = len(external) > settings.EVALUATION_EXTERNAL_TASK_SIZE
    if split:
        items = [item for item in items if not item["external"]]
    stored = _evaluate_and_store(items)
    # Only once the scores are stored: a task retried for ClickHouse queues nothing twice.
    if split:
        fan_out(external)
    queue.forget_batch(batch_id)
    return stored


def _evaluate_and_store(items: list[dict]) -> int:
    level = current_level()
    texts = fetch_texts(items)
    rows = []
    for item in items:
        config = matching.active_config(item["config_id"])
        if config is None:
            continue  # deactivated or deleted since it was queued: no longer wanted
        started = time.monotonic()
        try:
            outcome = evaluate_one(item, config, level=level, texts=texts)
        except Exception as exc:
            logger.exception("evaluation %s of span %s failed", config.name, item["span_id"])
            outcome = Outcome("failed", comment=f"internal error: {type(exc).__name__}: {exc}")
        EVALUATIONS.labels(evaluator=config.evaluator_type, status=outcome.status).inc()
        span_time = datetime.fromtimestamp(item["span_time_us"] / 1_000_000, UTC)
        rows.append(scores.row(
            org_id=item["org_id"], trace_id=item["trace_id"], span_id=item["span_id"],
            evaluator=config.name, score_id=f"evaluator-{config.id}", evaluator_id=config.id,
            evaluator_type=config.evaluator_type, source="evaluator", status=outcome.status,
            data_type=outcome.data_type, value=outcome.value,
            string_value=outcome.string_value, comment=outcome.comment,
            latency_ms=(time.monotonic() - started) * 1000, model=outcome.model,
            span_time=span_time))
    scores.write(rows)
    return len(rows)


def fan_out(items: list[dict]) -> None:
    try:
        queue.publish(items, size=settings.EVALUATION_EXTERNAL_TASK_SIZE)
    except queue.PublishFailed as exc:
        logger.error("%s; %d evaluation(s) to the retry log", exc, len(exc.unsent))
        retrylog.log_for_retry(exc.unsent, log=retrylog.UNQUEUED)


def evaluate_one(item: dict, config: EvaluatorConfig, *, level: int,
                 texts: dict[tuple[int, str], str]) -> Outcome:
    if level >= DegradationLevel.REDUCED_EVALUATION and not config.is_critical:
        return Outcome("skipped", comment=f"degradation level {level}: non-critical "
                                          "evaluators are skipped")
    org_id = item["org_id"]
    text_of = {field: texts.get((org_id, item[f"{field}_hash"])) for field in ("input", "output")}
    kind = config.evaluator_type
    if kind == EvaluatorType.LLM_JUDGE:
        if text_of["output"] is None and text_of["input"] is None:
            return Outcome("skipped", comment="the span has no stored input or output")
        prompt = judge.render(config.prompt_template or judge.DEFAULT_TEMPLATE, {
            "input": text_of["input"] or "", "output": text_of["output"] or "",
            "model": item["model"], "name": item["name"]})
        model = config.judge_model or settings.LLM_JUDGE_DEFAULT_MODEL
        return with_fallback(item, LLM_EVALUATION,
                             lambda: judge.judge(prompt=prompt, model=model, org_id=org_id))
    text = text_of[config.target]
    if text is None:
        return Outcome("skipped", comment=f"the span has no stored {config.target}")
    if kind == EvaluatorType.EMBEDDING_SIMILARITY:
        return with_fallback(item, EMBEDDING_API, lambda: similarity(config, text, org_id))
    return scorers.score(config, text)


def similarity(config: EvaluatorConfig, text: str, org_id: int) -> Outcome:
    target = embeddings.embed(text=text, org_id=org_id)
    reference = embeddings.embed(text=config.reference_text, org_id=org_id)
    value = embeddings.cosine(target.vector, reference.vector)
    stale = target.stale or reference.stale
    comment = "cached embedding (embedding API unavailable)" if stale else ""
    if config.threshold is not None:
        verdict = "passes" if value >= config.threshold else "below"
        comment = "; ".join(filter(None, [f"{verdict} threshold {config.threshold:g}", comment]))
    return scorers.numeric(value, comment, status="fallback" if stale else "ok",
                           model=settings.EMBEDDING_MODEL)


def with_fallback(item: dict, breaker: str, call) -> Outcome:
    """The seed's fallback SKIP_EVALUATION with log_for_retry, and the failure statuses."""
    try:
        return call()
    except (BreakerOpen, RateLimitWaitTooLong) as exc:
        return Outcome("skipped", comment=f"{exc}; {_log(item, breaker)}")
    except ProviderError as exc:
        note = f"; {_log(item, breaker)}" if exc.retryable else ""
        return Outcome("failed", comment=f"{exc}{note}")
    except MalformedAnswer as exc:
        return Outcome("failed", comment=str(exc))


def _log(item: dict, breaker: str) -> str:
    if retrylog.log_for_retry([item], log=breaker):
        return "logged for retry"
    return "retry log full, not retried"
