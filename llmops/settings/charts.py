"""Dashboard chart pages: Overview, Costs, Quality, Operations."""

from .env import env

# How many groups (models, users, names) the top tables and the stacked cost chart show.
DASHBOARD_TOP_N = env("DASHBOARD_TOP_N", 10)
# Bins of a numeric score's distribution on the Quality page.
DASHBOARD_SCORE_BINS = env("DASHBOARD_SCORE_BINS", 10)
# Rows of the Operations page's history tables (degradation changes, backups).
DASHBOARD_OPS_HISTORY = env("DASHBOARD_OPS_HISTORY", 20)
# Where the Operations page links to flower (scripts/processes.py: FLOWER_PORT on loopback).
DASHBOARD_FLOWER_URL = env("DASHBOARD_FLOWER_URL", "http://127.0.0.1:5555/")
# Threads per process reading a page's independent parts side by side (Overview).
DASHBOARD_READ_THREADS = env("DASHBOARD_READ_THREADS", 4)
# Rows of the Costs page's table (the most costly groups); GET /api/v1/costs has them all.
DASHBOARD_COST_TABLE_ROWS = env("DASHBOARD_COST_TABLE_ROWS", 100)
