"""Benchmarks: shared timing, one runner per backend, reports."""
