"""The indexing pipeline: parse → chunk → embed → upsert, one document at a time."""
