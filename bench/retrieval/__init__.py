"""Retrieval benchmarks: quality on a BEIR data set through the search API, and latency."""

from bench.retrieval.run import main

__all__ = ["main"]
