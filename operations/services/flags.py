"""Config flags as every process reads them: all flags in an L1 cache for CONFIG_CACHE_TTL_S,
dropped at once when any process announces a change.

The flags the platform reads are registered in FLAGS (name, type, default, description,
scope). An org-scoped flag is read from `<name>-org-<org id>` first, then `<name>`, then its
default, so an operator can switch a behaviour for one org or for all of them."""

import logging
from dataclasses import dataclass

from django.db import DatabaseError

from llmops import changes
from operations.models import ConfigFlag

logger = logging.getLogger(__name__)
TOPIC = "flags"


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    type: str  # a ConfigFlag.Type value
    default: object
    description: str
    scope: str  # "global", or "org": `<name>-org-<org id>` overrides `<name>` for that org


GLOBAL, ORG = "global", "org"

FLAGS: dict[str, Flag] = {flag.name: flag for flag in (
    Flag("evaluations-enabled", ConfigFlag.Type.BOOL, True,
         "Queue evaluations for stored spans. Off: no evaluation is queued (for the org, or "
         "for every org); spans are stored as usual.", ORG),
    Flag("content-storage-enabled", ConfigFlag.Type.BOOL, True,
         "Store spans' input and output. Off: the API drops them before Kafka (tokens are "
         "counted first, so costs stay right), as degradation level 3 does.", ORG),
    Flag("sample-rate", ConfigFlag.Type.FLOAT, None,
         "Ingestion sampling rate in [0, 1] overriding the org's own `sample_rate`; unset: "
         "the org's. Degradation level 2 still caps it at INGEST_DEGRADED_SAMPLE_RATE.", ORG),
    Flag("query-cache-enabled", ConfigFlag.Type.BOOL, True,
         "Serve the query API (traces, spans, sessions, metrics, costs) from its caches. Off: "
         "every answer is computed afresh (`X-Cache: bypass`).", ORG),
)}


def _read_flags() -> dict:
    return {f.key: f.typed_value() for f in ConfigFlag.objects.all()}


cached_flags = changes.AnnouncedCache(TOPIC, _read_flags, ttl_setting="CONFIG_CACHE_TTL_S")


def forget_cached_flags() -> None:
    """Drop this process's flags; the next read loads them again."""
    cached_flags.forget()


def _values() -> dict:
    try:
        return cached_flags.get()
    except DatabaseError:
        # PostgreSQL away: ingestion goes on (keys are cached too) with the flags last
        # read, or the defaults; the next read tries again.
        logger.warning("config flags unreadable; keeping the last ones read", exc_info=True)
        return cached_flags.last() or {}


def flag(key: str, default=None):
    """The flag's typed value, or `default` when no such flag exists."""
    return _values().get(key, default)


def org_key(name: str, org_id: int) -> str:
    return f"{name}-org-{org_id}"


def flag_for(name: str, org_id: int | None = None):
    """A registered flag's value for `org_id`: the org's own, else the global one, else the
    registry's default. From the L1 cache: no database query once loaded."""
    registered = FLAGS[name]
    values = _values()
    if registered.scope == ORG and org_id is not None:
        value = values.get(org_key(name, org_id))
        if value is not None:
            return value
    return values.get(name, registered.default)


def registered_flag(key: str) -> Flag | None:
    """The registered flag a key sets: `<name>`, or `<name>-org-<id>` for an org flag."""
    if key in FLAGS:
        return FLAGS[key]
    name, _, org_id = key.rpartition("-org-")
    registered = FLAGS.get(name)
    return registered if registered and registered.scope == ORG and org_id.isdigit() else None


def check_flag(key: str, type_: str, value) -> None:
    """Refuse (ValidationError) a value of a registered flag with another type, or a
    `sample-rate` outside [0, 1]."""
    from django.core.exceptions import ValidationError

    registered = registered_flag(key)
    if registered is None:
        return
    if type_ != registered.type:
        raise ValidationError({"type": f"{registered.name} is a {registered.type} flag"})
    if registered.name == "sample-rate" and not 0.0 <= value <= 1.0:
        raise ValidationError({"value": "a sampling rate is between 0 and 1"})


def flags_changed() -> None:
    changes.announce(TOPIC)
