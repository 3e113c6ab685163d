"""Benchmarks of the impairment recovery system: cold start, cost per recovery, idle cost and
an event storm. `make bench` runs them all (bench/run.py); docs/performance.md explains them."""

from recoveryctl import FUNCTIONS_DIR  # noqa: F401 - puts functions/ on sys.path
