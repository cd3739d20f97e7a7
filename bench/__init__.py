"""Benchmarks (not tests): ``python -m bench.flows``. Shared helpers in :mod:`bench.common`."""
