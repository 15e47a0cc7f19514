"""Synthetic stores for the demo, tests and benchmarks."""
