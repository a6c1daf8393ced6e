"""Measurements (``python -m benchmarks.X``); never part of the test run. Results land in ``results/``."""
