"""Create and update events of one observation (or trace) merged into one body, in Redis.

Langfuse clients send an observation as a create and later updates carrying only the fields
that changed; an update may even arrive first, in another batch, and whole batches are resent
on errors. Each field keeps the value of the event that ranks highest: an update over a
create, then the later envelope timestamp, then the later arrival. So merging is order-free
and idempotent (the same event twice changes nothing), and the merged body, published whole
each time, is what the newest version of the span holds."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import redis
from django.conf import settings

from ingestion.langfuse.mapping import parse_time
from ingestion.services.publish import PublishFailed
from llmops.redis import get_redis

# Body fields merged per key rather than replaced; tags are a union.
MERGED_BY_KEY = ("metadata",)


@dataclass
class Merged:
    """The merged body of one observation or trace."""

    kind: str = ""  # the observation type (span, generation...), "trace" for a trace
    kind_rank: int = -1
    fields: dict = field(default_factory=dict)  # name -> [rank, timestamp, value]
    metadata: dict = field(default_factory=dict)  # key -> [rank, timestamp, value]
    tags: list = field(default_factory=list)
    first_seen: float = 0.0  # epoch seconds of its earliest event

    def values(self) -> dict:
        return {name: entry[2] for name, entry in self.fields.items()}

    def metadata_values(self) -> dict:
        return {key: entry[2] for key, entry in self.metadata.items()}

    @property
    def first_seen_time(self) -> datetime:
        return datetime.fromtimestamp(self.first_seen, UTC)


@dataclass(frozen=True)
class Event:
    """One create or update event, as merged."""

    kind: str
    is_update: bool
    timestamp: float  # the envelope's, epoch seconds; 0 when it had none
    body: dict


def event_time(envelope: dict) -> float:
    moment = parse_time(envelope.get("timestamp"), "timestamp")
    return moment.timestamp() if moment else 0.0


def apply(state: Merged, event: Event) -> None:
    rank = [int(event.is_update), event.timestamp]
    if state.kind_rank < 0 or int(event.is_update) <= state.kind_rank:
        # A create names the type; an update only while no create has.
        state.kind, state.kind_rank = event.kind, int(event.is_update)
    seen = event.timestamp or datetime.now(UTC).timestamp()
    state.first_seen = min(state.first_seen, seen) if state.first_seen else seen
    for name, value in event.body.items():
        if value is None:
            continue  # an update's absent field: not a change
        if name in MERGED_BY_KEY and isinstance(value, dict):
            for key, item in value.items():
                _keep(state.metadata, str(key), rank, item)
        elif name == "tags" and isinstance(value, list):
            state.tags.extend(tag for tag in value if tag not in state.tags)
        else:
            _keep(state.fields, name, rank, value)


def _keep(entries: dict, name: str, rank: list, value) -> None:
    current = entries.get(name)
    if current is None or rank >= current[:2]:
        entries[name] = [*rank, value]


def _key(org_id: int, kind: str, object_id: str) -> str:
    family = "trace" if kind == "trace" else "obs"
    return f"langfuse:merge:{org_id}:{family}:{object_id}"


@contextmanager
def locked(org_id: int, objects: list[tuple[str, str]]) -> Iterator[None]:
    """Hold the lock of each (kind, id) while merging and publishing them: the version a
    request publishes is stamped when it publishes, so two requests merging one observation
    at once could otherwise publish the older merge last. Taken in sorted order (no
    deadlock between two batches); PublishFailed (a 503, resent) after
    LANGFUSE_MERGE_LOCK_WAIT_S."""
    wait = settings.LANGFUSE_MERGE_LOCK_WAIT_S
    hold = settings.KAFKA_PUBLISH_TIMEOUT_S + wait
    with ExitStack() as stack:
        for kind, object_id in sorted(set(objects)):
            lock = get_redis().lock(f"{_key(org_id, kind, object_id)}:lock", timeout=hold,
                                    blocking_timeout=wait)
            if not lock.acquire():
                raise PublishFailed(f"observation {object_id} is being merged by another "
                                    f"request for over {wait:g} s")
            stack.callback(_release, lock)
        yield


def _release(lock) -> None:
    # A lock held past its timeout lapsed and may be another request's by now: not ours.
    with suppress(redis.exceptions.LockError):
        lock.release()


def merge(org_id: int, object_id: str, events: list[Event]) -> Merged:
    """Apply `events` (all of one object) to its stored body and store the result; returns
    it. Optimistic: another request merging the same object meanwhile makes this one redo."""
    key = _key(org_id, events[0].kind, object_id)
    client = get_redis()
    while True:
        with client.pipeline() as pipe:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                state = Merged(**orjson.loads(raw)) if raw else Merged()
                for event in events:
                    apply(state, event)
                pipe.multi()
                pipe.set(key, orjson.dumps(state.__dict__), ex=settings.LANGFUSE_MERGE_TTL_S)
                pipe.execute()
                return state
            except redis.WatchError:
                continue
