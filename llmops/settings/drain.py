"""Drains: how long a batch may fail before its rows are isolated, and how long it may hang."""

from .env import env

# Drains of one in-flight range that may fail with the same "retryable" ClickHouse error
# (TOO_MANY_PARTS, a memory limit...) before its rows are isolated by halving and the ones
# ClickHouse still refuses are dead-lettered. Transient errors (server down, disk full, a
# table missing during a restore) never count: they hold the partition until they pass.
DRAIN_MAX_BATCH_ATTEMPTS = env("DRAIN_MAX_BATCH_ATTEMPTS", 5)
# Send/receive timeout of the drain's inserts: a hung insert ends, the range stays in flight
# (below the lease TTL, so a drainer stuck in one rarely loses its lease).
DRAIN_INSERT_TIMEOUT_S = env("DRAIN_INSERT_TIMEOUT_S", 10.0)
# How long a drain may take to re-read an in-flight range before giving up for now.
DRAIN_REPLAY_READ_S = env("DRAIN_REPLAY_READ_S", 30.0)
# A drain process's garbage collector: a batch keeps ~100,000 objects alive, and Python's
# default (a collection every 700 allocations) then spends ~30 % of the drain's CPU walking
# them. At the first drain the objects of the loaded app are frozen out of collections and a
# young-generation collection waits for this many allocations (0: Python's default). Measured
# here, 30,000 spans: 60 µs of CPU per span with the default, 43 with 50,000, 39 with none.
DRAIN_GC_GEN0_THRESHOLD = env("DRAIN_GC_GEN0_THRESHOLD", 50_000)
# A drain's lease is renewed from a thread of its own during a batch (a batch may outlast
# the lease TTL), for at most this long past the drain's budget: a drainer stuck longer in
# one batch (no insert, read or retry takes this long) still hands its partition back.
DRAIN_BATCH_MAX_S = env("DRAIN_BATCH_MAX_S", 120.0)
