"""Retrieval: hybrid (dense + BM25, RRF-fused) search over a knowledge base's chunks."""
