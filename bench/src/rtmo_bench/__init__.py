"""Benchmarks; run them as modules (``python -m rtmo_bench.model``). Timings are reported, never asserted."""
