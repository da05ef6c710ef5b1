"""Benchmarks: `make bench` runs them all (benchmarks/run.py); not part of the test suite."""
