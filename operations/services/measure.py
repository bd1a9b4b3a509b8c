"""What the degradation triggers look at, measured now."""

import logging
import time

from django.conf import settings

from ingestion.services.partitions import partition_lags
from llmops.clickhouse import new_client
from llmops.kafka import admin_client
from llmops.redis import get_redis
from operations.services.degradation import Measurements

logger = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 2


def evaluation_queue_depth() -> int:
    from evaluation.services.queue import depth

    return depth()


def ingestion_lag() -> int:
    return sum(lag.lag for lag in partition_lags())


def _ask_clickhouse(sql: str):
    """One query on a fresh client with short timeouts: a probe must not hang."""
    client = new_client(connect_timeout=PROBE_TIMEOUT_S, send_receive_timeout=PROBE_TIMEOUT_S)
    try:
        return client.command(sql)
    finally:
        client.close()


def storage_used_pct() -> float:
    return float(_ask_clickhouse(
        "SELECT 100 * (1 - sum(free_space) / sum(total_space)) FROM system.disks"))


def _reachable(name: str, probe) -> str:
    """"" while `name` answers or has been down for less than the setting; else a reason."""
    key = f"degradation:down_since:{name}"
    redis = get_redis()
    try:
        probe()
    except Exception as exc:
        redis.set(key, time.time(), nx=True)
        down_for = time.time() - float(redis.get(key))
        logger.warning("%s unreachable for %.0fs: %s", name, down_for, exc)
        if down_for >= settings.DEGRADATION_CRITICAL_FAILURE_S:
            return f"{name} unreachable for {down_for:.0f}s"
        return ""
    redis.delete(key)
    return ""


def _ping_clickhouse() -> None:
    _ask_clickhouse("SELECT 1")


def _ping_kafka() -> None:
    if not admin_client().list_topics(timeout=PROBE_TIMEOUT_S).brokers:
        raise ConnectionError("no broker")


def measure() -> Measurements:
    """Every trigger's value; a store that cannot be read counts toward a critical failure,
    and its own measure as zero (it is not known to be high)."""
    critical = [reason for reason in (_reachable("ClickHouse", _ping_clickhouse),
                                      _reachable("Kafka", _ping_kafka)) if reason]
    values = {}
    for name, read in (("evaluation_queue_depth", evaluation_queue_depth),
                       ("ingestion_lag", ingestion_lag), ("storage_used_pct", storage_used_pct)):
        try:
            values[name] = read()
        except Exception as exc:
            logger.warning("could not measure %s: %s", name, exc)
            values[name] = 0
    return Measurements(critical_failure="; ".join(critical), **values)
