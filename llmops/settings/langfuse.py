"""The Langfuse doors (/api/public/...): body limit and how long observations wait to merge."""

from .env import env

# Langfuse's own server refuses bodies over 4.5 MB; its clients batch under that.
LANGFUSE_MAX_BODY_BYTES = env("LANGFUSE_MAX_BODY_BYTES", 4_500_000)
# Create and update events of one observation (or trace) are merged in Redis: the merged body
# is kept this long after its last event, so an update that arrives later, or before its
# create, still merges. An update arriving after this publishes only what it carries.
LANGFUSE_MERGE_TTL_S = env("LANGFUSE_MERGE_TTL_S", 86400)
# One request at a time merges and publishes a given observation (a Redis lock), so the
# last version published holds every field merged: waiting longer than this for another
# request's lock answers 503 (the client resends). The lock lapses after
# KAFKA_PUBLISH_TIMEOUT_S + LANGFUSE_MERGE_LOCK_WAIT_S should its holder die.
LANGFUSE_MERGE_LOCK_WAIT_S = env("LANGFUSE_MERGE_LOCK_WAIT_S", 10.0)
