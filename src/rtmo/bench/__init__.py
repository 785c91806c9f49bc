"""Benchmarks; run them as modules (``python -m rtmo.bench.model``). Timings are reported, never asserted."""
