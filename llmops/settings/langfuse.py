"""The Langfuse doors (/api/public/...): body limit and how long observations wait to merge."""

from .env import env

# Langfuse's own server refuses bodies over 4.5 MB; its clients batch under that.
LANGFUSE_MAX_BODY_BYTES = env("LANGFUSE_MAX_BODY_BYTES", 4_500_000)
# Create and update events of one observation (or trace) are merged in Redis: the merged body
# is kept this long after its last event, so an update that arrives later, or before its
# create, still merges. An update arriving after this publishes only what it carries.
LANGFUSE_MERGE_TTL_S = env("LANGFUSE_MERGE_TTL_S", 86400)
