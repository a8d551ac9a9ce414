"""Benchmarks: each measures this project against a named baseline in the same run."""
