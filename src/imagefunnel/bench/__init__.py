"""Benchmarks: routing policies against the emulated market, and scoring throughput and quality."""
