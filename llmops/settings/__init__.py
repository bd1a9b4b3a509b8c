"""Settings, split by topic; every tunable reads the environment through `env`."""

from .base import *  # noqa: F403
from .caching import *  # noqa: F403
from .celery import *  # noqa: F403
from .charts import *  # noqa: F403
from .clickhouse import *  # noqa: F403
from .costs import *  # noqa: F403
from .dashboard import *  # noqa: F403
from .drain import *  # noqa: F403
from .evaluation import *  # noqa: F403
from .ingestion import *  # noqa: F403
from .kafka import *  # noqa: F403
from .langfuse import *  # noqa: F403
from .loadbalancer import *  # noqa: F403
from .operations import *  # noqa: F403
from .otlp import *  # noqa: F403
from .query import *  # noqa: F403
from .reliability import *  # noqa: F403
