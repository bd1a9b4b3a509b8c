"""Benchmark settings: the platform's, plus a bare view to measure the raw limit against."""

from llmops.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
