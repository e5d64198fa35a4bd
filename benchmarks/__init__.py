"""Benchmark scripts, each run from the repository root as ``python -m benchmarks.NAME`` (``--help`` for its
options); their recorded results are in ``benchmarks/results/`` and the tables in ``benchmarks/README.md``.
``benchmarks.postgres`` starts a throwaway PostgreSQL cluster (the search-worker benchmark and tests use it)."""
