"""Which evaluators a stored span calls for: the active configs (cached in each process),
their span filters and their sampling on the trace id."""

import hashlib
from collections import defaultdict
from datetime import datetime
from fnmatch import fnmatchcase

from evaluation.models import EvaluatorConfig
from ingestion.services.rows import StoredSpan
from llmops import changes
from operations.models import DegradationLevel
from operations.services.flags import flag_for

TOPIC = "evaluators"
Configs = tuple[dict[int, list[EvaluatorConfig]], dict[int, EvaluatorConfig]]


def _read_configs() -> Configs:
    """The active configs, by org id and by id."""
    by_org: dict[int, list[EvaluatorConfig]] = defaultdict(list)
    by_id = {}
    for config in EvaluatorConfig.objects.filter(is_active=True):
        by_org[config.org_id].append(config)
        by_id[config.id] = config
    return dict(by_org), by_id


cached_configs = changes.AnnouncedCache(TOPIC, _read_configs,
                                        ttl_setting="EVALUATION_CONFIG_CACHE_TTL_S")


def forget_cached_configs() -> None:
    cached_configs.forget()


def active_configs() -> dict[int, list[EvaluatorConfig]]:
    """Active configs by org id."""
    return cached_configs.get()[0]


def active_config(config_id: int) -> EvaluatorConfig | None:
    return cached_configs.get()[1].get(config_id)


def is_sampled(trace_id: str, rate: float) -> bool:
    """Deterministic on the trace id, so a trace is evaluated whole, by every evaluator of the
    same rate, in every process. Not ingestion's crc32: a hash independent of it, or an org
    sampled at 50 % with an evaluator at 50 % would have every stored trace evaluated."""
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(trace_id.encode(), digest_size=8, person=b"llmops-eval").digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def matches(config: EvaluatorConfig, *, model: str, name: str, kind: str,
            tags: list[str]) -> bool:
    """The config's filters, each empty one meaning any. Model patterns ignore case, as price
    patterns do (`GPT-4o` is `gpt-4o` to both)."""
    if config.match_models:
        lowered = model.lower()
        if not any(fnmatchcase(lowered, p.lower()) for p in config.match_models):
            return False
    if config.match_names and not any(fnmatchcase(name, p) for p in config.match_names):
        return False
    if config.match_kinds and kind not in config.match_kinds:
        return False
    return set(config.match_tags) <= set(tags)


def _time_us(value: datetime) -> int:
    return int(value.timestamp()) * 1_000_000 + value.microsecond


def items_for(spans: list[StoredSpan], *, level_of=None) -> list[dict]:
    """The (span, evaluator) pairs that stored spans call for.
    `level_of` returns the degradation level; it is asked only when some config applies."""
    configs = active_configs()
    if not configs:
        return []
    level = None
    items = []
    for span in spans:
        candidates = configs.get(span.org_id)
        if not candidates or not flag_for("evaluations-enabled", span.org_id):
            continue
        if level is None:
            level = level_of() if level_of else DegradationLevel.NORMAL
        for config in candidates:
            # Seed, level 1 "Reduced Evaluation": non-critical evaluations are skipped.
            if level >= DegradationLevel.REDUCED_EVALUATION and not config.is_critical:
                continue
            if not matches(config, model=span.model, name=span.name, kind=span.kind,
                           tags=span.tags):
                continue
            if not is_sampled(span.trace_id, config.sampling_rate):
                continue
            items.append({
                "org_id": span.org_id, "trace_id": span.trace_id,
                "span_id": span.span_id, "config_id": config.id,
                "external": config.is_external, "name": span.name,
                "model": span.model, "input_hash": span.input_hash,
                "output_hash": span.output_hash,
                "span_time_us": _time_us(span.start_time),
            })
    return items
