"""Benchmarks: each module starts what it needs, measures, and prints its figures."""
