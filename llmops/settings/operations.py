"""Operations: degradation triggers, backups, health."""

from .base import VAR_DIR
from .env import env

# Degradation triggers (seed: "Graceful Degradation Modes").
DEGRADATION_EVAL_QUEUE_THRESHOLD = env("DEGRADATION_EVAL_QUEUE_THRESHOLD", 100_000)
DEGRADATION_INGESTION_LAG_THRESHOLD = env("DEGRADATION_INGESTION_LAG_THRESHOLD", 1_000_000)
DEGRADATION_STORAGE_PCT_THRESHOLD = env("DEGRADATION_STORAGE_PCT_THRESHOLD", 90.0)
DEGRADATION_CRITICAL_FAILURE_S = env("DEGRADATION_CRITICAL_FAILURE_S", 60)
DEGRADATION_CHECK_INTERVAL_S = env("DEGRADATION_CHECK_INTERVAL_S", 5.0)
# How long a trigger must stay clear before the level steps down (no flapping).
DEGRADATION_COOLDOWN_S = env("DEGRADATION_COOLDOWN_S", 60)
# How long a process trusts its cached degradation level.
DEGRADATION_CACHE_TTL_S = env("DEGRADATION_CACHE_TTL_S", 1.0)

# Backups (seed: ClickHouse native backup, daily, kept 30 days).
BACKUP_HOUR_UTC = env("BACKUP_HOUR_UTC", 3)
BACKUP_MINUTE_UTC = env("BACKUP_MINUTE_UTC", 0)
BACKUP_RETENTION_DAYS = env("BACKUP_RETENTION_DAYS", 30)
BACKUP_DIR = env("BACKUP_DIR", str(VAR_DIR / "clickhouse" / "backups"))
BACKUP_S3_URL = env("BACKUP_S3_URL", "")  # set on a cluster

HEALTH_CHECK_TIMEOUT_S = env("HEALTH_CHECK_TIMEOUT_S", 3.0)
# A trigger, once active, clears only below this share of its threshold (no flapping).
DEGRADATION_CLEAR_RATIO = env("DEGRADATION_CLEAR_RATIO", 0.8)

# /metrics answers loopback without a token; from elsewhere only `Authorization: Bearer
# <METRICS_TOKEN>` (empty: never from elsewhere).
METRICS_TOKEN = env("METRICS_TOKEN", "")
